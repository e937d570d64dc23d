"""Live order events over SSE against the real stack: the detail on connect, pushes on change
(from Postgres NOTIFY, not polling), heartbeats, the stream's end, auth, and the listener's
reconnect after its connection is killed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services import order_events as order_stream

pytestmark = pytest.mark.asyncio(loop_scope="session")


class EventStream:
    """A minimal SSE reader: yields ("session", detail) for events, ("comment", text) for comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def _read(self) -> tuple[str, Any]:
        event, data, comments = "message", [], []
        async for line in self._lines:
            if line == "":
                if data:
                    return event, json.loads("\n".join(data))
                if comments:
                    return "comment", "\n".join(comments)
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                comments.append(value)
            elif field == "event":
                event = value
            elif field == "data":
                data.append(value)
        raise StopAsyncIteration

    async def next(self, timeout: float = 2.0) -> tuple[str, Any]:
        return await asyncio.wait_for(self._read(), timeout)

    async def closes(self, timeout: float = 2.0) -> bool:
        try:
            await self.next(timeout)
        except StopAsyncIteration:
            return True
        return False


@asynccontextmanager
async def stream(stack: Any, ref: str, **request: Any) -> AsyncIterator[EventStream]:
    timeout = httpx.Timeout(10, read=30)
    async with (
        httpx.AsyncClient(base_url=f"{stack.base}/api/v1", timeout=timeout) as http,
        http.stream("GET", f"/orders/{ref}/events", **request) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


async def new_order(stack: Any, gateway: str = "momo") -> tuple[dict[str, Any], dict[str, str], str]:
    """The order, its owner's headers, and a stream token for it (what a browser puts in the URL)."""
    product = await stack.product(stock=5)
    sub = f"sse-{uuid.uuid4().hex[:8]}"
    headers = stack.auth(sub)
    r = await stack.order(headers, product["variants"][0]["id"], 1, gateway=gateway)
    assert r.status_code == 201, r.text
    order = r.json()["data"]
    return order, headers, await stream_token(stack, order["orderId"], headers)


async def stream_token(stack: Any, ref: str, headers: dict[str, str]) -> str:
    r = await stack.http.post(f"/orders/{ref}/events/token", headers=headers)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["expiresIn"] == 300 and data["eventsUrl"].endswith("/events")
    return data["token"]


async def pushed(
    es: EventStream, changed: Callable[[dict[str, Any]], bool], timeout: float = 2.0
) -> dict[str, Any]:
    """The first pushed detail for which `changed` holds, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        kind, detail = await es.next(max(0.01, deadline - time.monotonic()))
        if kind == "session" and changed(detail):
            return detail


def left(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda detail: detail["status"] != status


async def test_stream_sends_the_order_then_pushes_the_cancel_to_every_watcher_and_ends(stack):
    order, headers, token = await new_order(stack)
    async with (
        stream(stack, order["orderId"], headers=headers) as by_header,
        stream(stack, str(order["orderCode"]), params={"token": token}) as by_query,
    ):
        for es in (by_header, by_query):
            kind, first = await es.next()
            assert kind == "session" and first["orderId"] == order["orderId"]
            assert first["status"] == "pending_payment" and first["session"]["status"] == "active"
            detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
            assert set(first) == set(detail) and set(first["session"]) == set(detail["session"])
            assert first["session"]["expiresAt"] == detail["session"]["expiresAt"]
        r = await stack.http.post(f"/orders/{order['orderId']}/cancel", json={}, headers=headers)
        assert r.status_code == 200, r.text
        for es in (by_header, by_query):
            cancelled = await pushed(es, left("pending_payment"))
            assert cancelled["status"] == "cancelled" and cancelled["session"]["status"] == "cancelled"
            assert await es.closes()
    # An order that has ended: one event, then the stream ends at once.
    async with stream(stack, order["orderId"], headers=headers) as es:
        assert (await es.next())[1]["status"] == "cancelled"
        assert await es.closes()


async def test_payment_at_the_gateway_is_pushed(stack):
    order, _, token = await new_order(stack, "vnpay")
    async with stream(stack, order["orderId"], params={"token": token}) as es:
        assert (await es.next())[1]["status"] == "pending_payment"
        async with httpx.AsyncClient(follow_redirects=True, timeout=10) as http:
            page = str((await http.get(order["attempts"][0]["paymentUrl"])).url)
            r = await http.post(f"{page}/pay", json={}, headers={"Accept": "application/json"})
            assert r.status_code == 200, r.text
        paid = await pushed(es, left("pending_payment"), timeout=5)
        assert paid["status"] == "paid" and paid["paymentStatus"] == "success"
        assert await es.closes()


async def test_a_moved_deadline_is_pushed(stack):
    order, headers, _ = await new_order(stack)
    async with stream(stack, order["orderId"], headers=headers) as es:
        first = (await es.next())[1]
        r = await stack.http.post(
            f"/admin/orders/{order['orderId']}/extend",
            json={"minutes": 5},
            headers=stack.auth("ops", "admin"),
        )
        assert r.status_code == 200, r.text
        moved = await pushed(es, lambda d: d["session"]["expiresAt"] != first["session"]["expiresAt"])
        assert moved["session"]["expiresAt"] > first["session"]["expiresAt"]
        assert moved["status"] == "pending_payment"


async def test_quiet_streams_get_heartbeat_comments(stack, monkeypatch):
    monkeypatch.setattr(order_stream, "HEARTBEAT_SECONDS", 0.2)
    order, headers, _ = await new_order(stack)
    async with stream(stack, order["orderId"], headers=headers) as es:
        assert (await es.next())[0] == "session"
        assert await es.next() == ("comment", "heartbeat")
        assert await es.next() == ("comment", "heartbeat")


async def test_listener_reconnects_after_its_connection_is_killed(stack):
    order, headers, _ = await new_order(stack)

    async def listener_pids() -> set[int]:
        async with stack.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                {"name": order_stream.APPLICATION_NAME},
            )
            return {r.pid for r in rows}

    killed = await listener_pids()
    assert killed, "no order-events listener connected"
    async with stream(stack, order["orderId"], headers=headers) as es:
        assert (await es.next())[1]["status"] == "pending_payment"
        async with stack.engine.connect() as conn:
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                {"pids": list(killed)},
            )
        deadline = time.monotonic() + 10
        while not (await listener_pids()) - killed:
            assert time.monotonic() < deadline, "the listener did not reconnect"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # LISTEN follows the connect
        r = await stack.http.post(f"/orders/{order['orderId']}/cancel", json={}, headers=headers)
        assert r.status_code == 200, r.text
        assert (await pushed(es, left("pending_payment")))["status"] == "cancelled"
        assert await es.closes()


async def test_a_closed_stream_stops_watching(stack):
    order, headers, _ = await new_order(stack)
    hub: order_stream.OrderEvents = stack.app.state.order_events
    async with stream(stack, order["orderId"], headers=headers) as es:
        await es.next()
        assert hub.watching(order["orderId"]) == 1
    deadline = time.monotonic() + 2
    while hub.watching(order["orderId"]):  # the server notices the client went away
        assert time.monotonic() < deadline, "the stream's subscription outlived its client"
        await asyncio.sleep(0.05)


async def test_who_may_watch(stack):
    order, headers, token = await new_order(stack)
    url = f"/orders/{order['orderId']}/events"
    other = await stack.http.get(url, headers=stack.auth("someone-else"))
    assert other.status_code == 404 and other.json()["error"] == "ORDER_NOT_FOUND"
    minted = await stack.http.post(
        f"/orders/{order['orderId']}/events/token", headers=stack.auth("someone-else")
    )
    assert minted.status_code == 404  # nobody mints a token for someone else's order
    _, _, strangers_token = await new_order(stack)
    assert (await stack.http.get(url, params={"token": strangers_token})).status_code == 404
    product = await stack.product(stock=5)
    second = (await stack.order(headers, product["variants"][0]["id"], 1)).json()["data"]
    second_token = await stream_token(stack, second["orderId"], headers)
    # A bearer token never goes in a URL; a stream token opens only its own order's stream.
    full_jwt = headers["Authorization"].removeprefix("Bearer ")
    for request in (
        {},
        {"params": {"token": "not-a-jwt"}},
        {"headers": {"Authorization": "Bearer not-a-jwt"}},
        {"params": {"token": token[:-4] + "AAAA"}},
        {"params": {"token": full_jwt}},
        {"params": {"token": second_token}},
    ):
        r = await stack.http.get(url, **request)
        assert r.status_code == 401, (request, r.text)
        assert r.json()["success"] is False
    assert (await stack.http.get("/orders/123456789/events", headers=headers)).status_code == 404
    async with stream(stack, order["orderId"], headers=stack.auth("ops", "admin")) as es:
        assert (await es.next())[1]["orderId"] == order["orderId"]  # admins watch any order
