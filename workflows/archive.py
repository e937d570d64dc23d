"""ArchiveWorkflow: the daily clean-up that moves old ended orders out of the hot tables. Started by the Temporal Schedule `paywindow-archive`
(infra/schedules.py), not a cron: Temporal keeps the calendar, skips a run while one is still
going, and shows every run in the Web UI. Deterministic only: the work is one activity, which loops
over batches itself so the history stays a handful of events however big the backlog."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.messages import ArchiveInput, ArchiveResult
    from workflows import steps


@workflow.defn
class ArchiveWorkflow:
    @workflow.run
    async def run(self, inp: ArchiveInput) -> ArchiveResult:
        result = await workflow.execute_activity(
            steps.archive_ended_orders,
            inp,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),  # one heartbeat per batch
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(minutes=5),
                maximum_attempts=10,
            ),
        )
        workflow.logger.info(
            "archived %d orders that ended before %s (%d held for a refund)",
            result.archived,
            result.cutoff.isoformat(),
            result.held_for_refund,
        )
        return result
