"""OrderWorkflow on the time-skipping test server: 15 minutes pass in milliseconds. Activities are
the real ones (Postgres, the sandbox gateway over HTTP)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.orders import OrderActivities
from domain.ids import late_workflow_id
from domain.messages import (
    CancelLinksInput,
    CancelRequest,
    ExtendRequest,
    OrderInput,
    OrderLine,
    PaymentResult,
    Receiver,
    RetryRequest,
    TransitionInput,
)
from infra.db import make_engine
from tests.recorded import keep
from worker import all_activities
from workflows.late_payment import LatePaymentWorkflow
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def start(
    ts: WorkflowEnvironment, stack: Any, stock: int = 5, qty: int = 2, **overrides: Any
) -> tuple[WorkflowHandle, str, str]:
    product = await stack.product(stock=stock, price=30_000)
    vid = product["variants"][0]["id"]
    values: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "customer_id": "timeskip",
        "lines": [OrderLine(variant_id=vid, quantity=qty)],
        "gateway": "momo",
        "order_type": "normal",
        "receiver": Receiver(name="A", phone="0901234567", address="HCMC"),
        "duration_minutes": 15,
        "max_attempts": 3,
        "reminder_minutes": 3,
        "grace_minutes": 5,
        "request_hash": "test",
    }
    values.update(overrides)
    inp = OrderInput(**values)
    handle = await ts.client.start_workflow(
        OrderWorkflow.run, inp, id=f"order-{inp.order_id}", task_queue=stack.settings.temporal_task_queue
    )
    creation = await handle.execute_update(OrderWorkflow.created)
    assert creation.error is None and creation.order is not None
    return handle, inp.order_id, vid


async def db_row(stack: Any, sql: str, order_id: str) -> Any:
    async with stack.engine.connect() as conn:
        return (await conn.execute(text(sql), {"id": order_id})).first()


async def reminders(stack: Any, order_id: str) -> int:
    return (await db_row(stack, "SELECT count(*) AS n FROM notification WHERE order_id = :id", order_id)).n


def success(handle_attempt: Any, amount: int) -> PaymentResult:
    return PaymentResult(
        gateway="momo",
        gateway_order_id=handle_attempt.gateway_order_id,
        outcome="success",
        result_code="0",
        amount=amount,
        transaction_id="tx-1",
    )


async def test_fifteen_minute_window_expires_with_one_reminder_and_stock_back(ts, stack):
    handle, oid, vid = await start(ts, stack, stock=5, qty=2)
    assert await stack.stock(vid) == 3
    await ts.sleep(timedelta(minutes=11))
    assert (await handle.query(OrderWorkflow.session)).order_status == "pending_payment"
    assert await reminders(stack, oid) == 0
    await ts.sleep(timedelta(minutes=1, seconds=30))  # past deadline - 3 min
    assert await reminders(stack, oid) == 1
    outcome = await handle.result()
    assert outcome.status == "expired" and outcome.reason == "payment_window_closed"
    assert await stack.stock(vid) == 5
    order = await db_row(
        stack,
        'SELECT o.status, s.status AS s FROM "order" o JOIN order_session s '
        "ON s.order_id = o.id WHERE o.id = :id",
        oid,
    )
    assert (order.status, order.s) == ("expired", "expired")
    assert await reminders(stack, oid) == 1
    await keep(handle, "order", "expired_after_reminder")


async def test_retry_limit_and_its_error_codes(ts, stack):
    handle, _oid, _ = await start(ts, stack)
    for n in (1, 2, 3):
        r = await handle.execute_update(OrderWorkflow.retry_payment, RetryRequest(gateway="vnpay"))
        assert r.payment_attempts == n and r.remaining_attempts == 3 - n
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(OrderWorkflow.retry_payment, RetryRequest())
    assert err.value.cause.type == "MAX_ATTEMPTS_REACHED"
    await ts.sleep(timedelta(minutes=16))
    assert (await handle.result()).status == "expired"
    await keep(handle, "order", "retried_three_times_then_expired")
    with pytest.raises(RPCError) as gone:  # the workflow has finished: no update reaches it
        await handle.execute_update(OrderWorkflow.retry_payment, RetryRequest())
    assert gone.value.status == RPCStatusCode.NOT_FOUND


async def test_last_allowed_attempt_failing_fails_the_order(ts, stack):
    handle, oid, vid = await start(ts, stack, stock=3, qty=1, max_attempts=1)
    first = (await handle.query(OrderWorkflow.session)).attempts[0]
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=first.gateway_order_id,
            outcome="failed",
            result_code="1001",
            amount=30_000,
        ),
    )
    view = await handle.query(OrderWorkflow.session)
    assert view.order_status == "pending_payment"  # a retry remains
    retry = await handle.execute_update(OrderWorkflow.retry_payment, RetryRequest())
    second = (await handle.query(OrderWorkflow.session)).attempts[1]
    assert retry.remaining_attempts == 0
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=second.gateway_order_id,
            outcome="failed",
            result_code="1002",
            amount=30_000,
        ),
    )
    outcome = await handle.result()
    assert outcome.status == "failed" and outcome.reason == "max_attempts_failed"
    assert await stack.stock(vid) == 3
    rows = await db_row(
        stack,
        "SELECT string_agg(status, ',' ORDER BY attempt_no) AS s FROM payment WHERE order_id = :id",
        oid,
    )
    assert rows.s == "failed,failed"
    await keep(handle, "order", "last_attempt_failed")


async def test_cancel_update_and_gateway_cancel_code(ts, stack):
    handle, _, vid = await start(ts, stack, stock=4, qty=4)
    view = await handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="no longer needed"))
    assert view.order_status == "cancelled" and view.status == "cancelled"
    assert (await handle.result()).status == "cancelled"
    assert await stack.stock(vid) == 4

    handle, _oid, vid = await start(ts, stack, stock=2, qty=1)
    first = (await handle.query(OrderWorkflow.session)).attempts[0]
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=first.gateway_order_id,
            outcome="cancelled",
            result_code="1006",
            amount=30_000,
        ),
    )
    assert (await handle.result()).status == "cancelled"
    assert await stack.stock(vid) == 2


async def test_extend_moves_the_deadline_durably(ts, stack):
    handle, oid, _ = await start(ts, stack)
    view = await handle.execute_update(OrderWorkflow.extend, ExtendRequest(minutes=10))
    assert (view.expires_at - view.started_at) == timedelta(minutes=25)
    await ts.sleep(timedelta(minutes=20))
    assert (await handle.query(OrderWorkflow.session)).order_status == "pending_payment"
    session = await db_row(
        stack, "SELECT expires_at, started_at FROM order_session WHERE order_id = :id", oid
    )
    assert session.expires_at - session.started_at == timedelta(minutes=25)
    await ts.sleep(timedelta(minutes=6))
    assert (await handle.result()).status == "expired"


async def test_payment_racing_the_deadline(ts, stack):
    # Paid a moment before the deadline: paid, stock stays sold.
    handle, _, vid = await start(ts, stack, stock=2, qty=1)
    await ts.sleep(timedelta(minutes=14, seconds=59))
    attempt = (await handle.query(OrderWorkflow.session)).attempts[0]
    await handle.signal(OrderWorkflow.payment_result, success(attempt, 30_000))
    assert (await handle.result()).status == "paid"
    assert await stack.stock(vid) == 1
    await keep(handle, "order", "paid")

    # No attempt in flight (a VNPay link nobody opened): expired on the dot, and the finished
    # workflow takes no more signals (the webhook settles late money on its own, see test_gateways_e2e).
    handle, _oid, vid = await start(ts, stack, stock=2, qty=1, gateway="vnpay")
    await ts.sleep(timedelta(minutes=15, seconds=1))
    assert (await handle.query(OrderWorkflow.session)).order_status == "expired"
    assert await stack.stock(vid) == 2


async def open_link(stack, attempt) -> None:
    """The shopper opened the MoMo link and is confirming: MoMo answers 7000 (in flight)."""
    async with httpx.AsyncClient(base_url=stack.base) as http:
        r = await http.post(
            f"/sandbox/pay/momo/{attempt.gateway_order_id}/open", headers={"Accept": "application/json"}
        )
        assert r.status_code == 200 and r.json()["result_code"] == "7000", r.text


async def test_in_flight_payment_holds_the_window_for_the_grace_only(ts, stack):
    handle, _, vid = await start(ts, stack, stock=2, qty=1)
    await open_link(stack, (await handle.query(OrderWorkflow.session)).attempts[0])
    await ts.sleep(timedelta(minutes=16))
    view = await handle.query(OrderWorkflow.session)
    assert view.order_status == "pending_payment"
    await handle.signal(OrderWorkflow.payment_result, success(view.attempts[0], 30_000))
    assert (await handle.result()).status == "paid"
    assert await stack.stock(vid) == 1

    handle, _, vid = await start(ts, stack, stock=2, qty=1)
    await open_link(stack, (await handle.query(OrderWorkflow.session)).attempts[0])
    await ts.sleep(timedelta(minutes=19, seconds=40))
    assert (await handle.query(OrderWorkflow.session)).order_status == "pending_payment"
    outcome = await handle.result()
    assert outcome.status == "expired"
    assert await stack.stock(vid) == 2

    # A MoMo link nobody opened answers 1000 ("initiated"): not in flight, closed on the dot.
    handle, _, vid = await start(ts, stack, stock=2, qty=1)
    await ts.sleep(timedelta(minutes=15, seconds=1))
    assert (await handle.query(OrderWorkflow.session)).order_status == "expired"
    assert await stack.stock(vid) == 2


async def test_reconciliation_pays_an_order_whose_notification_was_lost(ts, stack):
    handle, oid, vid = await start(ts, stack, stock=2, qty=1)
    attempt = (await handle.query(OrderWorkflow.session)).attempts[0]
    async with httpx.AsyncClient(base_url=stack.base) as http:
        r = await http.post(
            f"/sandbox/pay/momo/{attempt.gateway_order_id}/pay",
            json={"drop": True},
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 200, r.text
    await ts.sleep(timedelta(minutes=10))
    assert (await handle.query(OrderWorkflow.session)).order_status == "pending_payment"  # nobody told us
    outcome = await handle.result()
    assert outcome.status == "paid"
    assert await stack.stock(vid) == 1
    row = await db_row(stack, "SELECT status, transaction_id FROM payment WHERE order_id = :id", oid)
    assert row.status == "success" and row.transaction_id


async def test_wrong_amount_success_does_not_pay(ts, stack):
    handle, _oid, _vid = await start(ts, stack, stock=2, qty=1)
    attempt = (await handle.query(OrderWorkflow.session)).attempts[0]
    await handle.signal(OrderWorkflow.payment_result, success(attempt, 1_000))
    await ts.sleep(timedelta(minutes=16))
    assert (await handle.result()).status == "expired"


# ---- verdicts that arrive while the order ends -------------------------------------------------


async def pay_at_gateway(stack: Any, attempt: Any) -> str:
    """The shopper pays the link; the notification is dropped so the test decides when the verdict
    lands. Returns the gateway's transaction id."""
    async with httpx.AsyncClient(base_url=stack.base) as http:
        r = await http.post(
            f"/sandbox/pay/{attempt.gateway}/{attempt.gateway_order_id}/pay",
            json={"drop": True},
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 200, r.text
        note = r.json()["notification"]
        return str(note["transId"] if attempt.gateway == "momo" else note["data"]["reference"])


async def late_settlement(client: Any, attempt: Any, transfer: str | None = None) -> str:
    late_id = late_workflow_id(attempt.gateway, attempt.gateway_order_id, transfer)
    return (await client.get_workflow_handle_for(LatePaymentWorkflow.run, late_id).result()).state


async def test_success_signalled_while_the_order_ends_is_refunded(ts, stack):
    """A payment lands between the expiry and the workflow's completion (its PayOS link is being
    cancelled): it must reach the late-payment settlement, not leave with the history. PayOS has no
    refund API, so the settlement ends `refund_required` for an operator."""
    entered, release = asyncio.Event(), asyncio.Event()

    @activity.defn(name="cancel_open_links")
    async def slow_cancel(_: CancelLinksInput) -> int:
        entered.set()
        await release.wait()
        return 0

    queue = f"late-verdicts-{uuid.uuid4().hex[:8]}"
    engine = make_engine(stack.settings)
    acts = [a for a in all_activities(engine, stack.settings, ts.client) if a.__name__ != "cancel_open_links"]
    async with Worker(
        ts.client, task_queue=queue, workflows=[OrderWorkflow], activities=[*acts, slow_cancel]
    ):
        product = await stack.product(stock=2, price=30_000)
        vid = product["variants"][0]["id"]
        inp = OrderInput(
            order_id=str(uuid.uuid4()),
            customer_id="timeskip",
            lines=[OrderLine(variant_id=vid, quantity=1)],
            gateway="payos",
            order_type="normal",
            receiver=Receiver(name="A", phone="0901234567", address="HCMC"),
            duration_minutes=15,
            max_attempts=3,
            reminder_minutes=0,
            grace_minutes=5,
            request_hash="test",
        )
        handle = await ts.client.start_workflow(
            OrderWorkflow.run, inp, id=f"order-{inp.order_id}", task_queue=queue
        )
        attempt = (await handle.execute_update(OrderWorkflow.created)).session.attempts[0]
        await ts.sleep(timedelta(minutes=15, seconds=1))
        await asyncio.wait_for(entered.wait(), 30)  # expired in Postgres, links being cancelled
        assert await stack.stock(vid) == 2
        tx = await pay_at_gateway(stack, attempt)
        paid = PaymentResult(
            gateway="payos",
            gateway_order_id=attempt.gateway_order_id,
            outcome="success",
            result_code="00",
            amount=30_000,
            transaction_id=tx,
        )
        await handle.signal(OrderWorkflow.payment_result, paid)
        release.set()
        assert (await handle.result()).status == "expired"
        await keep(handle, "order", "late_verdict_while_ending")
    await engine.dispose()
    assert await late_settlement(ts.client, attempt, tx) == "refund_required"  # PayOS: one per transfer
    row = await db_row(
        stack, "SELECT status, received_amount FROM payment WHERE order_id = :id", inp.order_id
    )
    assert row.status == "refund_required"
    assert row.received_amount == 30_000  # what goes back is what was received
    assert await stack.stock(vid) == 2


async def test_success_for_an_order_postgres_already_ended_is_refunded(ts, stack):
    """A workflow task that expired the order in Postgres was lost (worker killed after its local
    activity committed); the retried task sees the success first: the money is a late payment."""
    handle, oid, vid = await start(ts, stack, stock=2, qty=1)
    attempt = (await handle.query(OrderWorkflow.session)).attempts[0]
    await OrderActivities(stack.engine).transition_order(
        TransitionInput(order_id=oid, to_status="expired", reason="payment_window_closed")
    )
    tx = await pay_at_gateway(stack, attempt)
    await handle.signal(
        OrderWorkflow.payment_result,
        PaymentResult(
            gateway="momo",
            gateway_order_id=attempt.gateway_order_id,
            outcome="success",
            result_code="0",
            amount=30_000,
            transaction_id=tx,
        ),
    )
    assert (await handle.result()).status == "expired"
    await keep(handle, "order", "late_verdict_after_lost_transition")
    assert await late_settlement(ts.client, attempt) == "refunded"
    assert await stack.stock(vid) == 2  # restocked once, by the transition that ended it
