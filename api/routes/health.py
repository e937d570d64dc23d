"""Liveness and readiness (services/readiness.py: Postgres, Temporal, a worker polling our queue).
Plain JSON, not the envelope: probes read the status code."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import get_temporal
from services import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: Postgres, Temporal and a worker polling our queue (503 otherwise)."""
    state = request.app.state
    checks = await readiness.checks(state.engine, lambda: get_temporal(request), state.settings)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
