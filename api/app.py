"""The FastAPI application: engine, Temporal client and gateways are built in `lifespan`, never at
import time, so tests and `make dev` each bring their own settings."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import Span
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.cors import ElementCors
from api.errors import (
    COMMON_ERRORS,
    error_responses,
    fail,
    on_app_error,
    on_http_error,
    on_unexpected,
    on_validation_error,
)
from api.ratelimit import RateLimit, return_path
from api.routes import admin, demo, desk, health, metrics, ops, orders, products, sdk, stats, stream, webhooks
from gateways.http import close_gateway_clients
from gateways.registry import build_gateways
from infra.db import listen_dsn, make_engine
from infra.settings import Settings, get_settings
from infra.temporal import connect
from infra.tracing import active_provider, configure_logging, setup_tracing
from services.errors import AppError, ErrorCode
from services.order_events import OrderEvents
from services.payment_intake import GatewayQueries

log = logging.getLogger("api")
# Under API_PREFIX (/api/v1), in this order; docs/API.md lists them (api/docs.py).
V1_ROUTERS = tuple(m.router for m in (products, orders, stream, admin, desk, stats, webhooks))


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes (413) before the app sees them. Bodies are small
    JSON documents, so reading one fully (at most `limit` bytes) before handing it on is cheap."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay(message, receive), send)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._refuse(scope, receive, send)
        await self.app(
            scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send
        )

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = fail(ErrorCode.PAYLOAD_TOO_LARGE, f"Request body over {self.limit} bytes")
        await response(scope, receive, send)


class RefuseNul:
    """A NUL in the path or the query is never valid here, and Postgres text cannot hold it:
    422 before any route reads it (bodies are checked by the request schemas)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"].lower()):
            response = fail(ErrorCode.VALIDATION_ERROR, "NUL characters are not allowed in the URL")
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    """Hand the buffered message over once, then the real channel (for disconnects)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure as the error envelope (api/errors.py); an answer that breaks its
    route's response_model (ResponseValidationError) is a bug: 500 INTERNAL_ERROR."""
    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = make_engine(settings)
        app.state.gateways = build_gateways(settings)
        app.state.gateway_queries = GatewayQueries()
        app.state.temporal = None
        try:
            app.state.temporal = await connect(settings)
        except Exception as err:  # noqa: BLE001 - readiness reports it; requests retry the connect
            log.warning("Temporal not reachable at start (%s); will retry on demand", err)
        # One LISTEN connection per process fans order changes out to the event streams.
        app.state.order_events = OrderEvents(listen_dsn(settings.database_url), app.state.engine)
        await app.state.order_events.start()
        yield
        await app.state.order_events.stop()
        await close_gateway_clients()
        await app.state.engine.dispose()

    docs = bool(settings.docs_enabled)  # off in production unless DOCS_ENABLED=true
    app = FastAPI(
        title="Paywindow",
        version="0.1.0",
        description="Durable payment windows for e-commerce orders (MoMo, VNPay, PayOS).",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(RefuseNul)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(RateLimit, per_minute=settings.return_rate_limit_per_minute, applies=return_path)
    # Outermost: a preflight is answered before the rate limit, and refusals carry CORS headers too.
    app.add_middleware(ElementCors, origins=settings.cors_origins)

    v1 = APIRouter(prefix=settings.api_prefix, responses=error_responses(*COMMON_ERRORS))
    for router in V1_ROUTERS:
        v1.include_router(router)
    app.include_router(v1)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(demo.build_router(settings))
    app.include_router(ops.build_router(settings))
    app.include_router(sdk.build_router())
    # The gateway sandbox is dev tooling: devstack/app.py mounts it (`make dev`, the tests), never this.
    provider = active_provider()
    if provider is not None:  # a server span per request, around every middleware; probes left out
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=provider,
            excluded_urls="/healthz,/readyz,/metrics",
            exclude_spans=["receive", "send"],
            server_request_hook=redact_token_in_span,
        )

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> dict[str, str]:
        return {"service": "paywindow", "docs": "/docs" if docs else "", "health": "/readyz"}

    return app


TOKEN_IN_URL = re.compile(r"((?:^|[?&])(?:token|clientSecret)=)[^&\s]*")
SECRET_MARKS = ("token=", "clientSecret=")  # the query parameters that carry a credential


class RedactTokens(logging.Filter):
    """Keeps tokens out of the logs: a stream token (`?token=`) and a client secret
    (`?clientSecret=`) travel in the stream's URL, and uvicorn's access log writes request lines
    as they came."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str) and any(mark in record.msg for mark in SECRET_MARKS):
            record.msg = TOKEN_IN_URL.sub(r"\1[redacted]", record.msg)
        return True


def redact_token_in_span(span: Span, scope: Scope) -> None:
    """The span's URL attributes hold the query string as it came: a stream token must not reach
    the collector either."""
    query = (scope.get("query_string") or b"").decode("latin-1")
    if not any(mark in query for mark in SECRET_MARKS) or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full", "url.query"):
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, TOKEN_IN_URL.sub(r"\1[redacted]", value))


def app_factory() -> FastAPI:
    """`uvicorn api.app:app_factory --factory` entry point."""
    configure_logging("api")
    for name in ("uvicorn.access", "uvicorn.error", ""):
        logging.getLogger(name).addFilter(RedactTokens())
    setup_tracing("paywindow-api")  # before create_app, which instruments the app when tracing is on
    return create_app()
