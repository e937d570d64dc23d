"""`GET /metrics`: Prometheus text format, computed from Postgres at scrape time (api/metrics.py).

Top level (Prometheus' default path), no auth, outside the OpenAPI schema and the `/api/v1` rate
limit. It exposes business volumes, so keep it off the public internet: let Prometheus reach the API
directly and have the TLS terminator answer 404 for `/metrics` on the public host.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import ConnDep, SettingsDep
from api.metrics import CONTENT_TYPE, render
from services.stats import metrics_snapshot

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(conn: ConnDep, settings: SettingsDep) -> Response:
    snapshot = await metrics_snapshot(conn, events=bool(settings.event_endpoints))
    return Response(render(snapshot), media_type=CONTENT_TYPE)
