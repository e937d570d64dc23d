"""Temporal Schedules Paywindow relies on, created or updated when the worker starts.

`paywindow-archive` runs ArchiveWorkflow (workflows/archive.py) daily at 02:00 Asia/Ho_Chi_Minh (ended orders
leave the hot tables once they are old; a Temporal Schedule rather than a cron). Every worker replica calls `ensure_archive_schedule` at start:
creating is idempotent by schedule id, and an existing schedule is brought up to date (new
ARCHIVE_AFTER_DAYS, task queue...) while its state is kept, so an operator's pause survives deploys.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.messages import ArchiveInput
from infra.settings import Settings

ARCHIVE_SCHEDULE_ID = "paywindow-archive"
ARCHIVE_TIME_ZONE = "Asia/Ho_Chi_Minh"
ARCHIVE_HOUR = 2


def archive_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ArchiveWorkflow",  # by name: infra imports no workflow module
            ArchiveInput(older_than_days=settings.archive_after_days, batch_size=settings.archive_batch_size),
            id=ARCHIVE_SCHEDULE_ID,  # each run's id gets the scheduled time appended by Temporal
            task_queue=settings.temporal_task_queue,
            execution_timeout=timedelta(hours=12),
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(ARCHIVE_HOUR)], comment="daily archive")],
            time_zone_name=ARCHIVE_TIME_ZONE,
        ),
        # SKIP: a run still going at the next 02:00 is not joined by a second one. A day's catch-up
        # window: after an outage one run makes up for the missed night, not a year of them.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
        state=ScheduleState(note=f"Archives orders that ended over {settings.archive_after_days} days ago"),
    )


async def ensure_archive_schedule(client: Client, settings: Settings) -> ScheduleHandle:
    desired = archive_schedule(settings)
    try:
        return await client.create_schedule(ARCHIVE_SCHEDULE_ID, desired)
    except ScheduleAlreadyRunningError:
        pass

    def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=dataclasses.replace(desired, state=current.description.schedule.state))

    handle = client.get_schedule_handle(ARCHIVE_SCHEDULE_ID)
    await handle.update(keep_state)
    return handle
