"""The operators' money desk over HTTP, on a stack of its own (conftest.own_stack, so its queues hold
only what these tests made): payments that need a person, a refund asked again (in the worker, once
at the gateway however often asked), money sent back by hand, stored verdicts handed on again, the
order levers, and the audit trail each action leaves in the transaction of its change."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain.ids import refund_key, refund_workflow_id
from domain.messages import RefundRequest
from gateways.momo import MomoGateway, momo_safe_id
from tests.conftest import Stack, own_stack
from tests.helpers import (
    click,
    desk_order,
    expire_now,
    momo_ipn,
    money_awaiting_refund,
    open_pay_page,
    stored_not_delivered,
    wait_for_status,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = "desk-admin"


@pytest.fixture(scope="module")
async def desk(pg_url: str, dev_env: Any) -> Any:
    async with own_stack(pg_url, dev_env) as stack:
        yield stack


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth(ADMIN, "admin")


async def needs_review(stack: Stack, received: int = 60_000) -> dict:
    """A MoMo order that a signed IPN of another amount put under review."""
    order, _ = await desk_order(stack, "momo")
    attempt = order["attempts"][0]
    ipn = momo_ipn(MomoGateway(stack.settings), attempt["gatewayOrderId"], attempt["requestId"], received, 0)
    r = await stack.http.post("/webhooks/momo", json=ipn)
    assert r.status_code == 400 and r.json()["error"] == "AMOUNT_MISMATCH", r.text
    return order


async def desk_item(stack: Stack, order_id: str, **params: str) -> dict | None:
    page = (
        await stack.http.get("/admin/payments", params={"size": 100, **params}, headers=admin(stack))
    ).json()
    return next((p for p in page["data"]["items"] if p["orderId"] == order_id), None)


async def payment_id(stack: Stack, order_id: str) -> str:
    async with stack.engine.connect() as conn:
        return str(
            (
                await conn.execute(text("SELECT id FROM payment WHERE order_id = :o"), {"o": order_id})
            ).scalar_one()
        )


async def trail(stack: Stack, **params: str) -> list[dict]:
    r = await stack.http.get("/admin/audit", params=params, headers=admin(stack))
    assert r.status_code == 200, r.text
    return r.json()["data"]["items"]


async def order_events(stack: Stack, order_id: str) -> list[dict]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM order_event WHERE order_id = :o ORDER BY created_at, id"),
            {"o": order_id},
        )
        return [r.payload for r in rows]


def refused(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["error"] == code and body["message"], body


# ---- the queue ------------------------------------------------------------------------------------


async def test_the_queue_lists_money_that_needs_a_person_longest_waiting_first(desk: Stack) -> None:
    late = await money_awaiting_refund(desk, "payos")
    review = await needs_review(desk, received=60_000)
    paid, headers = await desk_order(desk, "momo")
    await click(await open_pay_page(paid["attempts"][0]["paymentUrl"]), "pay")
    await wait_for_status(desk, paid["orderId"], headers, "paid")

    r = await desk.http.get("/admin/payments", params={"size": 100}, headers=admin(desk))
    assert r.status_code == 200, r.text
    page = r.json()["data"]
    ids = [p["orderId"] for p in page["items"]]
    assert ids.index(late["orderId"]) < ids.index(review["orderId"]) and paid["orderId"] not in ids
    assert page["total"] == len(page["items"]) and (page["page"], page["size"]) == (1, 100)
    item = next(p for p in page["items"] if p["orderId"] == review["orderId"])
    assert set(item) == {
        "paymentId",
        "orderId",
        "orderCode",
        "orderStatus",
        "attemptNo",
        "gateway",
        "gatewayOrderId",
        "transactionId",
        "amount",
        "receivedAmount",
        "status",
        "reason",
        "refundAsked",
        "updatedAt",
    }
    assert (item["status"], item["gateway"], item["amount"], item["receivedAmount"]) == (
        "needs_review",
        "momo",
        64_000,
        60_000,
    )
    assert (
        item["orderCode"] == review["orderCode"]
        and item["reason"] == "underpaid: received 60000 of 64000 VND"
    )
    assert item["refundAsked"] is False
    assert item["gatewayOrderId"] == review["attempts"][0]["gatewayOrderId"]
    late_item = next(p for p in page["items"] if p["orderId"] == late["orderId"])
    assert (late_item["status"], late_item["orderStatus"]) == ("refund_required", "expired")

    assert await desk_item(desk, late["orderId"], gateway="momo") is None
    assert await desk_item(desk, late["orderId"], gateway="payos") is not None
    assert await desk_item(desk, review["orderId"], status="refund_required") is None
    assert await desk_item(desk, paid["orderId"], status="success") is not None
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await desk_item(desk, late["orderId"], **{"from": later}) is None
    assert await desk_item(desk, late["orderId"], to=later) is not None
    assert await desk_item(desk, late["orderId"], **{"from": "2026-01-01T00:00:00", "to": later}) is not None


async def test_the_queue_is_for_admins_and_refuses_bad_filters(desk: Stack) -> None:
    refused(await desk.http.get("/admin/payments", headers=desk.auth("shopper")), 403, "FORBIDDEN")
    refused(await desk.http.get("/admin/payments"), 401, "UNAUTHORIZED")
    for params in (
        {"status": "lost"},
        {"gateway": "paypal"},
        {"size": 0},
        {"from": "yesterday"},
        {"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
    ):
        refused(
            await desk.http.get("/admin/payments", params=params, headers=admin(desk)),
            422,
            "VALIDATION_ERROR",
        )


# ---- refunds through the gateway ---------------------------------------------------------------------


@pytest.mark.parametrize("gateway", ["momo", "vnpay"])
async def test_two_concurrent_refunds_refund_the_payment_once(desk: Stack, gateway: str) -> None:
    order = await money_awaiting_refund(desk, gateway)
    pid = await payment_id(desk, order["orderId"])
    gid = order["attempts"][0]["gatewayOrderId"]

    async def ask() -> Any:
        return await desk.http.post(
            f"/admin/payments/{pid}/refund", json={"note": "late money"}, headers=admin(desk)
        )

    answers = await asyncio.gather(ask(), ask())
    codes = sorted(a.status_code for a in answers)
    assert codes in ([200, 200], [200, 409]), [a.text for a in answers]
    done = next(a.json()["data"] for a in answers if a.status_code == 200)
    assert done["status"] == "refunded" and done["reason"].startswith(f"refunded through {gateway}")

    sandbox = desk.app.state.sandbox_store
    txn = sandbox.get(gateway, gid)
    assert len(txn.refunds) == 1 and txn.refunded == 64_000  # one refund at the gateway
    asked = [r for r in sandbox.refund_requests if r["gateway"] == gateway and r["id"] == gid]
    assert len(asked) == 1, asked  # and it was asked once
    if gateway == "momo":  # the late settlement's own key: whoever asks, it is the same refund
        assert asked[0]["request_id"] == momo_safe_id(refund_key(order["orderId"], 0))

    entries = await trail(desk, paymentId=pid)
    assert [e["action"] for e in entries] == ["payment.refund"] * codes.count(200)
    assert entries[0]["actor"] == ADMIN and entries[0]["note"] == "late money"
    assert entries[0]["detail"]["amount"] == 64_000 and entries[0]["orderId"] == order["orderId"]
    types = [e["type"] for e in await order_events(desk, order["orderId"])]
    assert (
        types.count("payment.refund_requested") == codes.count(200) and types.count("payment.refunded") == 1
    )
    refused(await ask(), 409, "NOT_REFUNDABLE")


async def test_refunds_that_cannot_happen_are_refused_clearly(desk: Stack) -> None:
    payos = await money_awaiting_refund(desk, "payos")
    payos_pid = await payment_id(desk, payos["orderId"])
    url = f"/admin/payments/{payos_pid}/refund"
    refused(await desk.http.post(url, headers=admin(desk)), 409, "REFUND_NOT_SUPPORTED")
    refused(await desk.http.post(url, headers=desk.auth("shopper")), 403, "FORBIDDEN")
    refused(await desk.http.post(url), 401, "UNAUTHORIZED")
    refused(await desk.http.post(url, json={"note": "x" * 501}, headers=admin(desk)), 422, "VALIDATION_ERROR")
    refused(await desk.http.post(url, json={"why": "x"}, headers=admin(desk)), 422, "VALIDATION_ERROR")
    pending, _ = await desk_order(desk, "momo")
    pending_pid = await payment_id(desk, pending["orderId"])
    refused(
        await desk.http.post(f"/admin/payments/{pending_pid}/refund", headers=admin(desk)),
        409,
        "NOT_REFUNDABLE",
    )
    refused(
        await desk.http.post(f"/admin/payments/{uuid.uuid4()}/refund", headers=admin(desk)),
        404,
        "PAYMENT_NOT_FOUND",
    )
    refused(
        await desk.http.post("/admin/payments/not-an-id/refund", headers=admin(desk)), 422, "VALIDATION_ERROR"
    )
    assert await trail(desk, paymentId=payos_pid) == [] and await trail(desk, paymentId=pending_pid) == []


async def test_a_refund_the_gateway_refuses_says_why_and_stays_for_a_person(desk: Stack) -> None:
    # A signed IPN claimed money MoMo never took: the sandbox has no such paid transaction (1080).
    order = await needs_review(desk, received=60_000)
    await expire_now(desk, order)  # the desk acts once the order's window has closed
    pid = await payment_id(desk, order["orderId"])
    r = await desk.http.post(
        f"/admin/payments/{pid}/refund", json={"note": "send it back"}, headers=admin(desk)
    )
    refused(r, 502, "REFUND_FAILED")
    assert "1080" in r.json()["message"]
    item = await desk_item(desk, order["orderId"])
    assert item is not None and item["status"] == "refund_required"  # the operator's decision stands
    assert "refused 1080" in item["reason"]
    entries = await trail(desk, paymentId=pid)
    assert len(entries) == 1 and entries[0]["detail"]["amount"] == 60_000  # what the gateway reported
    assert entries[0]["detail"]["status"] == "needs_review"


# ---- money sent back by hand -------------------------------------------------------------------------


async def test_mark_refunded_records_money_sent_back_outside_the_gateway(desk: Stack) -> None:
    order = await money_awaiting_refund(desk, "payos")
    pid = await payment_id(desk, order["orderId"])
    url = f"/admin/payments/{pid}/mark-refunded"
    for body in ({}, {"reference": "   "}, {"reference": "x" * 201}, {"reference": "VCB", "note": 3}):
        refused(await desk.http.post(url, json=body, headers=admin(desk)), 422, "VALIDATION_ERROR")
    refused(
        await desk.http.post(url, json={"reference": "VCB-1"}, headers=desk.auth("shopper")), 403, "FORBIDDEN"
    )
    refused(
        await desk.http.post(
            f"/admin/payments/{uuid.uuid4()}/mark-refunded", json={"reference": "VCB-1"}, headers=admin(desk)
        ),
        404,
        "PAYMENT_NOT_FOUND",
    )

    r = await desk.http.post(
        url, json={"reference": "VCB-20261201-77", "note": "bank transfer"}, headers=admin(desk)
    )
    assert r.status_code == 200, r.text
    done = r.json()["data"]
    assert done["status"] == "refunded" and done["reason"] == "refunded by hand: VCB-20261201-77"
    assert await desk_item(desk, order["orderId"]) is None
    assert (await desk_item(desk, order["orderId"], status="refunded"))["paymentId"] == pid
    [entry] = await trail(desk, paymentId=pid)
    assert (entry["action"], entry["actor"], entry["note"]) == (
        "payment.mark_refunded",
        ADMIN,
        "bank transfer",
    )
    assert entry["detail"]["reference"] == "VCB-20261201-77" and entry["orderCode"] == order["orderCode"]
    [event] = [e for e in await order_events(desk, order["orderId"]) if e["type"] == "payment.refunded"]
    assert (
        event["manual"] is True
        and event["reference"] == "VCB-20261201-77"
        and event["auditId"] == entry["auditId"]
    )
    refused(
        await desk.http.post(url, json={"reference": "again"}, headers=admin(desk)), 409, "NOT_REFUNDABLE"
    )


async def test_mark_refunded_waits_while_a_gateway_refund_may_still_happen(desk: Stack) -> None:
    order = await money_awaiting_refund(desk, "momo")
    pid = await payment_id(desk, order["orderId"])
    # A refund workflow still trying (on a queue no worker polls, so it stays running).
    handle = await desk.client.start_workflow(
        "RefundWorkflow",
        RefundRequest(payment_id=pid, amount=64_000, requested_by=ADMIN, audit_id=str(uuid.uuid4())),
        id=refund_workflow_id(pid),
        task_queue=f"nobody-{uuid.uuid4().hex[:6]}",
    )
    url = f"/admin/payments/{pid}/mark-refunded"
    try:
        refused(
            await desk.http.post(url, json={"reference": "VCB-2"}, headers=admin(desk)),
            409,
            "REFUND_IN_PROGRESS",
        )
    finally:
        await handle.terminate("test")
    assert await trail(desk, paymentId=pid) == []
    r = await desk.http.post(url, json={"reference": "VCB-2"}, headers=admin(desk))
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text


async def test_a_change_that_fails_leaves_no_audit_entry(desk: Stack) -> None:
    """The entry is written first, in the change's transaction: kill the change and it is gone too."""
    order = await money_awaiting_refund(desk, "payos")
    pid = uuid.UUID(await payment_id(desk, order["orderId"]))  # a UUID: safe to write into the DDL
    async with desk.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE FUNCTION desk_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
        )
        await conn.execute(
            text(
                f"CREATE TRIGGER desk_test_refuse BEFORE UPDATE ON payment FOR EACH ROW "
                f"WHEN (OLD.id = '{pid}') EXECUTE FUNCTION desk_test_refuse()"
            )
        )
    url = f"/admin/payments/{pid}/mark-refunded"
    try:
        refused(
            await desk.http.post(url, json={"reference": "VCB-3"}, headers=admin(desk)), 500, "INTERNAL_ERROR"
        )
    finally:
        async with desk.engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER desk_test_refuse ON payment"))
            await conn.execute(text("DROP FUNCTION desk_test_refuse()"))
    assert await trail(desk, paymentId=str(pid)) == []
    assert "payment.refunded" not in [e["type"] for e in await order_events(desk, order["orderId"])]
    assert (await desk_item(desk, order["orderId"]))["status"] == "refund_required"
    r = await desk.http.post(url, json={"reference": "VCB-3"}, headers=admin(desk))
    assert r.status_code == 200 and len(await trail(desk, paymentId=str(pid))) == 1


# ---- stored verdicts ----------------------------------------------------------------------------------


async def undelivered(stack: Stack) -> dict[str, dict]:
    r = await stack.http.get(
        "/admin/notifications", params={"undelivered": "true", "size": 100}, headers=admin(stack)
    )
    assert r.status_code == 200, r.text
    return {n["notificationId"]: n for n in r.json()["data"]["items"]}


async def test_redeliver_hands_a_stored_verdict_to_its_order(desk: Stack) -> None:
    order, headers = await desk_order(desk, "momo")
    nid = await stored_not_delivered(desk, order)
    nobodys = momo_ipn(
        MomoGateway(desk.settings), f"998{uuid.uuid4().int % 10**6:06d}-0", "r-nobody", 5_000, 0
    )
    assert (await desk.http.post("/webhooks/momo", json=nobodys)).status_code == 404  # kept, unmatched

    waiting = await undelivered(desk)
    assert waiting[nid]["orderId"] == order["orderId"] and waiting[nid]["outcome"] == "success"
    assert waiting[nid]["orderCode"] == order["orderCode"] and waiting[nid]["deliveredAt"] is None
    unmatched = next(n for n in waiting.values() if n["gatewayOrderId"] == nobodys["orderId"])
    assert unmatched["orderId"] is None and unmatched["orderCode"] is None and unmatched["amount"] == 5_000

    r = await desk.http.post(
        f"/admin/notifications/{nid}/redeliver", json={"note": "Temporal was down"}, headers=admin(desk)
    )
    assert r.status_code == 200 and r.json()["data"]["deliveredAt"], r.text
    await wait_for_status(desk, order["orderId"], headers, "paid")
    assert nid not in await undelivered(desk)
    everything = await desk.http.get("/admin/notifications", params={"size": 100}, headers=admin(desk))
    assert nid in {n["notificationId"] for n in everything.json()["data"]["items"]}
    [entry] = await trail(desk, orderId=order["orderId"])
    assert (entry["action"], entry["notificationId"], entry["note"]) == (
        "notification.redeliver",
        nid,
        "Temporal was down",
    )
    assert (
        entry["paymentId"] == await payment_id(desk, order["orderId"])
        and entry["detail"]["deliveredBefore"] is False
    )
    assert "payment.verdict_redelivered" in [e["type"] for e in await order_events(desk, order["orderId"])]

    refused(
        await desk.http.post(
            f"/admin/notifications/{unmatched['notificationId']}/redeliver", headers=admin(desk)
        ),
        409,
        "NOTIFICATION_UNMATCHED",
    )
    refused(
        await desk.http.post(f"/admin/notifications/{uuid.uuid4()}/redeliver", headers=admin(desk)),
        404,
        "NOTIFICATION_NOT_FOUND",
    )
    refused(
        await desk.http.post(f"/admin/notifications/{nid}/redeliver", headers=desk.auth("shopper")),
        403,
        "FORBIDDEN",
    )
    refused(await desk.http.get("/admin/notifications", headers=desk.auth("shopper")), 403, "FORBIDDEN")
    refused(
        await desk.http.get("/admin/notifications", params={"undelivered": "maybe"}, headers=admin(desk)),
        422,
        "VALIDATION_ERROR",
    )


async def test_redeliver_to_an_ended_order_settles_the_money_as_a_late_payment(desk: Stack) -> None:
    order, _ = await desk_order(desk, "momo")
    await expire_now(desk, order)
    nid = await stored_not_delivered(desk, order)
    r = await desk.http.post(f"/admin/notifications/{nid}/redeliver", headers=admin(desk))
    assert r.status_code == 200, r.text
    for _ in range(150):
        item = await desk_item(desk, order["orderId"], status="refunded")
        if item is not None:
            break
        await asyncio.sleep(0.1)
    assert item is not None and item["orderStatus"] == "expired"  # refunded once by the late settlement
    assert len(desk.app.state.sandbox_store.get("momo", order["attempts"][0]["gatewayOrderId"]).refunds) == 1


# ---- the order levers ------------------------------------------------------------------------------


async def test_order_levers_are_audited_with_their_change(desk: Stack) -> None:
    order, headers = await desk_order(desk, "momo")
    oid = order["orderId"]
    refused(
        await desk.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 5}, headers=headers),
        403,
        "FORBIDDEN",
    )
    r = await desk.http.post(
        f"/admin/orders/{oid}/extend", json={"minutes": 5, "note": "customer called"}, headers=admin(desk)
    )
    assert r.status_code == 200, r.text
    [extended] = await trail(desk, orderId=oid)
    assert (extended["action"], extended["actor"], extended["note"]) == (
        "order.extend",
        ADMIN,
        "customer called",
    )
    assert extended["detail"]["minutes"] == 5
    expires_at = datetime.fromisoformat(r.json()["data"]["expiresAt"])
    assert datetime.fromisoformat(extended["detail"]["expiresAt"]) == expires_at

    r = await desk.http.post(f"/orders/{oid}/cancel", json={"reason": "duplicate order"}, headers=admin(desk))
    assert r.status_code == 200 and r.json()["data"]["status"] == "cancelled", r.text
    cancelled, _ = await trail(desk, orderId=oid)
    assert (cancelled["action"], cancelled["note"]) == ("order.cancel", "duplicate order")
    refused(
        await desk.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 5}, headers=admin(desk)),
        409,
        "ORDER_NOT_PENDING",
    )
    assert len(await trail(desk, orderId=oid)) == 2

    events = {e["type"]: e for e in await order_events(desk, oid)}
    assert events["order.deadline_moved"]["auditId"] == extended["auditId"]
    assert (
        events["order.deadline_moved"]["actor"] == ADMIN
        and events["order.deadline_moved"]["note"] == "customer called"
    )
    assert (
        events["order.cancelled"]["auditId"] == cancelled["auditId"]
        and events["order.cancelled"]["actor"] == ADMIN
    )

    closed, _ = await desk_order(desk, "vnpay")
    r = await desk.http.post(
        f"/admin/orders/{closed['orderId']}/expire", json={"note": "fraud check"}, headers=admin(desk)
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "expired", r.text
    [expired] = await trail(desk, orderId=closed["orderId"])
    assert (expired["action"], expired["note"]) == ("order.expire", "fraud check")
    types = [e["type"] for e in await order_events(desk, closed["orderId"])]
    assert types.index("order.deadline_moved") < types.index("order.expired")

    mine, headers = await desk_order(desk, "momo")
    assert (await desk.http.post(f"/orders/{mine['orderId']}/cancel", headers=headers)).status_code == 200
    assert await trail(desk, orderId=mine["orderId"]) == []  # a shopper's cancel is no operator action


# ---- the trail --------------------------------------------------------------------------------------


async def audited_actions(stack: Stack, count: int) -> str:
    """`count` operator actions of this test's own (extensions of a new order): its order id."""
    order, _ = await desk_order(stack, "momo")
    for n in range(count):
        r = await stack.http.post(
            f"/admin/orders/{order['orderId']}/extend",
            json={"minutes": 1, "note": f"#{n}"},
            headers=admin(stack),
        )
        assert r.status_code == 200, r.text
    return order["orderId"]


async def test_the_audit_trail_is_append_only_in_postgres(desk: Stack) -> None:
    order_id = await audited_actions(desk, 1)
    assert len(await trail(desk, orderId=order_id)) == 1
    for statement in (
        "UPDATE audit_log SET note = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with desk.engine.begin() as conn:
                await conn.execute(text(statement))


async def test_the_audit_trail_reads_by_subject_and_for_admins_only(desk: Stack) -> None:
    order_id = await audited_actions(desk, 3)
    mine = await trail(desk, orderId=order_id)
    assert [e["note"] for e in mine] == ["#2", "#1", "#0"] and {e["orderId"] for e in mine} == {order_id}
    everything = (await desk.http.get("/admin/audit", params={"size": 100}, headers=admin(desk))).json()[
        "data"
    ]
    assert everything["total"] >= 3 and len(everything["items"]) == min(100, everything["total"])
    times = [e["at"] for e in everything["items"]]
    assert times == sorted(times, reverse=True)  # newest first
    one = (await desk.http.get("/admin/audit", params={"size": 1, "page": 2}, headers=admin(desk))).json()[
        "data"
    ]
    assert one["items"] == everything["items"][1:2] and one["total"] == everything["total"]
    assert await trail(desk, orderId=str(uuid.uuid4())) == []
    refused(await desk.http.get("/admin/audit", headers=desk.auth("shopper")), 403, "FORBIDDEN")
    for params in ({"orderId": "123"}, {"paymentId": "x"}, {"variantId": "y"}, {"size": 101}):
        refused(
            await desk.http.get("/admin/audit", params=params, headers=admin(desk)), 422, "VALIDATION_ERROR"
        )
