"""Until `api/app.py` mounts them itself: make the test stack's app serve the live-events and demo
routers and run the order-events listener, by wrapping `create_app` where `tests/conftest.py`
calls it. Idempotent: once app.py does this, the wrapper adds nothing (and can be deleted)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import NoMatchFound

from api.errors import COMMON_ERRORS, error_responses
from api.events import start_listener, stop_listener
from api.routes import demo
from api.routes import events as events_routes
from domain.settings import Settings


def _has_route(app: FastAPI, name: str, **params: str) -> bool:
    try:
        app.url_path_for(name, **params)
    except NoMatchFound:
        return False
    return True


BUILT: list[FastAPI] = []  # the apps made, so tests can look at their listener


def with_live_events(create_app: Callable[..., FastAPI]) -> Callable[..., FastAPI]:
    def factory(settings: Settings) -> FastAPI:
        app = create_app(settings)
        if not _has_route(app, "order_events", ref="x"):
            v1 = APIRouter(prefix=settings.api_prefix, responses=error_responses(*COMMON_ERRORS))
            v1.include_router(events_routes.router)
            app.include_router(v1)
        if not _has_route(app, "demo_page"):
            app.include_router(demo.build_router(settings))
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            async with inner(app_) as state:
                owned = getattr(app_.state, "order_events", None) is None
                if owned:
                    await start_listener(app_)
                try:
                    yield state
                finally:
                    if owned:
                        await stop_listener(app_)

        app.router.lifespan_context = lifespan
        BUILT.append(app)
        return app

    factory.live_events = True  # type: ignore[attr-defined]
    return factory


def install() -> None:
    """Patch the `create_app` the shared `stack` fixture calls (before any fixture runs)."""
    import tests.conftest as root

    if not getattr(root.create_app, "live_events", False):
        root.create_app = with_live_events(root.create_app)  # type: ignore[assignment]
