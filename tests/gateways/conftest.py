"""The sandbox served by a real uvicorn on a free 127.0.0.1 port (in its own thread, so it is
independent of the tests' event loop), with a capture endpoint standing in for our webhooks."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from devstack.sandbox import build_sandbox_router
from devstack.sandbox.state import SandboxStore
from infra.settings import Settings
from tests.gateways.harness import SandboxEnv, make_settings


def _capture_app(settings: Settings, captured: list[dict[str, Any]]) -> tuple[FastAPI, SandboxStore]:
    app = FastAPI()
    router = build_sandbox_router(settings)
    app.include_router(router, prefix="/sandbox")

    @app.api_route("/api/v1/webhooks/{gateway}", methods=["GET", "POST"])
    async def capture(gateway: str, request: Request) -> Response:
        body = await request.body()
        captured.append(
            {
                "gateway": gateway,
                "method": request.method,
                "query": dict(request.query_params),
                "json": json.loads(body) if body else None,
            }
        )
        if gateway == "momo":
            return Response(status_code=204)  # MoMo wants 204
        if gateway == "vnpay":
            return JSONResponse({"RspCode": "00", "Message": "Confirm Success"})
        return JSONResponse({"success": True})

    return app, router.sandbox_store


@pytest.fixture(scope="session")
def sandbox_env() -> Iterator[SandboxEnv]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(base, api_port=port)
    captured: list[dict[str, Any]] = []
    app, store = _capture_app(settings, captured)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", loop="asyncio", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.02)
    yield SandboxEnv(settings=settings, base=base, store=store, captured=captured)
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()
