"""The operators' page (`/ops`): plain HTML + ES modules from `api/static/`, no build step, no CDN,
the demo's CSP. The admin pastes an admin token (kept in the tab's sessionStorage only); the page
uses the admin API (`/api/v1/admin/...`) and links each order to its workflow in the Temporal Web UI."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.errors import ok
from api.routes.demo import page, serve_static
from infra.settings import Settings
from services.schemas import Envelope, Out


class OpsConfigOut(Out):
    temporal_ui_url: str
    namespace: str


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    serve_static(router, "/ops")

    @router.get("/ops")
    async def ops_page() -> FileResponse:
        return page("ops.html")

    @router.get("/ops/config", response_model=Envelope[OpsConfigOut])
    async def config() -> Envelope[OpsConfigOut]:
        # Where the page links an order's workflow: <temporalUiUrl>/namespaces/<ns>/workflows/order-<id>
        return ok(
            OpsConfigOut(
                temporal_ui_url=settings.temporal_ui_url or "", namespace=settings.temporal_namespace
            )
        )

    return router
