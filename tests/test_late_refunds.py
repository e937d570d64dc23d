"""MoMo and VNPay late payments end `refunded`, counted at the gateway: money the shopper paid after
the order's window closed (here closed early by an operator, so the gateway's link is still open)
is settled by LatePaymentWorkflow, and the gateway's own record shows exactly one accepted refund
of the payment's full amount, however often the gateway notified us. Nothing less passes: a refund
that failed or was never asked for leaves `refund_required`, which fails here."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from domain.ids import late_workflow_id
from domain.messages import LatePayment
from tests.helpers import click, desk_order, expire_now, money_awaiting_refund, open_pay_page, wait_for_status
from workflows.late_payment import LatePaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRICE = 64_000


async def settled(stack: Any, gateway: str, gateway_order_id: str, timeout: float = 30) -> str:
    """The late-payment settlement's end state (its workflow starts when the notification lands)."""
    handle = stack.client.get_workflow_handle_for(
        LatePaymentWorkflow.run, late_workflow_id(gateway, gateway_order_id)
    )
    give_up = time.monotonic() + timeout
    while True:
        try:
            return (await asyncio.wait_for(handle.result(), timeout)).state
        except Exception:  # noqa: BLE001 - not started yet
            assert time.monotonic() < give_up, "no late-payment settlement started"
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("gateway", ["momo", "vnpay"])
async def test_a_late_payment_is_refunded_once_at_the_gateway(stack, gateway):
    order, headers = await desk_order(stack, gateway, price=PRICE)
    attempt = order["attempts"][0]
    page = await open_pay_page(attempt["paymentUrl"])
    await expire_now(stack, order)
    await click(page, "pay", duplicate=2)  # paid after the window closed; notified three times
    assert await settled(stack, gateway, attempt["gatewayOrderId"]) == "refunded"

    detail = await wait_for_status(stack, order["orderId"], headers, "expired")
    assert detail["latePayment"] is True and detail["paymentStatus"] == "refunded"
    assert detail["attempts"][0]["status"] == "refunded"
    # The gateway's book, not ours: one accepted refund of the whole amount, and every refund
    # request that named this payment carried the same idempotency key.
    sandbox = stack.app.state.sandbox_store
    txn = sandbox.get(gateway, attempt["gatewayOrderId"])
    accepted = [r["amount"] for r in txn.refunds.values() if r.get("ok")]
    assert accepted == [PRICE], txn.refunds
    asked = [r["request_id"] for r in sandbox.refund_requests if (r["gateway"], r["id"]) == (gateway, txn.id)]
    assert len(asked) >= 1 and len(set(asked)) == 1, asked
    assert txn.amount - txn.refunded == 0


async def test_mark_refunded_waits_while_the_late_settlement_may_still_refund(stack):
    """The `late-…` branch of mark-refunded: while the late-payment settlement of the money still
    runs (it may yet refund through the gateway), money sent back by hand would go back twice."""
    order = await money_awaiting_refund(stack, "momo")
    attempt = order["attempts"][0]
    async with stack.engine.connect() as conn:
        pid = str(
            (
                await conn.execute(
                    text("SELECT id FROM payment WHERE order_id = :id"), {"id": order["orderId"]}
                )
            ).scalar_one()
        )
    late = LatePayment(order["orderId"], "momo", attempt["gatewayOrderId"], PRICE, "0", "tx-late")
    handle = await stack.client.start_workflow(  # still settling: on a queue no worker polls
        LatePaymentWorkflow.run,
        late,
        id=late_workflow_id("momo", attempt["gatewayOrderId"]),
        task_queue=f"nobody-{uuid.uuid4().hex[:6]}",
    )
    url, admin = f"/admin/payments/{pid}/mark-refunded", stack.auth("desk-ops", "admin")
    try:
        r = await stack.http.post(url, json={"reference": "VCB-1"}, headers=admin)
        assert (r.status_code, r.json()["error"]) == (409, "REFUND_IN_PROGRESS"), r.text
        assert late_workflow_id("momo", attempt["gatewayOrderId"]) in r.json()["message"]
    finally:
        await handle.terminate("test")
    r = await stack.http.post(url, json={"reference": "VCB-1"}, headers=admin)
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
