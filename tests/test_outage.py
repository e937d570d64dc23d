"""A real Postgres outage on the real stack: the embedded server of this file's own is stopped
(`pg_ctl stop -m immediate`, a crash) while links are being made and while windows close, and
started again on the same data. The API answers 503 DATABASE_UNAVAILABLE meanwhile (never a 500);
shoppers who retry with their Idempotency-Key get their order and its link once it is back; orders
end as they were driven (paid at the gateway -> paid, unpaid -> expired) and every unit of stock is
accounted for."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from api.app import create_app
from devstack.postgres import EmbeddedPostgres
from tests.conftest import free_port, own_stack, serve
from tests.helpers import click, open_pay_page, wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="session")
WINDOW_MIN = 0.1  # 6-s windows: they close while Postgres is down
DOWN_S = 6.0
STOCK = 20


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A server for this file alone: stopping it touches no other test's database."""
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="paywindow-outage-")) / "data")
    pg.start()
    yield pg
    pg.delete_on_stop = True
    pg.stop()


class Shopper:
    """Creates one order with an Idempotency-Key, retrying 503s with the same key as a client
    should; writes down every answer."""

    def __init__(self, stack: Any, variant_id: str, gateway: str, order_type: str = "outage") -> None:
        self.stack, self.variant_id, self.gateway, self.order_type = stack, variant_id, gateway, order_type
        self.headers = {
            **stack.auth(f"outage-{uuid.uuid4().hex[:6]}"),
            "Idempotency-Key": f"k-{uuid.uuid4()}",
        }
        self.answers: list[tuple[int, str | None]] = []
        self.order: dict[str, Any] | None = None

    async def run(self, patience_s: float = 60) -> None:
        give_up = time.monotonic() + patience_s
        while time.monotonic() < give_up:
            r = await self.stack.order(
                self.headers, self.variant_id, 1, gateway=self.gateway, orderType=self.order_type
            )
            self.answers.append((r.status_code, r.json().get("error")))
            if r.status_code in (200, 201):
                self.order = r.json()["data"]
            if r.status_code != 503:
                return  # an order, or an answer that retrying would not change
            await asyncio.sleep(0.3)


async def test_orders_end_right_through_a_postgres_crash_and_restart(own_postgres, dev_env):
    async with own_stack(
        own_postgres.url, dev_env, order_type_durations=f"normal=15,outage={WINDOW_MIN}"
    ) as s:
        product = await s.product(stock=STOCK, price=40_000)
        vid = product["variants"][0]["id"]
        admin = s.auth("ops", "admin")

        # Before: four orders whose windows will close during the outage. Two are paid at the
        # gateway with the notification lost (only the deadline's reconciliation can find the
        # money, and it needs Postgres to record it); two are never paid.
        before = [Shopper(s, vid, "momo") for _ in range(2)] + [Shopper(s, vid, "vnpay") for _ in range(2)]
        for shopper in before:
            await shopper.run(patience_s=10)
            assert shopper.order is not None, shopper.answers
        for shopper in before[:2]:
            await click(await open_pay_page(shopper.order["attempts"][0]["paymentUrl"]), "pay", drop=True)

        # During: Postgres crashes; new shoppers arrive while it is down, and keep retrying.
        await asyncio.to_thread(own_postgres.stop, "immediate")
        down_at = time.monotonic()
        during = [Shopper(s, vid, gateway) for gateway in ("momo", "vnpay", "payos")]
        arriving = [asyncio.create_task(shopper.run()) for shopper in during]
        try:
            read = await s.http.get(f"/orders/{before[0].order['orderId']}", headers=before[0].headers)
            assert (read.status_code, read.json()["error"]) == (503, "DATABASE_UNAVAILABLE"), read.text
            assert read.headers["retry-after"] == "1"
            listing = await s.http.get("/orders", headers=admin)
            assert (listing.status_code, listing.json()["error"]) == (503, "DATABASE_UNAVAILABLE"), (
                listing.text
            )
            await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))  # the outage's length
        finally:
            await asyncio.to_thread(own_postgres.start)
            await asyncio.gather(*arriving)  # the shoppers finish before the stack stops

        answers = Counter(a for shopper in before + during for a in shopper.answers)
        assert set(answers) <= {(201, None), (200, None), (503, "DATABASE_UNAVAILABLE")}, answers
        assert answers[(503, "DATABASE_UNAVAILABLE")] >= len(during), answers  # the outage reached the API
        for shopper in during:  # each got its order, with its link, once Postgres was back
            assert shopper.order is not None, shopper.answers
            assert shopper.order["attempts"][0]["paymentUrl"].startswith("http"), shopper.order

        # After: the windows that closed while it was down end as they were driven.
        for shopper, status in zip(before, ("paid", "paid", "expired", "expired"), strict=True):
            await wait_for_status(s, shopper.order["orderId"], shopper.headers, status, timeout=60)
        for shopper in during:
            await wait_for_status(s, shopper.order["orderId"], shopper.headers, "expired", timeout=60)
        async with s.engine.connect() as conn:
            orders = (await conn.execute(text('SELECT status, count(*) FROM "order" GROUP BY status'))).all()
            payments = (
                await conn.execute(
                    text("SELECT status, count(*) FROM payment GROUP BY status ORDER BY status")
                )
            ).all()
        assert dict(orders) == {"paid": 2, "expired": 5}  # one order per shopper, whatever it retried
        assert dict(payments)["success"] == 2
        assert await s.stock(vid) == STOCK - 2  # sold two; every other unit came back, once


async def test_an_api_that_cannot_reach_temporal_answers_503_and_the_retry_gets_the_order(stack):
    """The API's Temporal is unreachable (nothing listens at its address): creating and cancelling
    answer 503 TEMPORAL_UNAVAILABLE with Retry-After, never a 500, and move no stock; reads still
    answer from Postgres; the client's retry with the same key, once Temporal answers, gets one order."""
    port = free_port()
    cut_off = stack.settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "api_port": port}
    )
    server, task = await serve(create_app(cut_off), port)
    try:
        product = await stack.product(stock=4)
        vid = product["variants"][0]["id"]
        headers = {
            **stack.auth(f"no-temporal-{uuid.uuid4().hex[:6]}"),
            "Idempotency-Key": f"k-{uuid.uuid4()}",
        }
        placed = await stack.order(headers, vid, 1)
        assert placed.status_code == 201, placed.text
        order = placed.json()["data"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as api:
            again = {**headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
            body = {
                "items": [{"variantId": vid, "quantity": 2}],
                "gateway": "momo",
                "receiver": {"name": "A", "phone": "0901234567", "address": "HCMC"},
            }
            for r in (
                await api.post("/orders", json=body, headers=again),
                await api.post(f"/orders/{order['orderId']}/cancel", headers=headers),
            ):
                assert (r.status_code, r.json()["error"]) == (503, "TEMPORAL_UNAVAILABLE"), r.text
                assert r.headers["retry-after"] == "1"
            read = await api.get(f"/orders/{order['orderId']}", headers=headers)
            assert read.status_code == 200 and read.json()["data"]["status"] == "pending_payment"
        assert await stack.stock(vid) == 3  # only the first order's unit is reserved
        retried = await stack.http.post("/orders", json=body, headers=again)  # Temporal answers again
        assert retried.status_code == 201, retried.text
        assert await stack.stock(vid) == 1
    finally:
        server.should_exit = True
        await task


async def test_links_are_made_once_while_every_connection_is_killed_again_and_again(own_postgres, dev_env):
    """Every connection to the order database is terminated every 50 ms for 3 s while creates
    (reservation, link, stored link) run: each shopper retrying with its key gets one order with one
    link, the API never answers 500, and every unit is accounted for."""
    async with own_stack(own_postgres.url, dev_env) as s:
        product = await s.product(stock=STOCK, price=40_000)
        vid = product["variants"][0]["id"]
        database = s.settings.database_url.partition("?")[0].rsplit("/", 1)[1]
        stop = asyncio.Event()
        killed = 0

        async def killer() -> None:
            nonlocal killed
            conn = await asyncpg.connect(own_postgres.url)
            try:
                while not stop.is_set():
                    killed += await conn.fetchval(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()) t",
                        database,
                    )
                    await asyncio.sleep(0.05)
            finally:
                await conn.close()

        shoppers = [Shopper(s, vid, gateway, "normal") for gateway in ("momo", "vnpay", "payos") * 3]
        killing = asyncio.create_task(killer())
        try:
            arriving = asyncio.gather(*(shopper.run() for shopper in shoppers))
            await asyncio.sleep(3)
        finally:
            stop.set()
            await killing
        await arriving

        assert killed > 0
        answers = Counter(a for shopper in shoppers for a in shopper.answers)
        assert set(answers) <= {(201, None), (200, None), (503, "DATABASE_UNAVAILABLE")}, answers
        ids = []
        for shopper in shoppers:
            assert shopper.order is not None, shopper.answers
            assert shopper.order["attempts"][0]["paymentUrl"].startswith("http")
            ids.append(shopper.order["orderId"])
        async with s.engine.connect() as conn:
            links = (
                await conn.execute(
                    text(
                        "SELECT order_id::text, count(*) FROM payment WHERE order_id = ANY(:ids) GROUP BY order_id"
                    ),
                    {"ids": ids},
                )
            ).all()
            orders = (await conn.execute(text('SELECT count(*) FROM "order"'))).scalar_one()
        assert dict(links) == dict.fromkeys(ids, 1)  # one link each, however often its step was retried
        assert orders == len(shoppers)
        assert await s.stock(vid) == STOCK - len(shoppers)
        for shopper in shoppers:
            r = await s.http.post(f"/orders/{shopper.order['orderId']}/cancel", headers=shopper.headers)
            assert r.status_code == 200, r.text
        assert await s.stock(vid) == STOCK


class SlowMomo:
    """A proxy in front of the sandbox's MoMo that can hold a request until released: the moment a
    link is being made at the gateway, chosen by the test."""

    def __init__(self) -> None:
        self.target = ""
        self.hold = False
        self.entered, self.released = asyncio.Event(), asyncio.Event()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{path:path}")
        async def forward(path: str, request: Request) -> Response:
            body = await request.body()
            if self.hold and path.endswith("/create"):
                self.entered.set()
                await self.released.wait()
            async with httpx.AsyncClient(timeout=30) as http:
                r = await http.post(
                    f"{self.target}/{path}", content=body, headers={"content-type": "application/json"}
                )
            return Response(r.content, status_code=r.status_code, media_type="application/json")

        return app


async def test_a_link_being_made_when_postgres_goes_down_is_stored_once_it_is_back(own_postgres, dev_env):
    """The stock is reserved and MoMo is making the link when Postgres crashes; MoMo answers while it
    is down. Storing the link waits out the restart (not spending the gateway's tries): the shopper
    gets the order with its one link, never a 502 or a failed order."""
    momo = SlowMomo()
    port = free_port()
    server, task = await serve(momo.app(), port)
    try:
        async with own_stack(
            own_postgres.url, dev_env, momo_endpoint=f"http://127.0.0.1:{port}/sandbox/momo"
        ) as s:
            momo.target = s.base
            product = await s.product(stock=STOCK, price=40_000)
            vid = product["variants"][0]["id"]
            momo.hold = True
            shopper = Shopper(s, vid, "momo", "normal")
            creating = asyncio.create_task(shopper.run())
            try:
                await asyncio.wait_for(momo.entered.wait(), 20)  # reserved; the link is being made
                await asyncio.to_thread(own_postgres.stop, "immediate")
                momo.released.set()  # MoMo answers while Postgres is down
                await asyncio.sleep(DOWN_S)
            finally:
                momo.released.set()
                await asyncio.to_thread(own_postgres.start)
                await creating
            assert shopper.order is not None, shopper.answers
            assert shopper.answers[-1][0] == 201 and shopper.order["status"] == "pending_payment", (
                shopper.answers
            )
            async with s.engine.connect() as conn:
                links = (
                    await conn.execute(
                        text("SELECT count(*) FROM payment WHERE order_id = :id"),
                        {"id": shopper.order["orderId"]},
                    )
                ).scalar_one()
            assert links == 1
            assert await s.stock(vid) == STOCK - 1
    finally:
        server.should_exit = True
        await task
