"""Whether this process can serve: Postgres answers, Temporal answers, and at least one worker
polls our task queue (else every order would wait). Each check reports "ok" or why not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from infra.settings import Settings
from store import stats


async def checks(
    engine: AsyncEngine, temporal: Callable[[], Awaitable[Client]], settings: Settings
) -> dict[str, str]:
    """`temporal`: how to get the client (it may connect now, if Temporal was down at start)."""
    found: dict[str, str] = {}
    try:
        async with engine.connect() as conn:
            await stats.ping(conn)
        found["postgres"] = "ok"
    except Exception as err:  # noqa: BLE001 - report any failure as not ready
        found["postgres"] = f"down: {type(err).__name__}"
    try:
        client = await temporal()
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.temporal_task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        found["temporal"] = "ok"
        found["worker"] = "ok" if resp.pollers else "down: no worker polling"
    except Exception as err:  # noqa: BLE001
        found.setdefault("temporal", f"down: {type(err).__name__}")
        found.setdefault("worker", "unknown")
    return found
