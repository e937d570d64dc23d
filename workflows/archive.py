"""ArchiveWorkflow: seed 002's daily clean-up. Started by the Temporal Schedule `paywindow-archive`
(activities/schedules.py), not a cron: Temporal keeps the calendar, skips a run while one is still
going, and shows every run in the Web UI. Deterministic only: the work is one activity, which loops
over batches itself so the history stays a handful of events however big the backlog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

# By name: activities/archive.py imports the payloads below, so importing it here would be circular.
ARCHIVE_ACTIVITY = "archive_ended_orders"


@dataclass
class ArchiveInput:
    older_than_days: float = 30  # ARCHIVE_AFTER_DAYS
    batch_size: int = 1000  # ARCHIVE_BATCH_SIZE: rows per transaction


@dataclass
class ArchiveResult:
    archived: int  # orders marked archived by this run
    batches: int  # transactions that archived at least one order
    held_for_refund: int  # old enough, but kept visible: a late payment still awaits its refund
    cutoff: datetime  # orders that ended before this were eligible


@workflow.defn
class ArchiveWorkflow:
    @workflow.run
    async def run(self, inp: ArchiveInput) -> ArchiveResult:
        result = await workflow.execute_activity(
            ARCHIVE_ACTIVITY,
            inp,
            result_type=ArchiveResult,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),  # one heartbeat per batch
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5), maximum_attempts=10
            ),
        )
        workflow.logger.info(
            "archived %d orders that ended before %s (%d held for a refund)",
            result.archived,
            result.cutoff.isoformat(),
            result.held_for_refund,
        )
        return result
