"""The API as `make dev` and the tests serve it: the product's app (api/app.py) plus, when
SANDBOX_ENABLED=true, the gateway sandbox (devstack/sandbox/) under /sandbox on the same port.

The product never imports the sandbox (tests/test_layers.py): a production image has no devstack/
at all, so only this module mounts it. Run with `uvicorn devstack.app:app_factory --factory`.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.app import app_factory as product_app_factory
from api.app import create_app
from devstack.sandbox import SANDBOX_PREFIX, build_sandbox_router
from infra.settings import Settings, get_settings


def create_dev_app(settings: Settings | None = None) -> FastAPI:
    """`create_app`, with the sandbox mounted when the settings turn it on. `app.state.sandbox_store`
    is the sandbox's state (None when it is off), for tests and debugging."""
    settings = settings or get_settings()
    return mount_sandbox(create_app(settings), settings)


def mount_sandbox(app: FastAPI, settings: Settings) -> FastAPI:
    app.state.sandbox_store = None
    if settings.sandbox_enabled:
        sandbox = build_sandbox_router(settings)
        app.state.sandbox_store = sandbox.sandbox_store
        app.include_router(sandbox, prefix=SANDBOX_PREFIX)
    return app


def app_factory() -> FastAPI:
    """The product's entry point (logging, token redaction, tracing), then the sandbox."""
    return mount_sandbox(product_app_factory(), get_settings())
