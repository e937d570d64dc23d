"""An in-memory stand-in for everything outside the workflows (OrderWorkflow, LatePaymentWorkflow,
RefundWorkflow, ArchiveWorkflow): Postgres, the
gateways, the reminder channels. Its methods are the steps of workflows/steps.py (same names, same
types: tests/fast/test_world.py checks); its fields are the knobs a test turns and the calls it
asserts on. Every fake answers or fails at once: an activity that never ends would stop the
time-skipping server from skipping time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from domain.messages import (
    ArchiveInput,
    ArchiveResult,
    Attempt,
    AttemptRef,
    AttemptUpdate,
    CancelLinksInput,
    CancelRequest,
    CreatedOrder,
    CreateOrderInput,
    CreateOrderResult,
    Creation,
    DeadlineInput,
    ExtendRequest,
    FrozenItem,
    LateOutcome,
    LatePayment,
    LinkInput,
    OrderInput,
    OrderLine,
    PaymentResult,
    Receiver,
    Reconciled,
    ReconcileInput,
    RefundOutcome,
    RefundRequest,
    ReminderInput,
    RetryRequest,
    RetryResult,
    ReviewInput,
    SessionView,
    TransitionInput,
    TransitionResult,
)
from domain.statuses import MAY_TAKE_MONEY, PaymentOutcome
from workflows.order import OrderWorkflow

VARIANT = "v-1"


@dataclass
class Call:
    step: str
    arg: Any
    at: datetime  # the test server's (skipped) time


class World:
    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.queue = f"fast-{uuid.uuid4().hex[:8]}"
        # knobs
        self.stock = {VARIANT: 5}
        self.price = 30_000  # each unit's; the order's grand total is price x quantity
        self.link_fails = False  # the gateway refuses every link
        # The gateway's answer per attempt_no when asked (reconcile, confirm_attempts): pending |
        # success | processing | underpaid | failed | not_found | silent (no answer at all).
        self.answers: dict[int, str] = {}
        self.reminder_fails = False
        self.cancel_fails = False
        self.link_delay_s = 0.0  # a gateway this slow to make a link (real seconds)
        self.late_decision = "refund_required"  # what settle_late_payment decides
        # Attempts an operator settled in Postgres beside the workflow: gateway order id -> status.
        self.settled: dict[str, str] = {}
        self.refund_unknown = 0  # asks for which the refund's outcome stays unknown
        self.refund_refused = False  # then the gateway definitely refuses the refund
        # state and the record
        self.frozen: dict[str, CreatedOrder] = {}
        self.orders: dict[str, str] = {}  # order id -> its status "in Postgres"
        self.links: dict[
            str, tuple[str, Attempt]
        ] = {}  # gateway order id -> (order id, attempt) "in Postgres"
        self.calls: list[Call] = []
        self.handles: list[WorkflowHandle[Any, Any]] = []

    # ---- what tests read -------------------------------------------------------------------------

    def called(self, step: str) -> list[Any]:
        return [c.arg for c in self.calls if c.step == step]

    async def eventually(self, step: str, count: int = 1) -> list[Any]:
        """The calls of a step started beside the order, once there are `count` of them."""
        for _ in range(100):
            if len(self.called(step)) >= count:
                break
            await asyncio.sleep(0.05)
        return self.called(step)

    def times(self, step: str) -> list[datetime]:
        return [c.at for c in self.calls if c.step == step]

    def activities(self) -> list[Callable[..., Any]]:
        return [
            getattr(self, name)
            for name, fn in vars(World).items()
            if hasattr(fn, "__temporal_activity_definition")
        ]

    async def _record(self, arg: Any) -> None:
        """Every fake starts here: the call, under the step's name, at the server's time."""
        self.calls.append(Call(activity.info().activity_type, arg, await self.env.get_current_time()))

    # ---- the order, from the test's side ----------------------------------------------------------

    async def start(self, quantity: int = 1, **overrides: Any) -> Order:
        values: dict[str, Any] = {
            "order_id": str(uuid.uuid4()),
            "customer_id": "fast",
            "lines": [OrderLine(VARIANT, quantity)],
            "gateway": "momo",
            "order_type": "normal",
            "receiver": Receiver(name="A", phone="0901234567", address="HCMC"),
            "duration_minutes": 15,
            "max_attempts": 3,
            "reminder_minutes": 3,
            "grace_minutes": 1,
            "request_hash": "h",
        }
        values.update(overrides)
        inp = OrderInput(**values)
        handle = await self.env.client.start_workflow(
            OrderWorkflow.run, inp, id=f"order-{inp.order_id}", task_queue=self.queue
        )
        self.handles.append(handle)
        return Order(inp.order_id, handle, await handle.execute_update(OrderWorkflow.created))

    async def stop(self) -> None:
        """Terminate what a test left running: a workflow task nobody polls would hold the shared
        server's clock for the tests after it."""
        for handle in self.handles:
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")

    # ---- the order's critical path --------------------------------------------------------------

    @activity.defn
    async def create_order(self, inp: CreateOrderInput) -> CreateOrderResult:
        await self._record(inp)
        if inp.order_id in self.frozen:  # idempotent, like the real one (a workflow task may be retried)
            return CreateOrderResult(order=self.frozen[inp.order_id])
        if any(self.stock.get(line.variant_id, 0) < line.quantity for line in inp.lines):
            return CreateOrderResult(error="OUT_OF_STOCK", message="not enough stock")
        for line in inp.lines:
            self.stock[line.variant_id] -= line.quantity
        price = self.price
        items = [
            FrozenItem(
                product_id="p-1",
                variant_id=ln.variant_id,
                product_name="Tea",
                variant_sku="T-1",
                variant_name="Green",
                quantity=ln.quantity,
                unit_price=price,
                sub_total_amount=price * ln.quantity,
            )
            for ln in inp.lines
        ]
        total = sum(i.sub_total_amount for i in items)
        self.orders[inp.order_id] = "pending_payment"
        self.frozen[inp.order_id] = CreatedOrder(
            order_id=inp.order_id,
            order_code=123_456_789,
            session_id=f"s-{inp.order_id}",
            customer_id=inp.customer_id,
            subtotal_amount=total,
            discount_amount=0,
            shipping_fee=0,
            grand_total=total,
            currency_code="VND",
            items=items,
        )
        return CreateOrderResult(order=self.frozen[inp.order_id])

    @activity.defn
    async def create_payment_link(self, inp: LinkInput) -> Attempt:
        await self._record(inp)
        if self.link_delay_s:
            await asyncio.sleep(self.link_delay_s)
        if self.link_fails:  # non-retryable: the same answer without LINK_RETRY's real-time waits
            raise ApplicationError("gateway unavailable", type="GATEWAY_DOWN", non_retryable=True)
        gid = f"{inp.order_code}-{inp.attempt_no}"
        url = f"https://pay.example/{inp.gateway}/{gid}"
        request_id = f"{inp.order_id}-{inp.attempt_no}"
        attempt = Attempt(
            attempt_no=inp.attempt_no,
            gateway=inp.gateway,
            gateway_order_id=gid,
            request_id=request_id,
            amount=inp.amount,
            status="pending",
            payment_url=url,
            created_at=inp.created_at,
        )
        self.links[gid] = (inp.order_id, attempt)
        return attempt

    @activity.defn
    async def find_attempt(self, ref: AttemptRef) -> Attempt | None:
        await self._record(ref)
        order_id, attempt = self.links.get(ref.gateway_order_id, ("", None))
        return attempt if order_id == ref.order_id else None

    @activity.defn
    async def record_attempt(self, update: AttemptUpdate) -> None:
        await self._record(update)

    @activity.defn
    async def flag_for_review(self, inp: ReviewInput) -> bool:
        await self._record(inp)
        return True

    @activity.defn
    async def reconcile(self, inp: ReconcileInput) -> Reconciled:
        await self._record(inp)
        asked = [a for a in inp.attempts if a.status in MAY_TAKE_MONEY]
        results = [r for r in map(self._answer, asked) if r is not None]
        silent = [a.gateway_order_id for a in asked if self.answers.get(a.attempt_no) == "silent"]
        in_flight = bool(silent) or any(r.outcome == "processing" for r in results)
        return Reconciled(results=results, in_flight=in_flight, unanswered=silent)

    def _answer(self, a: Attempt) -> PaymentResult | None:
        """The gateway's verdict on an attempt; None when it has none (not found) or says nothing."""
        answer = self.answers.get(a.attempt_no, "pending")
        if answer in ("silent", "not_found"):
            return None
        amount = a.amount - 1_000 if answer == "underpaid" else a.amount
        outcome = PaymentOutcome(answer).value
        return PaymentResult(
            gateway=a.gateway,
            gateway_order_id=a.gateway_order_id,
            outcome=outcome,
            result_code="0",
            amount=amount,
            transaction_id=f"tx-{a.gateway_order_id}",
        )

    @activity.defn
    async def transition_order(self, inp: TransitionInput) -> TransitionResult:
        await self._record(inp)
        current = self.orders[inp.order_id]
        no = inp.attempt.attempt_no if inp.attempt else None
        mine = [gid for gid, (oid, a) in self.links.items() if oid == inp.order_id and a.attempt_no == no]
        settled = self.settled.get(mine[0]) if mine else None
        if current != "pending_payment":  # the guarded UPDATE: only a pending order moves
            return TransitionResult(status=current, transitioned=False, attempt_status=settled)
        if settled is not None and inp.to_status == "paid":  # nor is it paid from money an operator settled
            return TransitionResult(status=current, transitioned=False, attempt_status=settled)
        self.orders[inp.order_id] = inp.to_status
        return TransitionResult(
            status=inp.to_status,
            transitioned=True,
            attempt_status=inp.attempt.status if inp.attempt else None,
        )

    @activity.defn
    async def set_deadline(self, inp: DeadlineInput) -> None:
        await self._record(inp)

    # ---- beside the order ------------------------------------------------------------------------

    @activity.defn
    async def send_reminder(self, inp: ReminderInput) -> list[str]:
        await self._record(inp)
        if self.reminder_fails:
            raise ApplicationError("the reminder receiver answers 500")
        return ["email"]

    @activity.defn
    async def cancel_open_links(self, inp: CancelLinksInput) -> int:
        await self._record(inp)
        if self.cancel_fails:
            raise ApplicationError("the gateway would not cancel", type="CANCEL_FAILED")
        return len(inp.attempts)

    @activity.defn
    async def confirm_attempts(self, inp: ReconcileInput) -> list[PaymentResult]:
        await self._record(inp)
        if any(self.answers.get(a.attempt_no) == "silent" for a in inp.attempts):
            raise ApplicationError("the gateway still gives no answer", type="GATEWAY_SILENT")
        return [r for r in map(self._answer, inp.attempts) if r is not None]

    @activity.defn
    async def deliver_order_events(self, order_id: str) -> int:
        await self._record(order_id)
        return 0

    # ---- late payments ---------------------------------------------------------------------------

    @activity.defn
    async def request_late_settlement(self, late: LatePayment) -> None:
        await self._record(late)

    @activity.defn
    async def settle_late_payment(self, late: LatePayment) -> LateOutcome:
        await self._record(late)
        return LateOutcome(self.late_decision)

    @activity.defn
    async def refund_late_payment(self, late: LatePayment) -> LateOutcome:
        await self._record(late)
        self._refund_verdict("refund_late_payment")
        if self.refund_refused:
            return LateOutcome("refund_required", "refused 1080")
        return LateOutcome("refunded", f"refund of {late.amount}")

    # ---- an operator's refund, the archive -------------------------------------------------------

    @activity.defn
    async def refund_payment(self, req: RefundRequest) -> RefundOutcome:
        await self._record(req)
        self._refund_verdict("refund_payment")
        if self.refund_refused:
            return RefundOutcome("refused", "refused 1080")
        return RefundOutcome("refunded", f"refund of {req.amount}")

    def _refund_verdict(self, step: str) -> None:
        """No verdict yet for the first `refund_unknown` asks (the activity asks again)."""
        if len(self.called(step)) <= self.refund_unknown:
            raise ApplicationError("the gateway has not shown the refund", type="REFUND_UNKNOWN")

    @activity.defn
    async def archive_ended_orders(self, inp: ArchiveInput) -> ArchiveResult:
        await self._record(inp)
        now = await self.env.get_current_time()
        return ArchiveResult(
            archived=2, batches=1, held_for_refund=1, cutoff=now - timedelta(days=inp.older_than_days)
        )


@dataclass
class Order:
    """One started OrderWorkflow, what its `created` update answered, and the test's levers on it."""

    id: str
    handle: WorkflowHandle[Any, Any]
    creation: Creation

    @property
    def attempt(self) -> Attempt:
        assert self.creation.session is not None
        return self.creation.session.attempts[0]

    async def view(self) -> SessionView:
        return await self.handle.query(OrderWorkflow.session)

    async def until(self, check: Callable[[SessionView], bool]) -> SessionView:
        """The session once `check` holds: a signal's effect lands a moment after the signal."""
        for _ in range(100):
            view = await self.view()
            if check(view):
                return view
            await asyncio.sleep(0.05)
        raise AssertionError(f"never held: {view}")

    async def verdict(
        self, outcome: str, amount: int | None = 30_000, attempt: Attempt | None = None, code: str = "0"
    ) -> None:
        """The gateway's verified verdict on an attempt (the first by default), as the intake signals it."""
        a = attempt or self.attempt
        result = PaymentResult(
            gateway=a.gateway,
            gateway_order_id=a.gateway_order_id,
            outcome=outcome,
            result_code=code,
            amount=amount,
            transaction_id=f"tx-{a.gateway_order_id}",
        )
        await self.handle.signal(OrderWorkflow.payment_result, result)

    async def transfer(self, amount: int, reference: str) -> None:
        """A PayOS webhook: one transfer of `amount` to the first link (code "00", its own reference)."""
        a = self.attempt
        await self.handle.signal(
            OrderWorkflow.payment_result,
            PaymentResult(
                gateway=a.gateway,
                gateway_order_id=a.gateway_order_id,
                outcome="success",
                result_code="00",
                amount=amount,
                transaction_id=reference,
            ),
        )

    async def retry(self, gateway: str | None = None) -> RetryResult:
        return await self.handle.execute_update(OrderWorkflow.retry_payment, RetryRequest(gateway))

    async def cancel(self, reason: str = "") -> SessionView:
        return await self.handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason))

    async def extend(self, minutes: float) -> SessionView:
        return await self.handle.execute_update(OrderWorkflow.extend, ExtendRequest(minutes))

    async def expire_now(self) -> SessionView:
        return await self.handle.execute_update(OrderWorkflow.expire_now)

    async def outcome(self) -> tuple[str, str]:
        """(status, reason) the workflow ended with; awaiting it lets the server skip time."""
        out = await self.handle.result()
        return out.status, out.reason

    async def lasted(self) -> timedelta:
        """From the workflow's start to its close, in the test server's time."""
        info = await self.handle.describe()
        assert info.close_time is not None
        return info.close_time - info.start_time


async def refused(command: Awaitable[Any]) -> str:
    """The error type an update was refused with (by its validator or its handler)."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await command
    assert isinstance(err.value.cause, ApplicationError), err.value.cause
    return err.value.cause.type or ""


def near(a: datetime | timedelta, b: datetime | timedelta, within_s: float = 3) -> bool:
    """Equal up to the real milliseconds a step takes on the skipped clock."""
    return abs((a - b).total_seconds()) <= within_s
