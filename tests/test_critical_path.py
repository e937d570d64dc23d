"""The window is the critical path: nothing optional may hold, fail or delay an order.

With the real activities except the ones a test breaks on purpose: a reminder receiver that keeps
failing or never answers, a gateway whose link cancellation hangs, a gateway that never answers its
status query at the deadline. The order must end on time all the same, its handlers must answer
within seconds, and its workflow must complete, never fail. On the time-skipping server where the
broken step ends (fails, or is cut by a budget); on the dev server, in real time, where it hangs:
an activity in progress stops the test server from skipping time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.payments import PaymentActivities
from domain.ids import late_workflow_id
from domain.messages import CancelLinksInput, CancelRequest, ExtendRequest, OrderInput, OrderLine, Receiver
from gateways.base import GatewayResult
from gateways.momo import MomoGateway
from gateways.registry import build_gateways
from infra.db import make_engine
from worker import all_activities
from workflows.late_payment import LatePaymentWorkflow
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
HANDLER_ANSWERS_WITHIN_S = 6.0  # "within seconds": well under any gateway or activity timeout


def activity_name(fn: Callable[..., Any]) -> str:
    return fn.__temporal_activity_definition.name


@asynccontextmanager
async def order_worker(
    env: WorkflowEnvironment | Any,
    stack: Any,
    replace: tuple[Callable[..., Any], ...] = (),
    gateways: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[str]:
    """A worker on its own task queue: the real activities, but `replace`d ones and, when given, the
    gateway adapters the payment activities use."""
    queue = f"critical-{uuid.uuid4().hex[:8]}"
    config = stack.settings.model_copy(update=settings)
    engine = make_engine(config)
    acts = {activity_name(a): a for a in all_activities(engine, config, env.client)}
    if gateways is not None:
        payments = PaymentActivities(engine, {**build_gateways(config), **gateways}, config, env.client)
        for name in ("create_payment_link", "reconcile", "cancel_open_links", "refund_late_payment"):
            acts[name] = getattr(payments, name)
    acts.update({activity_name(fn): fn for fn in replace})
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[OrderWorkflow, LatePaymentWorkflow],
        activities=list(acts.values()),
    ):
        yield queue
    await engine.dispose()


async def start(
    env: WorkflowEnvironment | Any, stack: Any, queue: str, gateway: str = "momo", **overrides: Any
) -> tuple[WorkflowHandle, str]:
    product = await stack.product(stock=3, price=30_000)
    values: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "customer_id": "critical",
        "gateway": gateway,
        "order_type": "normal",
        "lines": [OrderLine(variant_id=product["variants"][0]["id"], quantity=1)],
        "receiver": Receiver(name="A", phone="0901234567", address="HCMC"),
        "duration_minutes": 15,
        "max_attempts": 3,
        "reminder_minutes": 3,
        "grace_minutes": 1,
        "request_hash": "test",
    }
    values.update(overrides)
    inp = OrderInput(**values)
    handle = await env.client.start_workflow(
        OrderWorkflow.run, inp, id=f"order-{inp.order_id}", task_queue=queue
    )
    assert (await handle.execute_update(OrderWorkflow.created)).order is not None
    return handle, product["variants"][0]["id"]


async def test_a_reminder_that_keeps_failing_never_fails_or_holds_the_order(ts, stack):
    tries: list[datetime] = []

    @activity.defn(name="send_reminder")
    async def send_reminder(_: Any) -> list[str]:
        tries.append(activity.info().current_attempt_scheduled_time)
        raise ApplicationError("the reminder receiver answers 500")

    async with order_worker(ts, stack, replace=(send_reminder,)) as queue:
        handle, vid = await start(ts, stack, queue)
        await ts.sleep(timedelta(minutes=15, seconds=1))
        outcome = await handle.result()  # completed: a failed workflow would raise here
    assert (outcome.status, outcome.reason) == ("expired", "payment_window_closed")
    assert len(tries) >= 2, "a failed reminder is retried on its own schedule"
    assert await stack.stock(vid) == 3


async def test_handlers_answer_and_windows_close_while_reminders_and_link_cancellation_hang(dev_env, stack):
    """Real time, 3-second windows, a reminder 1.2 s before each deadline that never returns, and
    PayOS link cancellations (made when an order ends) that never return either."""
    hanging = {"send_reminder": 0, "cancel_open_links": 0}
    released = asyncio.Event()

    @activity.defn(name="send_reminder")
    async def send_reminder(_: Any) -> list[str]:
        hanging["send_reminder"] += 1
        await released.wait()
        return []

    @activity.defn(name="cancel_open_links")
    async def cancel_open_links(_: CancelLinksInput) -> int:
        hanging["cancel_open_links"] += 1
        await released.wait()
        return 0

    window = {"duration_minutes": 0.05, "reminder_minutes": 0.02, "grace_minutes": 0.05}
    async with order_worker(dev_env, stack, replace=(send_reminder, cancel_open_links)) as queue:
        closing, vid = await start(dev_env, stack, queue, gateway="payos", **window)
        cancelled, _ = await start(
            dev_env, stack, queue, gateway="payos", **{**window, "duration_minutes": 1}
        )
        extended, _ = await start(dev_env, stack, queue, **{**window, "duration_minutes": 1})
        expired, _ = await start(dev_env, stack, queue, gateway="payos", **{**window, "duration_minutes": 1})
        deadline = (await closing.query(OrderWorkflow.session)).expires_at

        # The 3-s window closes on time although its reminder hangs.
        outcome_at = None
        for _ in range(100):
            view = await closing.query(OrderWorkflow.session)
            if view.order_status != "pending_payment":
                outcome_at = datetime.now(deadline.tzinfo)
                break
            await asyncio.sleep(0.1)
        assert view.order_status == "expired" and outcome_at is not None
        assert (outcome_at - deadline).total_seconds() < 2, "the window closed late"
        assert hanging["send_reminder"] == 1 and await stack.stock(vid) == 3

        view = await asyncio.wait_for(
            cancelled.execute_update(OrderWorkflow.cancel, CancelRequest(reason="changed my mind")),
            HANDLER_ANSWERS_WITHIN_S,
        )
        assert view.order_status == "cancelled"
        view = await asyncio.wait_for(
            extended.execute_update(OrderWorkflow.extend, ExtendRequest(minutes=10)), HANDLER_ANSWERS_WITHIN_S
        )
        assert view.expires_at - view.started_at == timedelta(minutes=11)
        view = await asyncio.wait_for(
            expired.execute_update(OrderWorkflow.expire_now), HANDLER_ANSWERS_WITHIN_S
        )
        assert view.order_status == "expired"
        # The cancelled and the expired-by-hand orders' PayOS links are being cancelled (the closed
        # window's link had lapsed at PayOS by then: nothing to cancel).
        for _ in range(50):  # started beside the handlers, so maybe a moment after they answered
            if hanging["cancel_open_links"] == 2:
                break
            await asyncio.sleep(0.1)
        assert hanging["cancel_open_links"] == 2  # both hang: nothing waited for them

        released.set()  # the effects finish: the ended orders' workflows complete
        for handle, status in ((closing, "expired"), (cancelled, "cancelled"), (expired, "expired")):
            assert (await asyncio.wait_for(handle.result(), 10)).status == status
        await extended.execute_update(OrderWorkflow.cancel, CancelRequest(reason="done"))


class SilentMomo(MomoGateway):
    """MoMo whose status query never answers (a gateway hanging at the deadline)."""

    asked = 0

    async def query(self, gateway_order_id: str, *, created_at: datetime) -> GatewayResult:
        SilentMomo.asked += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_gateway_that_hangs_at_the_deadline_holds_the_window_for_the_grace_only(ts, stack):
    """The attempt counts as in flight (bounded by the grace); the order's handlers are not held up."""
    silent = SilentMomo(stack.settings)
    async with order_worker(ts, stack, gateways={"momo": silent}, reconcile_budget_seconds=2) as queue:
        held, vid = await start(ts, stack, queue, grace_minutes=1)
        cancelled, _ = await start(ts, stack, queue, grace_minutes=1)
        SilentMomo.asked = 0
        await ts.sleep(timedelta(minutes=15, seconds=5))
        # The cancel reaches its order while the gateway still says nothing (the query was cut at
        # the budget, not the adapter's 30-s timeout).
        view = await asyncio.wait_for(
            cancelled.execute_update(OrderWorkflow.cancel, CancelRequest(reason="gave up")),
            HANDLER_ANSWERS_WITHIN_S,
        )
        assert view.order_status == "cancelled"
        assert (await held.query(OrderWorkflow.session)).order_status == "pending_payment"  # in flight
        await ts.sleep(timedelta(minutes=1, seconds=20))  # past deadline + grace
        outcome = await held.result()
    assert (outcome.status, outcome.reason) == ("expired", "payment_window_closed")
    assert SilentMomo.asked >= 3, "asked at the deadline and again within the grace"
    assert await stack.stock(vid) == 3


class SometimesSilentMomo(MomoGateway):
    """MoMo whose status query says nothing while `silent`, and answers truly after."""

    silent = True

    async def query(self, gateway_order_id: str, *, created_at: datetime) -> GatewayResult:
        if SometimesSilentMomo.silent:
            await asyncio.Event().wait()
        return await super().query(gateway_order_id, created_at=created_at)


async def test_money_paid_in_time_is_found_after_a_close_the_gateway_was_silent_for(ts, stack):
    """The window closes on time although MoMo gives no answer; the payment made in time (its IPN
    lost) is found once MoMo answers again, and refunded as a late payment."""
    momo = SometimesSilentMomo(stack.settings)
    SometimesSilentMomo.silent = True
    async with order_worker(ts, stack, gateways={"momo": momo}, reconcile_budget_seconds=1) as queue:
        handle, vid = await start(ts, stack, queue, grace_minutes=1)
        attempt = (await handle.query(OrderWorkflow.session)).attempts[0]
        async with httpx.AsyncClient(base_url=stack.base) as http:  # paid in time, notification lost
            r = await http.post(
                f"/sandbox/pay/momo/{attempt.gateway_order_id}/pay",
                json={"drop": True},
                headers={"Accept": "application/json"},
            )
            assert r.status_code == 200, r.text
        await ts.sleep(timedelta(minutes=16, seconds=10))  # deadline + grace: closed, MoMo silent
        assert (await handle.query(OrderWorkflow.session)).order_status == "expired"
        SometimesSilentMomo.silent = False  # MoMo answers again
        await ts.sleep(timedelta(minutes=2))
        assert (await handle.result()).status == "expired"
    late = late_workflow_id("momo", attempt.gateway_order_id)
    assert (
        await ts.client.get_workflow_handle_for(LatePaymentWorkflow.run, late).result()
    ).state == "refunded"
    assert await stack.stock(vid) == 3
