"""The money desk goes through the order and returns exactly what was received, once (issue 17: the
desk's part; issue 21: `mark-refunded` against a running late settlement). End to end over HTTP on a
stack of its own, through the sandbox's gateways; every test makes its own orders and payments.

- While an order is open its workflow decides its money: refund and mark-refunded answer 409
  ORDER_STILL_OPEN, and nothing changes or is audited.
- A desk refund sends what the gateway took (`receivedAmount`), however often it is asked, and a
  payment is refunded at its gateway once.
- Money whose gateway refund was asked and not definitively refused is never returned by hand:
  REFUND_IN_PROGRESS while a workflow asks, REFUND_OUTCOME_UNKNOWN once nothing is asking any more.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio import workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack.sandbox.state import TxnState
from domain.ids import late_workflow_id, refund_key, refund_workflow_id, surplus_refund_key
from domain.messages import LatePayment, RefundOutcome, RefundRequest, ReviewInput
from gateways.momo import NOTIFY_SIGNED, MomoGateway, momo_signature
from services import money_desk
from store import payments
from tests.conftest import Stack, own_stack
from tests.helpers import click, desk_order, expire_now, money_awaiting_refund, open_pay_page, wait_for_status
from tests.test_desk import ADMIN, admin, desk_item, needs_review, order_events, payment_id, refused, trail
from worker import running_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRICE = 64_000  # desk_order's price


@pytest.fixture(scope="module")
async def desk(pg_url: str, dev_env: Any) -> Any:
    async with own_stack(pg_url, dev_env) as stack:
        yield stack


async def refund(stack: Stack, pid: str, note: str = "") -> httpx.Response:
    return await stack.http.post(f"/admin/payments/{pid}/refund", json={"note": note}, headers=admin(stack))


async def mark_refunded(stack: Stack, pid: str, reference: str = "VCB-1") -> httpx.Response:
    return await stack.http.post(
        f"/admin/payments/{pid}/mark-refunded", json={"reference": reference}, headers=admin(stack)
    )


async def payos_transfer(stack: Stack, gateway_order_id: str, amount: int) -> None:
    """The shopper sends `amount` to a PayOS link by bank transfer (its webhook follows)."""
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        r = await http.post(
            f"/sandbox/pay/payos/{gateway_order_id}/transfer",
            json={"amount": amount},
            headers={"Accept": "application/json"},
        )
    assert r.status_code == 200, r.text


async def until_item(stack: Stack, order_id: str, status: str) -> dict:
    for _ in range(100):
        item = await desk_item(stack, order_id, status=status)
        if item is not None:
            return item
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} has no {status} payment")


async def row(stack: Stack, pid: str) -> Any:
    async with stack.engine.connect() as conn:
        query = text(
            "SELECT status, received_amount, refund_asked_at, refund_note FROM payment WHERE id = :p"
        )
        return (await conn.execute(query, {"p": pid})).one()


def refunds_at_gateway(stack: Stack, gateway: str, gateway_order_id: str) -> list[dict]:
    """The refunds the sandbox's gateway accepted for this payment (its own record)."""
    txn = stack.app.state.sandbox_store.get(gateway, gateway_order_id)
    return [r for r in txn.refunds.values() if r.get("ok")]


def requests_at_gateway(stack: Stack, gateway: str, gateway_order_id: str) -> list[dict]:
    store = stack.app.state.sandbox_store
    return [r for r in store.refund_requests if r["gateway"] == gateway and r["id"] == gateway_order_id]


# ---- the desk goes through the order -----------------------------------------------------------------


async def test_a_payos_part_transfer_is_not_settled_by_hand_while_its_order_is_open(desk: Stack) -> None:
    order, headers = await desk_order(desk, "payos")
    gid = order["attempts"][0]["gatewayOrderId"]
    await payos_transfer(desk, gid, 10_000)  # short: the workflow holds it under review
    item = await until_item(desk, order["orderId"], "needs_review")
    assert (item["orderStatus"], item["receivedAmount"]) == ("pending_payment", 10_000)
    pid = item["paymentId"]

    for answer in (await mark_refunded(desk, pid, "VCB-PART"), await refund(desk, pid)):
        refused(answer, 409, "ORDER_STILL_OPEN")
        assert "cancel or expire the order" in answer.json()["message"]
    assert (await row(desk, pid)).status == "needs_review"
    assert await trail(desk, paymentId=pid) == []
    types = [e["type"] for e in await order_events(desk, order["orderId"])]
    assert "payment.refunded" not in types and "payment.refund_requested" not in types

    # The shopper pays the rest: the order is paid in full, and no part of it went back by hand.
    await payos_transfer(desk, gid, PRICE - 10_000)
    detail = await wait_for_status(desk, order["orderId"], headers, "paid")
    assert detail["attempts"][0]["status"] == "success"
    assert (await row(desk, pid)).refund_note is None and await trail(desk, paymentId=pid) == []


async def test_momo_money_under_review_waits_for_its_order_to_end(desk: Stack) -> None:
    order = await needs_review(desk, received=60_000)  # an open order, a signed IPN of another amount
    gid = order["attempts"][0]["gatewayOrderId"]
    pid = await payment_id(desk, order["orderId"])
    refused(await refund(desk, pid, "send it back"), 409, "ORDER_STILL_OPEN")
    refused(await mark_refunded(desk, pid), 409, "ORDER_STILL_OPEN")
    state = await row(desk, pid)
    assert (state.status, state.received_amount, state.refund_asked_at) == ("needs_review", 60_000, None)
    assert await trail(desk, paymentId=pid) == [] and requests_at_gateway(desk, "momo", gid) == []

    r = await desk.http.post(
        f"/orders/{order['orderId']}/cancel", json={"reason": "fraud"}, headers=admin(desk)
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "cancelled", r.text
    r = await mark_refunded(desk, pid, "VCB-60000")  # the order has ended: the desk may act
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
    [entry] = [e for e in await trail(desk, paymentId=pid) if e["action"] == "payment.mark_refunded"]
    assert entry["detail"]["amount"] == 60_000


# ---- exactly what was received, once ----------------------------------------------------------------


def resigned(momo: MomoGateway, ipn: dict, amount: int) -> dict:
    """MoMo's own IPN for this payment, saying it took `amount` (signed as MoMo signs)."""
    body = {k: v for k, v in ipn.items() if k != "signature"} | {"amount": amount}
    body["signature"] = momo_signature(
        momo._secret_key, NOTIFY_SIGNED, {**body, "accessKey": momo._access_key}
    )
    return body


async def test_a_desk_refund_returns_what_the_gateway_took_once(desk: Stack) -> None:
    order, _ = await desk_order(desk, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    page = await open_pay_page(order["attempts"][0]["paymentUrl"])
    await expire_now(desk, order)
    sent = (await click(page, "pay", drop=True))["notification"]  # MoMo took the money after the close
    r = await desk.http.post("/webhooks/momo", json=resigned(MomoGateway(desk.settings), sent, 60_000))
    assert r.status_code == 400 and r.json()["error"] == "AMOUNT_MISMATCH", r.text
    item = await until_item(desk, order["orderId"], "needs_review")
    assert (item["orderStatus"], item["receivedAmount"]) == ("expired", 60_000)
    pid = item["paymentId"]

    # MoMo has not settled it yet: the first refund is refused (1080) and the money waits for a person.
    txn = desk.app.state.sandbox_store.get("momo", gid)
    txn.state = TxnState.PROCESSING
    try:
        refused(await refund(desk, pid, "first try"), 502, "REFUND_FAILED")
    finally:
        txn.state = TxnState.PAID
    assert (await row(desk, pid)).status == "refund_required" and refunds_at_gateway(desk, "momo", gid) == []

    r = await refund(desk, pid, "again")  # asked again, it still sends what MoMo took, not the price
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
    [done] = refunds_at_gateway(desk, "momo", gid)
    assert done["amount"] == 60_000 and txn.refunded == 60_000
    assert [e["detail"]["amount"] for e in await trail(desk, paymentId=pid)] == [60_000, 60_000]

    refused(await refund(desk, pid, "third"), 409, "NOT_REFUNDABLE")  # one refund per payment
    refused(await mark_refunded(desk, pid), 409, "NOT_REFUNDABLE")
    assert (
        len(refunds_at_gateway(desk, "momo", gid)) == 1 and len(requests_at_gateway(desk, "momo", gid)) == 1
    )
    assert len(await trail(desk, paymentId=pid)) == 2


# ---- no refund by hand while a gateway refund may have happened ----------------------------------------


async def test_a_refund_whose_answer_was_lost_is_never_returned_by_hand(
    desk: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await money_awaiting_refund(desk, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    pid = await payment_id(desk, order["orderId"])
    # The desk's refund joins a workflow that will never hear back (no worker polls its queue).
    stuck = await desk.client.start_workflow(
        "RefundWorkflow",
        RefundRequest(payment_id=pid, amount=PRICE, requested_by=ADMIN, audit_id=str(uuid.uuid4())),
        id=refund_workflow_id(pid),
        task_queue=f"nobody-{uuid.uuid4().hex[:6]}",
    )
    monkeypatch.setattr(money_desk, "REFUND_WAIT_S", 0.3)
    r = await refund(desk, pid, "late money")
    assert r.status_code == 202 and r.json()["data"]["refundAsked"] is True, r.text
    # Its call reached MoMo, which refunded; the answer was lost and the workflow gave up.
    tx = (await desk_item(desk, order["orderId"]))["transactionId"]
    await MomoGateway(desk.settings).refund(
        gateway_order_id=gid,
        transaction_id=tx,
        amount=PRICE,
        idempotency_key=refund_key(order["orderId"], 0),
        description="lost answer",
    )
    await stuck.terminate("its answer was lost")
    assert len(refunds_at_gateway(desk, "momo", gid)) == 1

    r = await mark_refunded(desk, pid, "VCB-TWICE")
    refused(r, 409, "REFUND_OUTCOME_UNKNOWN")
    assert "refund it through the gateway again" in r.json()["message"].lower()
    item = await desk_item(desk, order["orderId"])
    assert item is not None and item["status"] == "refund_required" and item["refundAsked"] is True
    assert "the gateway is being asked" in item["reason"]
    assert [e["action"] for e in await trail(desk, paymentId=pid)] == ["payment.refund"]

    r = await refund(desk, pid, "ask again")  # the same key: MoMo answers the refund it made
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
    refused(await mark_refunded(desk, pid, "VCB-TWICE"), 409, "NOT_REFUNDABLE")
    [done] = refunds_at_gateway(desk, "momo", gid)
    assert done["amount"] == PRICE
    assert "payment.mark_refunded" not in [e["action"] for e in await trail(desk, paymentId=pid)]


async def test_a_definite_refusal_hands_the_money_to_a_person(desk: Stack) -> None:
    """The contract with the refund activities: asked before the call, cleared only by a definite no."""
    order = await money_awaiting_refund(desk, "vnpay")
    pid = await payment_id(desk, order["orderId"])
    async with desk.engine.begin() as conn:
        await payments.refund_asked(conn, pid)  # as a refund activity does before its call
    refused(await mark_refunded(desk, pid), 409, "REFUND_OUTCOME_UNKNOWN")
    async with desk.engine.begin() as conn:
        await payments.refund_refused(conn, pid, "refused 91 transaction not found")  # VNPay's definite no
    item = await desk_item(desk, order["orderId"])
    assert item is not None and (item["refundAsked"], item["reason"]) == (
        False,
        "refused 91 transaction not found",
    )
    r = await mark_refunded(desk, pid, "VCB-91")
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text


async def test_mark_refunded_is_refused_while_the_late_settlement_refunds(desk: Stack) -> None:
    order = await money_awaiting_refund(desk, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    pid = await payment_id(desk, order["orderId"])
    tx = (await desk_item(desk, order["orderId"]))["transactionId"]
    # The order's late settlement is running (its worker not there yet: a queue of its own).
    queue = f"late-{uuid.uuid4().hex[:6]}"
    late = LatePayment(
        order_id=order["orderId"],
        gateway="momo",
        gateway_order_id=gid,
        amount=PRICE,
        result_code="0",
        transaction_id=tx,
    )
    handle = await desk.client.start_workflow(
        "LatePaymentWorkflow", late, id=late_workflow_id("momo", gid), task_queue=queue, result_type=None
    )
    r = await mark_refunded(desk, pid, "VCB-LATE")
    refused(r, 409, "REFUND_IN_PROGRESS")
    assert late_workflow_id("momo", gid) in r.json()["message"]
    assert (await row(desk, pid)).status == "refund_required" and await trail(desk, paymentId=pid) == []
    assert refunds_at_gateway(desk, "momo", gid) == []

    settings = desk.settings.model_copy(update={"temporal_task_queue": queue})
    async with running_worker(settings, client=desk.client):
        outcome = await handle.result()
    assert outcome["state"] == "refunded", outcome
    assert (await row(desk, pid)).status == "refunded"
    refused(await mark_refunded(desk, pid, "VCB-LATE"), 409, "NOT_REFUNDABLE")
    [done] = refunds_at_gateway(desk, "momo", gid)  # returned once, by the gateway
    assert done["amount"] == PRICE and await trail(desk, paymentId=pid) == []


@workflow.defn(name="RefundWorkflow")
class UnansweredRefund:
    """Stands in for a refund whose gateway has not answered yet (an outcome that is no verdict)."""

    @workflow.run
    async def run(self, req: RefundRequest) -> RefundOutcome:
        await workflow.sleep(2)  # long enough for the desk's request to join it
        return RefundOutcome("unknown", "no answer from the gateway yet")


async def test_a_refund_outcome_that_is_no_verdict_is_under_way_not_failed(desk: Stack) -> None:
    order = await money_awaiting_refund(desk, "momo")
    pid = await payment_id(desk, order["orderId"])
    queue = f"unanswered-{uuid.uuid4().hex[:6]}"
    async with Worker(
        desk.client,
        task_queue=queue,
        workflows=[UnansweredRefund],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await desk.client.start_workflow(
            UnansweredRefund.run,
            RefundRequest(payment_id=pid, amount=PRICE, requested_by=ADMIN, audit_id=str(uuid.uuid4())),
            id=refund_workflow_id(pid),
            task_queue=queue,
        )
        r = await refund(desk, pid, "late money")  # joins it, and hears "unknown"
    assert r.status_code == 202 and r.json()["data"]["refundAsked"] is True, r.text
    refused(await mark_refunded(desk, pid), 409, "REFUND_OUTCOME_UNKNOWN")


# ---- surplus money refunds under its own key ---------------------------------------------------------


async def test_surplus_money_refunds_under_its_own_key_beside_its_attempt(desk: Stack) -> None:
    """MoMo took 20,000 more on a payment whose order had ended (its sandbox record says so): the
    surplus row and its attempt each go back under a key of their own. Under the attempt's key, MoMo
    would list the surplus refund as the attempt's, and the attempt's 64,000 would never go back."""
    order = await money_awaiting_refund(desk, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    pid = await payment_id(desk, order["orderId"])
    txn = desk.app.state.sandbox_store.get("momo", gid)
    txn.amount += 20_000  # the gateway's own record: it holds 84,000 for this payment
    async with desk.engine.begin() as conn:
        attempt = await payments.lock_payment(conn, uuid.UUID(pid))
        surplus = ReviewInput(
            order_id=order["orderId"],
            gateway="momo",
            gateway_order_id=gid,
            reason="surplus: received 20000 VND beyond the price",
            amount=20_000,
            result_code="0",
            transaction_id=attempt.transaction_id,
            surplus=True,
        )
        assert await payments.flag(conn, surplus)
        spid = (
            await conn.execute(text("SELECT id FROM payment WHERE surplus_of = :p"), {"p": pid})
        ).scalar_one()
        surplus_row = await payments.lock_payment(conn, spid)
    assert payments.gateway_refund_key(surplus_row) == surplus_refund_key(str(spid))
    assert payments.gateway_refund_key(attempt) == refund_key(order["orderId"], 0)

    for payment in (str(spid), pid):
        r = await refund(desk, payment, "send it back")
        assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
    done = {r["orderId"]: r["amount"] for r in refunds_at_gateway(desk, "momo", gid)}
    assert done == {surplus_refund_key(str(spid)): 20_000, refund_key(order["orderId"], 0): PRICE}
    assert txn.refunded == PRICE + 20_000  # every VND the gateway took went back, once
