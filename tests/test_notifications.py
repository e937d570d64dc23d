"""Reminders (signed webhook + e-mail over a real local SMTP server) and order events (signed,
retried with backoff, deduplicable by event id), on their own API + worker + task queue."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from activities.notify import verify_signature
from devstack.app import create_dev_app
from tests.conftest import Stack, free_port, make_settings, serve
from tests.helpers import wait_for_status
from worker import running_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = "test-notification-secret-0123456789"


class Inbox:
    """Captures HTTP deliveries; fails the first `fail_first` of each event id with a 500, and
    everything while `down`."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self.fail_first = 0
        self.down = False
        self.refused = 0
        self.seen_failures: dict[str, int] = {}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            event_id = request.headers.get("x-paywindow-event-id", "")
            if self.down:
                self.refused += 1
                return Response(status_code=500)
            if self.seen_failures.get(event_id, 0) < self.fail_first:
                self.seen_failures[event_id] = self.seen_failures.get(event_id, 0) + 1
                return Response(status_code=500)
            self.hits.append({"headers": dict(request.headers), "body": body, "json": json.loads(body)})
            return Response(status_code=204)

        return app


class Mails:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="session")
async def notifying(pg_url: str, stack: Any) -> AsyncIterator[tuple[Stack, Inbox, Mails]]:
    inbox, mails = Inbox(), Mails()
    hook_port, smtp_port, api_port = free_port(), free_port(), free_port()
    hook_server, hook_task = await serve(inbox.app(), hook_port)
    smtp = Controller(mails, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    settings = make_settings(
        pg_url,
        api_port,
        temporal_address=stack.settings.temporal_address,
        temporal_task_queue="orders-notify",
        order_type_durations="normal=15,flash=0.08",
        order_session_reminder_minutes=0.05,  # 3 s before a 4.8-s window closes
        payment_in_flight_grace_minutes=0.02,
        reminder_webhook_url=f"http://127.0.0.1:{hook_port}/hook",
        order_events_urls=f"http://127.0.0.1:{hook_port}/hook",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        notification_secret=SECRET,
        rate_limit_per_minute=0,
        order_events_retry_cap_seconds=2,  # production: 60 s
    )
    server, task = await serve(create_dev_app(settings), api_port)
    async with running_worker(settings, client=stack.client):
        s = Stack(settings, stack.client, stack.engine)
        yield s, inbox, mails
        await s.http.aclose()
    server.should_exit = hook_server.should_exit = True
    await asyncio.gather(task, hook_task)
    smtp.stop()


async def until(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def order_hits(inbox: Inbox, order_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
    return [
        h
        for h in inbox.hits
        if h["json"].get("orderId") == order_id and (event_type is None or h["json"]["type"] == event_type)
    ]


async def test_reminder_goes_out_once_per_channel_before_the_deadline(notifying):
    s, inbox, mails = notifying
    product = await s.product(stock=3)
    email = f"shopper-{uuid.uuid4().hex[:6]}@example.com"
    headers = s.auth("reminded")
    r = await s.order(
        headers,
        product["variants"][0]["id"],
        gateway="vnpay",
        orderType="flash",
        receiver={"name": "A", "phone": "0901234567", "address": "x", "email": email},
    )
    assert r.status_code == 201, r.text
    order = r.json()["data"]
    assert order["receiver"]["email"] == email
    await until(lambda: order_hits(inbox, order["orderId"], "payment.reminder"))
    reminder = order_hits(inbox, order["orderId"], "payment.reminder")[0]
    assert verify_signature(SECRET, reminder["body"], reminder["headers"]["x-paywindow-signature"])
    assert not verify_signature("wrong", reminder["body"], reminder["headers"]["x-paywindow-signature"])
    assert reminder["json"]["orderCode"] == order["orderCode"] and reminder["json"]["paymentUrl"]
    assert 0 < reminder["json"]["remainingSeconds"] <= 4
    await until(lambda: any(email in m.rcpt_tos for m in mails.messages))
    mail = next(m for m in mails.messages if email in m.rcpt_tos)
    assert str(order["orderCode"]) in mail.content.decode()
    await wait_for_status(s, order["orderId"], headers, "expired", timeout=20)
    await asyncio.sleep(0.5)  # negative check: a bounded window in which no second reminder may come
    assert len(order_hits(inbox, order["orderId"], "payment.reminder")) == 1
    assert sum(email in m.rcpt_tos for m in mails.messages) == 1
    async with s.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT channel, status FROM notification WHERE order_id = :id ORDER BY channel"),
                {"id": order["orderId"]},
            )
        ).all()
    assert [(r.channel, r.status) for r in rows] == [("email", "sent"), ("webhook", "sent")]


async def test_no_reminder_once_the_order_has_ended(notifying):
    s, inbox, _ = notifying
    product = await s.product(stock=3)
    headers = s.auth("no-reminder")
    order = (await s.order(headers, product["variants"][0]["id"], gateway="vnpay", orderType="flash")).json()[
        "data"
    ]
    assert (await s.http.post(f"/orders/{order['orderId']}/cancel", headers=headers)).status_code == 200
    # Negative check: a bounded observation window, 6 s, past where the reminder would have been
    # due (1.8 s after the start) and past the window's own end.
    await asyncio.sleep(6)
    assert order_hits(inbox, order["orderId"], "payment.reminder") == []


async def test_order_events_are_signed_retried_and_carry_an_id(notifying):
    s, inbox, _ = notifying
    inbox.fail_first = 2  # the receiver is down for the first two tries of each event
    try:
        product = await s.product(stock=3)
        headers = s.auth("events")
        order = (await s.order(headers, product["variants"][0]["id"])).json()["data"]
        async with httpx.AsyncClient(follow_redirects=True) as http:
            page = str((await http.get(order["attempts"][0]["paymentUrl"])).url)
            await http.post(f"{page}/pay", headers={"Accept": "application/json"})
        await wait_for_status(s, order["orderId"], headers, "paid")
        await until(lambda: len(order_hits(inbox, order["orderId"])) >= 2, timeout=30)
    finally:
        inbox.fail_first = 0
    hits = order_hits(inbox, order["orderId"])
    assert [h["json"]["type"] for h in hits] == ["order.created", "order.paid"]
    ids = [h["headers"]["x-paywindow-event-id"] for h in hits]
    assert len(set(ids)) == 2 and all(h["json"]["eventId"] == i for h, i in zip(hits, ids, strict=True))
    assert all(inbox.seen_failures[i] == 2 for i in ids)  # each was retried after the failures
    for h in hits:
        assert verify_signature(SECRET, h["body"], h["headers"]["x-paywindow-signature"])
    assert hits[1]["json"]["status"] == "paid" and hits[1]["json"]["grandTotal"] == order["grandTotal"]
    async with s.engine.connect() as conn:
        undelivered = (
            await conn.execute(
                text("SELECT count(*) FROM order_event WHERE order_id = :id AND delivered_at IS NULL"),
                {"id": order["orderId"]},
            )
        ).scalar_one()
    assert undelivered == 0


async def ended_late(s: Stack, order_id: str) -> float:
    """Seconds between the order's deadline and its end, as Postgres recorded them."""
    async with s.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    'SELECT o.ended_at, s.expires_at FROM "order" o JOIN order_session s ON s.order_id = o.id '
                    "WHERE o.id = :id"
                ),
                {"id": order_id},
            )
        ).one()
    return (row.ended_at - row.expires_at).total_seconds()


async def test_windows_close_on_time_while_every_receiver_fails_and_the_backlog_follows(notifying):
    """Production configuration: reminders (webhook + SMTP) and order events on. The webhook receiver
    answers 500 to everything: reminders fail (and are retried), events pile up; the orders end on
    time all the same. Once it is back, the backlog reaches it within the relay's backoff cap."""
    s, inbox, _ = notifying
    product = await s.product(stock=5)
    headers = s.auth("receiver-down")
    inbox.down, refused_before = True, inbox.refused
    try:
        orders = []
        for gateway in ("vnpay", "momo", "payos"):
            r = await s.order(headers, product["variants"][0]["id"], gateway=gateway, orderType="flash")
            assert r.status_code == 201, r.text
            orders.append(r.json()["data"])
        for order in orders:
            await wait_for_status(s, order["orderId"], headers, "expired", timeout=20)
            # The window's 4.8 s plus, for MoMo's unpaid link (reported in flight), its 1.2-s grace.
            assert await ended_late(s, order["orderId"]) < 3, order["attempts"][0]["gateway"]
        assert inbox.refused > refused_before
        async with s.engine.connect() as conn:
            waiting = (
                await conn.execute(
                    text(
                        "SELECT count(*) AS n, max(attempts) AS tries FROM order_event "
                        "WHERE order_id = ANY(:ids) AND delivered_at IS NULL"
                    ),
                    {"ids": [o["orderId"] for o in orders]},
                )
            ).one()
            reminders = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM notification WHERE order_id = ANY(:ids) AND channel = 'webhook' "
                        "AND status = 'failed' AND failures >= 1"
                    ),
                    {"ids": [o["orderId"] for o in orders]},
                )
            ).scalar_one()
        assert waiting.n == 6 and waiting.tries >= 1  # created + expired, for each order: waiting, and tried
        assert reminders == 3  # every webhook reminder failed, and is recorded
    finally:
        inbox.down = False
    # Back: the backlog arrives within the relay's backoff cap (2 s here), oldest first per order.
    # Uncapped, the events' backoff would have grown past this test's 10-s patience.
    for order in orders:
        await until(lambda o=order: len(order_hits(inbox, o["orderId"], "order.expired")) == 1, timeout=10)
        kinds = [
            h["json"]["type"]
            for h in order_hits(inbox, order["orderId"])
            if h["json"]["type"] != "payment.reminder"
        ]
        assert kinds == ["order.created", "order.expired"], kinds


async def test_late_money_settled_through_its_own_path_publishes_its_events(notifying):
    s, inbox, _ = notifying
    product = await s.product(stock=3)
    headers = s.auth("late-events")
    order = (await s.order(headers, product["variants"][0]["id"], gateway="momo", orderType="flash")).json()[
        "data"
    ]
    await wait_for_status(s, order["orderId"], headers, "expired", timeout=20)
    async with httpx.AsyncClient(follow_redirects=True) as http:  # MoMo's link outlives our window
        page = str((await http.get(order["attempts"][0]["paymentUrl"])).url)
        r = await http.post(f"{page}/pay", headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
    await until(lambda: order_hits(inbox, order["orderId"], "payment.refunded"), timeout=20)
    kinds = [h["json"]["type"] for h in order_hits(inbox, order["orderId"])]
    assert kinds.index("payment.refund_required") < kinds.index("payment.refunded")
