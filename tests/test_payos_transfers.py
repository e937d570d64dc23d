"""PayOS counts money per transfer, end to end: every verified transfer is a money event of its own
(its reference, its amount). A transfer beyond a paid link's price, and every transfer after the
order ended, lands on a `needs_review` row of its own for exactly its amount; the attempt's row
keeps what paid the order. And an operator's decision about an attempt's money stands against the
order's workflow (time-skipping server, real activities and Postgres)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from domain.ids import late_workflow_id
from domain.messages import OrderInput, OrderLine, PaymentResult, Receiver
from gateways.payos import payos_signature
from tests.helpers import wait_for_status
from workflows.late_payment import LatePaymentWorkflow
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRICE = 30_000


async def payos_order(stack: Any) -> tuple[dict[str, Any], dict[str, str], str]:
    product = await stack.product(stock=3, price=PRICE)
    headers = stack.auth(f"transfers-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, product["variants"][0]["id"], 1, gateway="payos")
    assert r.status_code == 201, r.text
    order = r.json()["data"]
    return order, headers, order["attempts"][0]["gatewayOrderId"]


async def webhook(stack: Any, gid: str, amount: int, reference: str) -> int:
    """PayOS's signed webhook for one transfer to the link."""
    data = {
        "orderCode": int(gid),
        "amount": amount,
        "description": "x",
        "accountNumber": "1",
        "reference": reference,
        "transactionDateTime": "2026-12-02 10:00:00",
        "currency": "VND",
        "paymentLinkId": "x",
        "code": "00",
        "desc": "success",
    }
    body = {"code": "00", "desc": "success", "success": True, "data": data}
    body["signature"] = payos_signature(data, stack.settings.payos_checksum_key)
    return (await stack.http.post("/webhooks/payos", json=body)).status_code


async def rows(stack: Any, gid: str) -> list[Any]:
    """The link's payment rows: the attempt first, then its surplus rows by reference."""
    async with stack.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    text(
                        "SELECT id, status, amount, received_amount, transaction_id, surplus_of FROM payment "
                        "WHERE gateway = 'payos' AND gateway_order_id = :gid "
                        "ORDER BY surplus_of IS NOT NULL, transaction_id"
                    ),
                    {"gid": gid},
                )
            ).all()
        )


async def until_rows(stack: Any, gid: str, count: int) -> list[Any]:
    for _ in range(100):
        found = await rows(stack, gid)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{gid} has {len(found)} payment rows, expected {count}")


async def test_a_transfer_beyond_the_price_of_a_paid_link_is_kept_for_its_extra_amount(stack):
    order, headers, gid = await payos_order(stack)
    assert await webhook(stack, gid, PRICE, "FT-full") == 200
    await wait_for_status(stack, order["orderId"], headers, "paid")
    await webhook(stack, gid, 5_000, "FT-extra")
    await webhook(stack, gid, 5_000, "FT-extra")  # PayOS sends it again: still one row
    attempt, extra = await until_rows(stack, gid, 2)
    assert (attempt.status, attempt.amount, attempt.received_amount) == ("success", PRICE, PRICE)
    assert (extra.status, extra.amount, extra.received_amount, extra.transaction_id) == (
        "needs_review",
        5_000,
        5_000,
        "FT-extra",
    )
    assert extra.surplus_of == attempt.id
    await asyncio.sleep(0.5)  # bounded observation window: no second surplus row appears
    assert len(await rows(stack, gid)) == 2


async def test_every_transfer_after_the_order_ended_is_settled_for_its_own_amount(stack):
    order, headers, gid = await payos_order(stack)
    assert await webhook(stack, gid, 10_000, "FT-1") == 400  # short: PayOS hears "wrong amount"
    r = await stack.http.post(f"/admin/orders/{order['orderId']}/expire", headers=stack.auth("ops", "admin"))
    assert r.status_code == 200, r.text
    await wait_for_status(stack, order["orderId"], headers, "expired")
    await webhook(stack, gid, 20_000, "FT-2")  # the top-up, after the window closed
    await webhook(stack, gid, 4_000, "FT-3")
    attempt, *late = await until_rows(stack, gid, 3)
    assert (attempt.status, attempt.received_amount, attempt.transaction_id) == (
        "needs_review",
        10_000,
        "FT-1",
    )
    assert [(r.status, r.amount, r.transaction_id) for r in late] == [
        ("needs_review", 20_000, "FT-2"),
        ("needs_review", 4_000, "FT-3"),
    ]
    for ref in ("FT-2", "FT-3"):  # one settlement per transfer
        handle = stack.client.get_workflow_handle_for(
            LatePaymentWorkflow.run, late_workflow_id("payos", gid, ref)
        )
        assert (await handle.result()).state == "needs_review"


async def test_an_operators_refund_stands_when_the_rest_of_the_price_arrives(ts, stack):
    """An operator marked a short transfer refunded while the order was open; the shopper then paid
    the rest. The workflow still holds the attempt as needs_review: it must not pay the order."""
    product = await stack.product(stock=2, price=PRICE)
    inp = OrderInput(
        order_id=str(uuid.uuid4()),
        customer_id="transfers",
        lines=[OrderLine(product["variants"][0]["id"], 1)],
        gateway="payos",
        order_type="normal",
        receiver=Receiver(name="A", phone="0901234567", address="HCMC"),
        duration_minutes=15,
        max_attempts=3,
        reminder_minutes=0,
        grace_minutes=1,
        request_hash="test",
    )
    handle = await ts.client.start_workflow(
        OrderWorkflow.run, inp, id=f"order-{inp.order_id}", task_queue=stack.settings.temporal_task_queue
    )
    creation = await handle.execute_update(OrderWorkflow.created)
    assert creation.session is not None
    gid = creation.session.attempts[0].gateway_order_id
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="payos",
            gateway_order_id=gid,
            outcome="success",
            result_code="00",
            amount=10_000,
            transaction_id="FT-1",
        ),
    )
    for _ in range(50):
        if (await handle.query(OrderWorkflow.session)).attempts[0].status == "needs_review":
            break
        await asyncio.sleep(0.1)
    async with stack.engine.begin() as conn:  # the operator's mark-refunded, beside the open order
        await conn.execute(
            text(
                "UPDATE payment SET status = 'refunded' WHERE gateway_order_id = :gid AND surplus_of IS NULL"
            ),
            {"gid": gid},
        )
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="payos",
            gateway_order_id=gid,
            outcome="success",
            result_code="00",
            amount=20_000,
            transaction_id="FT-2",
        ),
    )
    await ts.sleep(timedelta(minutes=16))
    assert (await handle.result()).status == "expired"
    attempt, rest = await rows(stack, gid)
    assert (attempt.status, attempt.received_amount) == ("refunded", 10_000)
    assert (rest.status, rest.amount, rest.transaction_id, rest.surplus_of) == (
        "needs_review",
        20_000,
        "FT-2",
        attempt.id,
    )


async def sandbox_transfer(stack: Any, gid: str, amount: int, *, drop: bool = False) -> dict[str, Any]:
    """One bank transfer to the sandbox's PayOS link; `drop`: its webhook is lost (returned here)."""
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        r = await http.post(
            f"/sandbox/pay/payos/{gid}/transfer",
            json={"amount": amount, "drop": drop},
            headers={"Accept": "application/json"},
        )
    assert r.status_code == 200, r.text
    return r.json()["notification"]


async def test_a_transfer_counted_through_the_running_total_is_not_counted_again_by_its_late_webhook(
    stack: Any,
) -> None:
    """A part of the price arrives with its webhook lost; the close's query counts it through
    PayOS's running total. Its webhook then arrives after the order ended. Before: its late
    settlement put it on a surplus row too, so 15,000 VND was counted twice."""
    order, headers, gid = await payos_order(stack)
    await sandbox_transfer(stack, gid, 10_000)
    lost = await sandbox_transfer(stack, gid, 15_000, drop=True)
    await sandbox_transfer(stack, gid, 5_000)  # the last transfer: the reference a query reports
    for _ in range(100):
        found = await rows(stack, gid)
        if found and (found[0].status, found[0].received_amount) == ("needs_review", 15_000):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the webhooks' 15,000 never reached review: {found}")
    r = await stack.http.post(f"/admin/orders/{order['orderId']}/expire", headers=stack.auth("ops", "admin"))
    assert r.status_code == 200, r.text
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")  # found by the close's query
    assert detail["attempts"][0]["status"] == "success"

    assert (await stack.http.post("/webhooks/payos", json=lost)).status_code == 200  # it arrives late
    ref = lost["data"]["reference"]
    handle = stack.client.get_workflow_handle_for(
        LatePaymentWorkflow.run, late_workflow_id("payos", gid, ref)
    )
    for _ in range(100):
        try:
            outcome = await asyncio.wait_for(handle.result(), 5)
            break
        except Exception:  # noqa: BLE001 - not started yet
            await asyncio.sleep(0.1)
    assert outcome.state == "already_settled", outcome
    [attempt] = await rows(stack, gid)  # no surplus row: every VND is counted once
    assert (attempt.status, attempt.received_amount) == ("success", PRICE)
