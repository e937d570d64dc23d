"""The operators' desk over HTTP, on a stack of its own (conftest.own_stack): the order levers, and
the audit trail each action leaves in the transaction of its change."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Stack, own_stack
from tests.helpers import desk_order

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = "desk-admin"


@pytest.fixture(scope="module")
async def desk(pg_url: str, dev_env: Any) -> Any:
    async with own_stack(pg_url, dev_env) as stack:
        yield stack


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth(ADMIN, "admin")


async def trail(stack: Stack, **params: str) -> list[dict]:
    r = await stack.http.get("/admin/audit", params=params, headers=admin(stack))
    assert r.status_code == 200, r.text
    return r.json()["data"]["items"]


async def order_events(stack: Stack, order_id: str) -> list[dict]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM order_event WHERE order_id = :o ORDER BY created_at, id"), {"o": order_id}
        )
        return [r.payload for r in rows]


def refused(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["error"] == code and body["message"], body


# ---- the order levers ------------------------------------------------------------------------------


async def test_order_levers_are_audited_with_their_change(desk: Stack) -> None:
    order, headers = await desk_order(desk, "momo")
    oid = order["orderId"]
    refused(await desk.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 5}, headers=headers), 403, "FORBIDDEN")
    r = await desk.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 5, "note": "customer called"},
                             headers=admin(desk))  # fmt: skip
    assert r.status_code == 200, r.text
    [extended] = await trail(desk, orderId=oid)
    assert (extended["action"], extended["actor"], extended["note"]) == ("order.extend", ADMIN, "customer called")
    assert extended["detail"]["minutes"] == 5
    expires_at = datetime.fromisoformat(r.json()["data"]["expiresAt"])
    assert datetime.fromisoformat(extended["detail"]["expiresAt"]) == expires_at

    r = await desk.http.post(f"/orders/{oid}/cancel", json={"reason": "duplicate order"}, headers=admin(desk))
    assert r.status_code == 200 and r.json()["data"]["status"] == "cancelled", r.text
    cancelled, _ = await trail(desk, orderId=oid)
    assert (cancelled["action"], cancelled["note"]) == ("order.cancel", "duplicate order")
    refused(await desk.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 5}, headers=admin(desk)),
            409, "ORDER_NOT_PENDING")  # fmt: skip
    assert len(await trail(desk, orderId=oid)) == 2

    events = {e["type"]: e for e in await order_events(desk, oid)}
    assert events["order.deadline_moved"]["auditId"] == extended["auditId"]
    assert events["order.deadline_moved"]["actor"] == ADMIN and events["order.deadline_moved"]["note"] == "customer called"
    assert events["order.cancelled"]["auditId"] == cancelled["auditId"] and events["order.cancelled"]["actor"] == ADMIN

    closed, _ = await desk_order(desk, "vnpay")
    r = await desk.http.post(f"/admin/orders/{closed['orderId']}/expire", json={"note": "fraud check"}, headers=admin(desk))
    assert r.status_code == 200 and r.json()["data"]["status"] == "expired", r.text
    [expired] = await trail(desk, orderId=closed["orderId"])
    assert (expired["action"], expired["note"]) == ("order.expire", "fraud check")
    types = [e["type"] for e in await order_events(desk, closed["orderId"])]
    assert types.index("order.deadline_moved") < types.index("order.expired")

    mine, headers = await desk_order(desk, "momo")
    assert (await desk.http.post(f"/orders/{mine['orderId']}/cancel", headers=headers)).status_code == 200
    assert await trail(desk, orderId=mine["orderId"]) == []  # a shopper's cancel is no operator action


# ---- the trail --------------------------------------------------------------------------------------


async def test_the_audit_trail_is_append_only_in_postgres(desk: Stack) -> None:
    assert await trail(desk), "earlier tests left entries"
    for statement in ("UPDATE audit_log SET note = 'rewritten'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with desk.engine.begin() as conn:
                await conn.execute(text(statement))


async def test_the_audit_trail_reads_by_subject_and_for_admins_only(desk: Stack) -> None:
    everything = (await desk.http.get("/admin/audit", params={"size": 100}, headers=admin(desk))).json()["data"]
    assert everything["total"] >= 3 and len(everything["items"]) == min(100, everything["total"])
    times = [e["at"] for e in everything["items"]]
    assert times == sorted(times, reverse=True)  # newest first
    one = (await desk.http.get("/admin/audit", params={"size": 1, "page": 2}, headers=admin(desk))).json()["data"]
    assert one["items"] == everything["items"][1:2] and one["total"] == everything["total"]
    assert await trail(desk, orderId=str(uuid.uuid4())) == []
    refused(await desk.http.get("/admin/audit", headers=desk.auth("shopper")), 403, "FORBIDDEN")
    for params in ({"orderId": "123"}, {"paymentId": "x"}, {"variantId": "y"}, {"size": 101}):
        refused(await desk.http.get("/admin/audit", params=params, headers=admin(desk)), 422, "VALIDATION_ERROR")
