"""Verified money is never dropped: a payment whose amount differs from the attempt's (a transfer
short or over, PayOS UNDERPAID), a success with no amount, a success for an attempt the order does
not know, or a signed verdict for no attempt of ours at all is kept, never pays the order, and goes
to `needs_review` with its reason, visible in the order, its listing, the metrics and an event.

The workflow's side on the time-skipping server (real activities, Postgres, the sandbox); the
gateways' side end to end over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHandle

from domain.messages import OrderInput, OrderLine, PaymentResult, Receiver
from gateways.momo import MomoGateway
from tests.helpers import momo_ipn, wait_for_status
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRICE = 30_000


async def start(ts: Any, stack: Any, gateway: str = "momo") -> tuple[WorkflowHandle, str, Any]:
    product = await stack.product(stock=3, price=PRICE)
    inp = OrderInput(
        order_id=str(uuid.uuid4()),
        customer_id="money",
        lines=[OrderLine(product["variants"][0]["id"], 1)],
        gateway=gateway,
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
    return handle, inp.order_id, creation.session.attempts[0]


async def attempt_row(stack: Any, gateway_order_id: str) -> Any:
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT p.status, p.review_reason, p.received_amount, o.status AS order_status FROM payment p "
                    'JOIN "order" o ON o.id = p.order_id WHERE p.gateway_order_id = :gid'
                ),
                {"gid": gateway_order_id},
            )
        ).one()


async def events(stack: Any, order_id: str, kind: str) -> list[dict[str, Any]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM order_event WHERE order_id = :id AND type = :t ORDER BY created_at"),
            {"id": order_id, "t": kind},
        )
        return [r.payload for r in rows]


async def test_a_success_of_another_amount_goes_to_review_and_the_right_one_still_pays(ts, stack):
    handle, oid, attempt = await start(ts, stack)
    short = PaymentResult(
        gateway="momo",
        gateway_order_id=attempt.gateway_order_id,
        outcome="success",
        result_code="0",
        amount=1_000,
        transaction_id="tx-short",
    )
    await handle.signal(OrderWorkflow.payment_result, short)
    for _ in range(50):
        view = await handle.query(OrderWorkflow.session)
        if view.attempts[0].status != "pending":
            break
        await asyncio.sleep(0.1)
    assert view.order_status == "pending_payment" and view.attempts[0].status == "needs_review"
    row = await attempt_row(stack, attempt.gateway_order_id)
    assert (row.status, row.received_amount) == ("needs_review", 1_000)
    assert row.review_reason == f"underpaid: received 1000 of {PRICE} VND"
    [event] = await events(stack, oid, "payment.needs_review")
    assert event["receivedAmount"] == 1_000 and event["gatewayOrderId"] == attempt.gateway_order_id

    full = PaymentResult(
        gateway="momo",
        gateway_order_id=attempt.gateway_order_id,
        outcome="success",
        result_code="0",
        amount=PRICE,
        transaction_id="tx-full",
    )
    await handle.signal(OrderWorkflow.payment_result, full)
    assert (await handle.result()).status == "paid"
    assert (await attempt_row(stack, attempt.gateway_order_id)).status == "success"


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (None, "success without an amount"),
        (PRICE + 5_000, f"overpaid: received {PRICE + 5_000} of {PRICE} VND"),
    ],
)
async def test_a_success_without_an_amount_or_for_more_never_pays(ts, stack, amount, reason):
    handle, _, attempt = await start(ts, stack)
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=attempt.gateway_order_id,
            outcome="success",
            result_code="0",
            amount=amount,
            transaction_id="tx-1",
        ),
    )
    await ts.sleep(timedelta(minutes=16))
    assert (await handle.result()).status == "expired"
    row = await attempt_row(stack, attempt.gateway_order_id)
    assert (row.status, row.review_reason) == ("needs_review", reason)  # not overwritten by the expiry


async def stray_attempt(stack, oid: str, gid: str, attempt_no: int, amount: int) -> None:
    """A link in Postgres the workflow never heard of: what a retry leaves when its update is lost
    with its workflow task after the link was stored (Temporal down at that moment)."""
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO payment (id, order_id, attempt_no, gateway, gateway_order_id, request_id, amount, "
                "payment_url, expires_at) SELECT :pid, id, :no, 'momo', :gid, 'r', :amount, 'u', now() FROM \"order\" "
                "WHERE id = :id"
            ),
            {"pid": uuid.uuid4(), "no": attempt_no, "gid": gid, "amount": amount, "id": oid},
        )


async def test_a_success_for_a_stored_attempt_the_workflow_lost_pays_the_order(ts, stack):
    handle, oid, attempt = await start(ts, stack)
    lost = f"{attempt.gateway_order_id}-lost"
    await stray_attempt(stack, oid, lost, 1, PRICE)
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=lost,
            outcome="success",
            result_code="0",
            amount=PRICE,
            transaction_id="tx-lost",
        ),
    )
    assert (await handle.result()).status == "paid"  # the shopper paid this order's link in time
    assert (await attempt_row(stack, lost)).status == "success"
    assert (await attempt_row(stack, attempt.gateway_order_id)).status != "success"


async def test_a_success_for_an_attempt_the_order_does_not_know_goes_to_review(ts, stack):
    """Money for a stored attempt that is not for this order's total is kept for a person."""
    handle, oid, attempt = await start(ts, stack)
    stray = f"{attempt.gateway_order_id}-stray"
    await stray_attempt(stack, oid, stray, 7, PRICE - 1_000)
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=stray,
            outcome="success",
            result_code="0",
            amount=PRICE - 1_000,
            transaction_id="tx-stray",
        ),
    )
    await ts.sleep(timedelta(minutes=16))
    assert (
        await handle.result()
    ).status == "expired"  # money for no attempt of this order's total never pays
    row = await attempt_row(stack, stray)
    assert (row.status, row.review_reason) == (
        "needs_review",
        "payment for an attempt the order does not know",
    )


async def transfer(stack: Any, gateway_order_id: str, amount: int, **knobs: Any) -> dict[str, Any]:
    """The shopper transfers `amount` to a PayOS link (the sandbox's VietQR bank transfer)."""
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        r = await http.post(
            f"/sandbox/pay/payos/{gateway_order_id}/transfer",
            json={"amount": amount, **knobs},
            headers={"Accept": "application/json"},
        )
    assert r.status_code == 200, r.text
    return r.json()


async def test_an_underpaid_payos_link_found_at_the_deadline_goes_to_review(ts, stack):
    handle, _, attempt = await start(ts, stack, gateway="payos")
    await transfer(
        stack, attempt.gateway_order_id, PRICE // 2, drop=True
    )  # its webhook is lost: only the query tells
    await ts.sleep(timedelta(minutes=15, seconds=1))
    assert (await handle.result()).status == "expired"
    row = await attempt_row(stack, attempt.gateway_order_id)
    assert (row.status, row.received_amount) == ("needs_review", PRICE // 2)
    assert row.review_reason.startswith("underpaid")


# ---- end to end, through the gateways' own messages --------------------------------------------------


async def http_order(stack: Any, gateway: str) -> tuple[dict[str, Any], dict[str, str]]:
    product = await stack.product(stock=3, price=PRICE)
    headers = stack.auth(f"money-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, product["variants"][0]["id"], 1, gateway=gateway)
    assert r.status_code == 201, r.text
    return r.json()["data"], headers


async def test_payos_transfers_in_two_parts_review_then_pay(stack):
    order, headers = await http_order(stack, "payos")
    gid = order["attempts"][0]["gatewayOrderId"]
    await transfer(stack, gid, 10_000)
    detail = await wait_for_attempt(stack, order["orderId"], headers, "needs_review")
    assert detail["status"] == "pending_payment" and detail["paymentStatus"] == "needs_review"
    assert detail["attempts"][0]["receivedAmount"] == 10_000
    listed = (
        await stack.http.get("/orders", params={"paymentStatus": "needs_review"}, headers=headers)
    ).json()
    assert [o["orderId"] for o in listed["data"]["items"]] == [order["orderId"]]
    # The rest arrives: PayOS's link reads PAID for the full amount, and that pays the order.
    await transfer(stack, gid, PRICE - 10_000)
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")
    assert detail["attempts"][0]["status"] == "success"


async def wait_for_attempt(stack: Any, order_id: str, headers: dict[str, str], status: str) -> dict[str, Any]:
    for _ in range(100):
        detail = (await stack.http.get(f"/orders/{order_id}", headers=headers)).json()["data"]
        if detail["attempts"][0]["status"] == status:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(f"attempt is {detail['attempts'][0]['status']}, expected {status}")


async def scrape(stack: Any) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=stack.base) as http:
        body = (await http.get("/metrics")).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("paywindow_money_needs_review")
    }


async def test_money_after_the_window_of_another_amount_and_for_no_attempt_is_kept(stack):
    before = await scrape(stack)
    order, headers = await http_order(stack, "momo")
    attempt = order["attempts"][0]
    r = await stack.http.post(f"/admin/orders/{order['orderId']}/expire", headers=stack.auth("ops", "admin"))
    assert r.status_code == 200, r.text
    momo = MomoGateway(stack.settings)
    late_short = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 2_000, 0)
    r = await stack.http.post("/webhooks/momo", json=late_short)
    assert r.status_code == 400 and r.json()["error"] == "AMOUNT_MISMATCH"  # MoMo hears "wrong amount"
    detail = await wait_for_attempt(stack, order["orderId"], headers, "needs_review")
    assert detail["status"] == "expired" and detail["attempts"][0]["receivedAmount"] == 2_000
    assert await events(stack, order["orderId"], "payment.needs_review")

    nobodys = momo_ipn(momo, f"999{uuid.uuid4().int % 10**6:06d}-0", "r-unknown", 5_000, 0)
    r = await stack.http.post("/webhooks/momo", json=nobodys)
    assert r.status_code == 404
    async with stack.engine.connect() as conn:
        kept = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM payment_notification WHERE order_id IS NULL AND gateway_order_id = :gid"
                ),
                {"gid": nobodys["orderId"]},
            )
        ).scalar_one()
    assert kept == 1
    after = await scrape(stack)
    for kind in ("attempt", "unmatched"):
        key = f'paywindow_money_needs_review{{kind="{kind}"}}'
        assert after[key] >= before.get(key, 0) + 1, kind
