"""The demo checkout (`/demo`, plain HTML + ES modules from `api/static/`, no build step, no CDN),
the page gateways' browser returns land on (`/payment-result`, the default FRONTEND_RETURN_URL),
and — only with the sandbox on and outside production — a customer token for demo shoppers."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import StringConstraints

from api.auth import issue_token
from api.errors import ok
from infra.settings import Settings
from services.errors import AppError, ErrorCode
from services.schemas import Camel, Envelope, Out

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
MEDIA_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
# Everything the pages load comes from here: proof they work offline, and no injected script runs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
DEMO_TOKEN_TTL = 24 * 3600


class DemoTokenIn(Camel):
    sub: Annotated[str, StringConstraints(pattern=r"^demo-[A-Za-z0-9_-]{1,40}$")] | None = None


class DemoConfigOut(Out):
    order_types: dict[str, float]  # orderType -> window minutes, beside "normal"
    max_payment_attempts: int
    demo_tokens: bool  # POST /demo/token is open here


class DemoTokenOut(Out):
    token: str
    sub: str
    role: str
    expires_in: int


def demo_tokens_enabled(settings: Settings) -> bool:
    """Anyone may mint these, so only where the money is the sandbox's."""
    return settings.sandbox_enabled and settings.environment != "production"


def page(name: str) -> FileResponse:
    """One of the static pages, under the CSP above (the demo shop, the payment result, /ops)."""
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=HEADERS)


def static_asset(name: str) -> FileResponse:
    """A script, stylesheet or image from api/static/ by plain name (nothing else is served)."""
    match = ASSET.match(name)
    if match is None or not (STATIC / name).is_file():
        raise AppError(ErrorCode.NOT_FOUND, "No such file")
    return FileResponse(STATIC / name, media_type=MEDIA_TYPES[match.group(1)], headers=HEADERS)


def serve_static(router: APIRouter, prefix: str) -> None:
    """`<prefix>/static/<name>`: the page's scripts and stylesheets, from api/static/."""

    @router.get(f"{prefix}/static/{{name}}")
    async def asset(name: str) -> FileResponse:
        return static_asset(name)


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    serve_static(router, "/demo")

    @router.get("/demo")
    async def demo_page() -> FileResponse:
        return page("index.html")

    @router.get("/payment-result")
    async def payment_result() -> FileResponse:
        return page("result.html")

    @router.get("/demo/config", response_model=Envelope[DemoConfigOut])
    async def config() -> Envelope[DemoConfigOut]:
        out = DemoConfigOut(
            order_types=settings.durations_by_type,
            max_payment_attempts=settings.order_session_max_attempts,
            demo_tokens=demo_tokens_enabled(settings),
        )
        return ok(out)

    if demo_tokens_enabled(settings):

        @router.post("/demo/token", response_model=Envelope[DemoTokenOut])
        async def demo_token(body: DemoTokenIn | None = None) -> Envelope[DemoTokenOut]:
            sub = (body.sub if body else None) or f"demo-{uuid.uuid4().hex[:12]}"
            token = issue_token(settings.auth_jwt_secret, sub, "customer", ttl_seconds=DEMO_TOKEN_TTL)
            return ok(DemoTokenOut(token=token, sub=sub, role="customer", expires_in=DEMO_TOKEN_TTL))

    return router
