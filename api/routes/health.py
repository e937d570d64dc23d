"""Liveness and readiness (Postgres + Temporal + at least one worker polling our queue)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.deps import get_temporal
from services.stats import database_ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: Postgres, Temporal and a worker polling our queue (503 otherwise)."""
    checks: dict[str, str] = {}
    try:
        await database_ready(request.app.state.engine)
        checks["postgres"] = "ok"
    except Exception as err:  # noqa: BLE001 - report any failure as not ready
        checks["postgres"] = f"down: {type(err).__name__}"
    try:
        client = await get_temporal(request)
        settings = request.app.state.settings
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.temporal_task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        checks["temporal"] = "ok"
        checks["worker"] = "ok" if resp.pollers else "down: no worker polling"
    except Exception as err:  # noqa: BLE001
        checks.setdefault("temporal", f"down: {type(err).__name__}")
        checks.setdefault("worker", "unknown")
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
