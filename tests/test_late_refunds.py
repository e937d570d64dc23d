"""MoMo and VNPay late payments end `refunded`, counted at the gateway: money the shopper paid after
the order's window closed (here closed early by an operator, so the gateway's link is still open)
is settled by LatePaymentWorkflow, and the gateway's own record shows exactly one accepted refund
of the payment's full amount, however often the gateway notified us. Nothing less passes: a refund
that failed or was never asked for leaves `refund_required`, which fails here."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from domain.ids import late_workflow_id
from tests.helpers import click, desk_order, expire_now, open_pay_page, wait_for_status
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
