"""Every hot query is served by an index.

The statements are not listed by hand: the test records every statement the API, the worker and
the event relay send while orders go through their lives (create, read, list, pay, replay, retry,
cancel, expire, late payment, a reminder, the relay's rounds), then asks Postgres for each one's plan
with sequential scans priced out (`enable_seqscan = off`: a table with a usable index is then never
read whole, and one without is, whatever its size). A new query without its index fails here.
Aggregates that read whole tables on purpose (/metrics, the catalog page) are not on this path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from activities.event_relay import EventRelay
from gateways.momo import MomoGateway
from tests.helpers import momo_ipn, wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="session")
VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


@pytest.fixture
def statements() -> Iterator[dict[str, tuple[str, Any]]]:
    """Every distinct statement sent to Postgres by any engine while the test runs."""
    seen: dict[str, tuple[str, Any]] = {}

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        key = " ".join(statement.split())
        if key.upper().startswith(VERBS) and key not in seen:
            seen[key] = (statement, parameters[0] if executemany else parameters)

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def seq_scans(plan: dict[str, Any]) -> list[str]:
    found = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" and "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += seq_scans(child)
    return found


async def plans(stack: Any, recorded: dict[str, tuple[str, Any]]) -> dict[str, list[str]]:
    out = {}
    for key, (statement, parameters) in recorded.items():
        async with stack.engine.begin() as conn:
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            result = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            out[key] = seq_scans(result.scalar()[0]["Plan"])
    return out


async def test_every_hot_query_uses_an_index(stack, statements):
    admin = stack.auth("plans-admin", "admin")
    product = await stack.product(stock=20, price=40_000)
    vid = product["variants"][0]["id"]
    headers = stack.auth(f"plans-{uuid.uuid4().hex[:6]}")
    momo = MomoGateway(stack.settings)

    async def order(gateway: str = "momo", **extra: Any) -> dict[str, Any]:
        r = await stack.order(
            {**headers, "Idempotency-Key": uuid.uuid4().hex}, vid, 1, gateway=gateway, **extra
        )
        assert r.status_code == 201, r.text
        return r.json()["data"]

    paid, failed, cancelled, expired, flash = (
        await order(),
        await order(),
        await order("payos"),
        await order("vnpay"),
        await order(orderType="flash"),
    )
    # Reads: detail by id and by code, session, listings (the shopper's, and an admin's filters).
    for ref in (paid["orderId"], str(paid["orderCode"])):
        assert (await stack.http.get(f"/orders/{ref}", headers=headers)).status_code == 200
    assert (await stack.http.get(f"/orders/{paid['orderId']}/session", headers=headers)).status_code == 200
    assert (await stack.http.get("/orders", headers=headers)).status_code == 200
    for params in ({"status": "pending_payment"}, {"customerId": "plans"}, {"paymentStatus": "needs_review"}):
        assert (await stack.http.get("/orders", params=params, headers=admin)).status_code == 200
    assert (
        await stack.http.post(f"/orders/{paid['orderId']}/events/token", headers=headers)
    ).status_code == 200
    # Verdicts: a payment, its replay, a failure, a retry, a cancel, an admin's expiry.
    attempt = paid["attempts"][0]
    ipn = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], paid["grandTotal"], 0)
    for _ in range(2):
        assert (await stack.http.post("/webhooks/momo", json=ipn)).status_code == 204
    await wait_for_status(stack, paid["orderId"], headers, "paid")
    attempt = failed["attempts"][0]
    fail = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], failed["grandTotal"], 1001)
    assert (await stack.http.post("/webhooks/momo", json=fail)).status_code == 204
    await asyncio.sleep(0.5)
    r = await stack.http.post(
        f"/orders/{failed['orderId']}/retry-payment", json={"gateway": "vnpay"}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert (
        await stack.http.post(f"/orders/{cancelled['orderId']}/cancel", json={}, headers=headers)
    ).status_code == 200
    assert (
        await stack.http.post(f"/admin/orders/{expired['orderId']}/expire", headers=admin)
    ).status_code == 200
    # A window that closes by its timer (after its reminder), then money that comes after it.
    await wait_for_status(stack, flash["orderId"], headers, "expired", timeout=20)
    attempt = flash["attempts"][0]
    late = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], flash["grandTotal"], 0)
    assert (await stack.http.post("/webhooks/momo", json=late)).status_code == 204
    for _ in range(100):
        detail = (await stack.http.get(f"/orders/{flash['orderId']}", headers=headers)).json()["data"]
        if detail["attempts"][0]["status"] in ("refund_required", "refunded"):  # settled, then refunded
            break
        await asyncio.sleep(0.1)
    # The order-event relay's round (its receiver is down: the retry path too).
    relay = EventRelay(
        stack.engine, stack.settings.model_copy(update={"order_events_urls": "http://127.0.0.1:9/"})
    )
    await relay.deliver_due()

    kinds = {key.split(" ", 1)[0].upper() for key in statements}
    assert {"SELECT", "INSERT", "UPDATE", "WITH"} <= kinds and len(statements) >= 25, len(statements)
    scanned = {key: tables for key, tables in (await plans(stack, statements)).items() if tables}
    assert not scanned, "\n\n".join(f"{tables}: {key}" for key, tables in scanned.items())
