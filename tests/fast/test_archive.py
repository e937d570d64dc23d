"""ArchiveWorkflow: one activity, whose result the run returns (its release history is recorded)."""

from __future__ import annotations

import pytest

from domain.messages import ArchiveInput
from tests.fast.world import World
from tests.recorded import keep
from workflows.archive import ArchiveWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_archive_run_is_one_activity_and_returns_its_result(world: World) -> None:
    handle = await world.env.client.start_workflow(
        ArchiveWorkflow.run,
        ArchiveInput(older_than_days=30),
        id=f"archive-{world.queue}",
        task_queue=world.queue,
    )
    result = await handle.result()
    await keep(handle, "archive", "archived")  # RECORD_HISTORIES: its release history (tests/recorded.py)
    assert (result.archived, result.held_for_refund) == (2, 1)
    assert world.called("archive_ended_orders") == [ArchiveInput(older_than_days=30)]
