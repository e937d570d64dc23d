"""OrderWorkflow: one durable payment window per order (workflow id `order-<orderId>`).

The workflow decides; activities persist. It freezes the order (local activity, so the API's
create call stays one round trip), opens the first payment link, then sleeps on a timer that can
move (reminder, deadline) while signals and updates arrive. Exactly one terminal transition
happens, through `transition_order`, whose guarded UPDATE also restores stock.

The critical path: the run loop and the handlers await only what decides the order (the snapshot
and reservation, payment links, verdicts, the reconciliation at the deadline, the transition).
Reminders and link cancellation are started beside it (`_beside`) and can never fail, block or
delay it; order events leave through the outbox relay (activities/event_relay.py), not from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

# Passed through: the sandbox would otherwise re-import these for every workflow instance (and
# the pydantic converter rebuild its adapters for the fresh classes): most of a create's worker CPU.
# They are the pure core and the steps' declarations, so sharing them keeps workflows deterministic.
with workflow.unsafe.imports_passed_through():
    from domain.gateways import CANCELLABLE_LINKS, GATEWAY_NAMES, amount_problem
    from domain.messages import (
        Attempt,
        AttemptRef,
        AttemptUpdate,
        AuditEntry,
        CancelLinksInput,
        CancelRequest,
        CreatedOrder,
        CreateOrderInput,
        Creation,
        DeadlineInput,
        ExpireRequest,
        ExtendRequest,
        LatePayment,
        LinkInput,
        OrderInput,
        OrderOutcome,
        PaymentResult,
        Reconciled,
        ReconcileInput,
        ReminderInput,
        RetryRequest,
        RetryResult,
        ReviewInput,
        SessionView,
        TransitionInput,
        TransitionResult,
    )
    from domain.search import (
        CUSTOMER_ID,
        GATEWAY,
        GRAND_TOTAL,
        ORDER_CODE,
        ORDER_STATUS,
        PAYMENT_DEADLINE,
    )
    from domain.statuses import (
        MAY_TAKE_MONEY,
        OPEN_ATTEMPTS_BECOME,
        OPERATOR_SETTLED,
        SESSION_FOR_ORDER,
        AttemptStatus,
        OrderStatus,
        PaymentOutcome,
    )
    from domain.verdicts import Act, Received, decide
    from workflows import steps

ArgT = TypeVar("ArgT")  # a step's one argument and its result, checked against workflows/steps.py
ResultT = TypeVar("ResultT")

DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
DB_TIMEOUT = timedelta(seconds=30)
# A gateway that cannot make a link within ~3 tries is down: tell the shopper rather than hang.
LINK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# MoMo asks clients to wait at least 30 s for a create: the call gets 3/4 of this (gateways/http.py,
# call_budget), 33.75 s. A local activity's timeout is not among the replayed commands.
LINK_TIMEOUT = timedelta(seconds=45)
MIN_LINK_TIME = timedelta(seconds=1)  # a retry asked just before the deadline still gets this long
# While a payment is in flight at the deadline, ask the gateway again this often (within the grace).
RECHECK = timedelta(seconds=15)
# The reconciliation asks every open attempt at once under one budget (RECONCILE_BUDGET_SECONDS,
# at most 10 s); this bounds the whole step, database included.
RECONCILE_TIMEOUT = timedelta(seconds=15)
# Beside the order: a reminder is retried until the deadline; a link cancellation for a minute,
# after which the gateway's own expiry (our deadline, sent with the link) closes the link anyway.
BESIDE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=20))
CANCEL_LINKS_BUDGET = timedelta(seconds=60)
# A window that closed while a gateway gave no answer: that gateway is asked again for this long.
CONFIRM_BUDGET = timedelta(minutes=10)
# Every change to this workflow's commands is made under a workflow.patched id of its own and
# recorded as a new release history (tests/test_replay.py says how). Since release 1.0:
FIRST_LINK_CUT = "first-link-cut-v1"  # 1.1: the first link, like a retry's, is cut at the deadline


class LinkPastDeadline(Exception):
    """The first link was not made by the deadline; run() fails the order (never leaves it)."""


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, inp: OrderInput) -> None:
        self.inp = inp
        self.started_at = workflow.now()
        self.deadline = self.started_at + timedelta(minutes=inp.duration_minutes)
        self.status = OrderStatus.PENDING_PAYMENT
        self.end_reason: str | None = None
        self.order: CreatedOrder | None = None
        self.creation: Creation | None = None
        self.attempts: list[Attempt] = []
        self.last_attempt_at: datetime | None = None
        self.inbox: list[PaymentResult] = []
        self.seen: set[tuple[str, str, str, int | None]] = set()
        self.reminded = inp.reminder_minutes <= 0
        self.wake = False  # set by handlers that move the deadline
        self.recheck_at: datetime | None = None  # set while an in-flight payment holds the window
        self.lock = asyncio.Lock()
        self.closing = asyncio.Lock()  # one close of the window at a time (the timer, expire_now)
        self.beside: set[asyncio.Task[None]] = set()  # optional effects: never awaited by the loop
        self.reminder: asyncio.Task[Any] | None = None
        self.money: dict[int, Received] = {}  # by attempt_no: what each attempt's gateway reported

    # ---- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: OrderInput) -> OrderOutcome:
        created = await workflow.execute_local_activity(
            steps.create_order,
            CreateOrderInput(
                order_id=inp.order_id,
                customer_id=inp.customer_id,
                lines=inp.lines,
                order_type=inp.order_type,
                receiver=inp.receiver,
                started_at=self.started_at,
                expires_at=self.deadline,
                duration_minutes=inp.duration_minutes,
                max_attempts=inp.max_attempts,
                request_hash=inp.request_hash,
                gateway=inp.gateway,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if created.order is None:
            # Nothing was written: OUT_OF_STOCK / VARIANT_NOT_FOUND leave no trace but this answer.
            self.creation = Creation(
                error=created.error, message=created.message, request_hash=inp.request_hash
            )
            await workflow.wait_condition(workflow.all_handlers_finished)
            return OrderOutcome(order_id=inp.order_id, status="rejected", reason=created.error or "")
        self.order = created.order
        self._upsert_search_attributes()

        async with self.lock:
            try:
                await self._open_attempt(inp.gateway)
            # A local activity out of retries raises ApplicationError.
            except (ActivityError, ApplicationError, LinkPastDeadline) as err:
                workflow.logger.warning("first payment link failed: %s", err)
                await self._finish(OrderStatus.FAILED, "payment_link_unavailable")
        self.creation = Creation(order=self.order, session=self.session(), request_hash=inp.request_hash)

        while not self.status.is_terminal:
            await self._sleep_until_next_event()
            async with self.lock:
                await self._drain_inbox()
                if self.status.is_terminal:
                    break
                now = workflow.now()
                if not self.reminded and now >= self._reminder_at():
                    self._remind()
                due = now >= self.deadline
            if due:
                await self._close_window(grace=True)

        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._effects_done()
        # Verdicts can still arrive while the order ends (links being cancelled): read them too,
        # or a success paid just after the deadline would leave with the history.
        while self.inbox:
            async with self.lock:
                await self._drain_inbox()
            await workflow.wait_condition(workflow.all_handlers_finished)
        return OrderOutcome(order_id=inp.order_id, status=self.status, reason=self.end_reason or "")

    async def _sleep_until_next_event(self) -> None:
        now = workflow.now()
        next_at = self.recheck_at or (
            self.deadline if self.reminded else min(self._reminder_at(), self.deadline)
        )
        self.wake = False
        if next_at > now:
            try:
                await workflow.wait_condition(
                    lambda: bool(self.inbox) or self.wake or self.status.is_terminal,
                    timeout=next_at - now,
                )
            except TimeoutError:
                pass

    def _reminder_at(self) -> datetime:
        return self.deadline - timedelta(minutes=self.inp.reminder_minutes)

    # ---- signals, updates, queries -------------------------------------------------------------

    @workflow.signal
    def payment_result(self, result: PaymentResult) -> None:
        # The amount is part of a verdict: a signed claim of another amount for the same transaction
        # is another verdict (flagged for review), not a duplicate that would hide the right one.
        key = (
            result.gateway_order_id,
            result.outcome,
            result.transaction_id or result.result_code,
            result.amount,
        )
        if key in self.seen:  # duplicates are normal: apply each verdict once
            return
        self.seen.add(key)
        self.inbox.append(result)

    @workflow.update
    async def created(self) -> Creation:
        """Answers once the order is frozen and its first link made (or refused)."""
        await workflow.wait_condition(lambda: self.creation is not None)
        assert self.creation is not None
        return self.creation

    @workflow.update
    async def retry_payment(self, req: RetryRequest) -> RetryResult:
        async with self.lock:
            self._check_can_retry(req)  # state may have moved while waiting for the lock
            await self._open_attempt(req.gateway or self.attempts[-1].gateway)
            latest = self.attempts[-1]
            return RetryResult(
                order_id=self.inp.order_id,
                payment_attempts=latest.attempt_no,
                max_payment_attempts=self.inp.max_attempts,
                remaining_attempts=self.inp.max_attempts - latest.attempt_no,
                payment_url=latest.payment_url,
                gateway=latest.gateway,
                attempt_no=latest.attempt_no,
            )

    @retry_payment.validator
    def _validate_retry(self, req: RetryRequest) -> None:
        self._check_can_retry(req)

    def _check_can_retry(self, req: RetryRequest) -> None:
        # In this order: the session is active, its window still open (an ended window reads as
        # expired, not merely inactive), a retry is left; then the gateway and the amount.
        if self.order is None:
            raise ApplicationError("Order is still being created", type="SESSION_NOT_ACTIVE")
        if self.status is OrderStatus.EXPIRED:
            raise ApplicationError("Session has expired", type="SESSION_EXPIRED")
        if self.status.is_terminal:
            raise ApplicationError("Session is not active", type="SESSION_NOT_ACTIVE")
        if workflow.now() >= self.deadline:
            raise ApplicationError("Session has expired", type="SESSION_EXPIRED")
        if self._retries_used() >= self.inp.max_attempts:
            raise ApplicationError(
                f"Maximum payment attempts ({self.inp.max_attempts}) reached", type="MAX_ATTEMPTS_REACHED"
            )
        if req.gateway is not None and req.gateway not in GATEWAY_NAMES:
            raise ApplicationError(f"Unknown gateway {req.gateway!r}", type="INVALID_GATEWAY")
        problem = amount_problem(req.gateway or self.attempts[-1].gateway, self.order.grand_total)
        if problem:
            raise ApplicationError(problem, type="AMOUNT_OUT_OF_RANGE")

    @workflow.update
    async def cancel(self, req: CancelRequest) -> SessionView:
        async with self.lock:
            await self._drain_inbox()  # a success already received wins over the cancel
            self._check_pending_for_cancel()
            reason = f"cancelled_by_{req.by}" + (f": {req.reason}" if req.reason else "")
            await self._finish(OrderStatus.CANCELLED, reason, audit=req.audit)
            return self.session()

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        self._check_pending_for_cancel()

    def _check_pending_for_cancel(self) -> None:
        if self.status is OrderStatus.PAID:
            raise ApplicationError("Payment already processed", type="PAYMENT_ALREADY_PROCESSED")
        if self.status.is_terminal or self.order is None:
            raise ApplicationError(f"Order is {self.status}", type="ORDER_NOT_PENDING")

    @workflow.update
    async def extend(self, req: ExtendRequest) -> SessionView:
        """Admin lever: move the deadline by `minutes` (negative shortens; past now expires now)."""
        async with self.lock:
            self._check_pending_for_extend(req)
            new_deadline = max(workflow.now(), self.deadline + timedelta(minutes=req.minutes))
            await self._move_deadline(new_deadline, req.audit)
            return self.session()

    @extend.validator
    def _validate_extend(self, req: ExtendRequest) -> None:
        self._check_pending_for_extend(req)

    def _check_pending_for_extend(self, req: ExtendRequest) -> None:
        if self.status.is_terminal or self.order is None:
            raise ApplicationError(f"Order is {self.status}", type="ORDER_NOT_PENDING")
        if req.minutes == 0 or abs(req.minutes) > 7 * 24 * 60:
            raise ApplicationError("minutes must be non-zero and within a week", type="VALIDATION_ERROR")

    @workflow.update
    async def expire_now(self, req: ExpireRequest | None = None) -> SessionView:
        """Admin lever: close the window now (reconciling first, like the timer would)."""
        async with self.lock:
            if self.status.is_terminal or self.order is None:
                raise ApplicationError(f"Order is {self.status}", type="ORDER_NOT_PENDING")
            await self._move_deadline(workflow.now(), req.audit if req else None)
            await self._drain_inbox()
        await self._close_window(grace=False)
        return self.session()

    @workflow.query
    def session(self) -> SessionView:
        return SessionView(
            order_id=self.inp.order_id,
            order_code=self.order.order_code if self.order else None,
            session_id=self.order.session_id if self.order else None,
            status=SESSION_FOR_ORDER[self.status],
            order_status=self.status,
            started_at=self.started_at,
            expires_at=self.deadline,
            duration_minutes=self.inp.duration_minutes,
            payment_attempts=self._retries_used(),
            max_payment_attempts=self.inp.max_attempts,
            last_payment_attempt=self.last_attempt_at,
            end_reason=self.end_reason,
            attempts=list(self.attempts),
        )

    # ---- effects -------------------------------------------------------------------------------

    async def _effect(
        self,
        step: Callable[[ArgT], Awaitable[ResultT]],
        arg: ArgT,
        timeout: timedelta,
        retry: RetryPolicy,
        within: timedelta | None = None,
    ) -> ResultT:
        """Run an effect on the order's critical path as a local activity: it runs inside the
        workflow task on this worker, saving a round trip through the server per step (creation,
        attempts, the deadline's reconcile and transition). `within` bounds it, retries included."""
        return await workflow.execute_local_activity(
            step, arg, start_to_close_timeout=timeout, retry_policy=retry, schedule_to_close_timeout=within
        )

    def _retries_used(self) -> int:
        # Attempt 0 is the first link; each retry adds one, up to the order's maximum of retries.
        return max(0, len(self.attempts) - 1)

    async def _open_attempt(self, gateway: str) -> None:
        assert self.order is not None
        attempt_no = len(self.attempts)
        link = LinkInput(
            order_id=self.inp.order_id,
            order_code=self.order.order_code,
            attempt_no=attempt_no,
            gateway=gateway,
            amount=self.order.grand_total,
            description=f"Order {self.order.order_code}",
            created_at=workflow.now(),
            expires_at=self.deadline,
            items=self.order.items,
            client_ip=self.inp.client_ip,
        )
        # Every link is made under the lock the close needs: a gateway slower than the window (three
        # tries of LINK_TIMEOUT) must not hold the window open. Cut at the deadline, the link fails
        # and the order closes on time; a link we never saw expires with the window (its expiry is
        # our deadline), and money it took anyway arrives as a late payment.
        if attempt_no > 0:
            attempt = await self._effect(
                steps.create_payment_link, link, LINK_TIMEOUT, LINK_RETRY, within=self._link_time_left()
            )
        elif workflow.patched(FIRST_LINK_CUT):
            attempt = await self._first_link_by_deadline(link)
        else:
            attempt = await self._effect(steps.create_payment_link, link, LINK_TIMEOUT, LINK_RETRY)
        self.attempts.append(attempt)
        self.last_attempt_at = attempt.created_at
        self._set_attributes([GATEWAY.value_set(gateway)])

    async def _first_link_by_deadline(self, link: LinkInput) -> Attempt:
        # Raced against a timer, not cut by the local activity's own schedule-to-close: a first link
        # cut that way does not replay (sdk-core: "Missing associated machine for LocalActivity").
        making = asyncio.ensure_future(
            self._effect(steps.create_payment_link, link, LINK_TIMEOUT, LINK_RETRY)
        )
        try:
            await workflow.wait_condition(making.done, timeout=self._link_time_left())
        except TimeoutError:
            making.cancel()
            raise LinkPastDeadline() from None
        return await making

    def _link_time_left(self) -> timedelta:
        return max(self.deadline - workflow.now(), MIN_LINK_TIME)

    async def _drain_inbox(self) -> None:
        while self.inbox:
            await self._apply(self.inbox.pop(0))

    def _attempt(self, gateway_order_id: str) -> Attempt | None:
        return next((a for a in self.attempts if a.gateway_order_id == gateway_order_id), None)

    async def _apply(self, result: PaymentResult) -> None:
        """One verdict, through the verdict table (domain/verdicts.py)."""
        outcome = PaymentOutcome(result.outcome)
        attempt = self._attempt(result.gateway_order_id)
        if attempt is None and outcome.carries_money and self.order is not None:
            attempt = await self._adopt(result)
        money = self.money.setdefault(attempt.attempt_no, Received()) if attempt else Received()
        received = result.amount
        if outcome.carries_money:
            received = money.take(result.gateway, result.result_code, result.amount, result.transaction_id)
        await self._decide(result, attempt, money, received)

    async def _decide(
        self, result: PaymentResult, attempt: Attempt | None, money: Received, received: int | None
    ) -> None:
        paid_by_it = attempt is not None and attempt.status == AttemptStatus.SUCCESS
        new_money = money.new_money(result.gateway, paid_by_it)
        verdict = decide(
            result.outcome,
            attempt_status=attempt.status if attempt else None,
            order_status=self.status,
            expected=attempt.amount if attempt else None,
            received=received,
            new_money=new_money,
            retries_left=attempt is None or not self._is_last_chance(attempt),
        )
        act = verdict.act
        if act is Act.IGNORE:
            if attempt is None:
                workflow.logger.warning("payment result for unknown attempt %s", result.gateway_order_id)
            return
        assert attempt is not None or act is Act.REVIEW
        if act is Act.NOTE:
            assert attempt is not None
            attempt.result_code = result.result_code
        elif act is Act.REVIEW:  # verified money that cannot pay the order: kept for a person, never dropped
            await self._flag(result, verdict.reason, attempt, received)
            money.hand_on()
        elif act is Act.SURPLUS:
            await self._flag(result, verdict.reason, None, new_money, surplus=True)
            money.hand_on()
        elif act is Act.SETTLE_LATE:
            await self._settle_late(result, new_money)
            money.hand_on()
        elif act is Act.END_ATTEMPT:
            assert attempt is not None and verdict.attempt_status is not None
            await self._record_attempt(self._update(result, attempt, verdict.attempt_status))
        else:  # PAY, CANCEL, FAIL: the verdict ends the order
            assert (
                attempt is not None
                and verdict.attempt_status is not None
                and verdict.order_status is not None
            )
            update = self._update(
                result, attempt, verdict.attempt_status, received if act is Act.PAY else None
            )
            reason = {
                Act.PAY: f"paid_via_{attempt.gateway}",
                Act.CANCEL: f"cancelled_at_gateway_{result.result_code}",
                Act.FAIL: "max_attempts_failed",
            }[act]
            moved = await self._finish(verdict.order_status, reason, update)
            if act is not Act.PAY:
                return
            if moved.transitioned:
                money.hand_on()
            elif moved.attempt_status in OPERATOR_SETTLED and not self.status.is_terminal:
                # An operator settled this attempt's money beside the workflow: that decision
                # stands, and the money that came since is kept apart, never paid with.
                attempt.status = moved.attempt_status
                await self._decide(result, attempt, money, received)
            else:
                # The order had already ended in Postgres (a workflow task that expired it was lost
                # after its local activity committed): the money is a late payment.
                await self._settle_late(result, new_money)
                money.hand_on()

    def _update(
        self, result: PaymentResult, attempt: Attempt, status: AttemptStatus, received: int | None = None
    ) -> AttemptUpdate:
        return AttemptUpdate(
            order_id=self.inp.order_id,
            attempt_no=attempt.attempt_no,
            status=status,
            result_code=result.result_code,
            transaction_id=result.transaction_id,
            received_amount=received,
        )

    async def _adopt(self, result: PaymentResult) -> Attempt | None:
        """Money for an attempt this order has in Postgres but the workflow does not: a retry
        whose update was lost with its workflow task (Temporal went down after the link was
        stored, and the shopper found the link on the order). The money is this order's: the
        attempt is taken back into the order, and its money judged like any other's."""
        found = await self._effect(
            steps.find_attempt,
            AttemptRef(
                order_id=self.inp.order_id, gateway=result.gateway, gateway_order_id=result.gateway_order_id
            ),
            DB_TIMEOUT,
            DB_RETRY,
        )
        assert self.order is not None
        if (
            found is None
            or found.amount != self.order.grand_total  # not a link for this order's money
            or any(a.attempt_no == found.attempt_no for a in self.attempts)
        ):
            return None
        workflow.logger.warning("adopting attempt %s, made by a lost update", found.gateway_order_id)
        self.attempts = sorted([*self.attempts, found], key=lambda a: a.attempt_no)
        self.last_attempt_at = max(a.created_at for a in self.attempts)
        return found

    async def _flag(
        self,
        result: PaymentResult,
        reason: str,
        attempt: Attempt | None,
        amount: int | None,
        surplus: bool = False,
    ) -> None:
        """Money that cannot pay: its attempt becomes `needs_review` with what it received, or
        (`surplus`) the money gets a review row of its own beside the attempt."""
        review = ReviewInput.for_result(
            result, order_id=self.inp.order_id, reason=reason, amount=amount, surplus=surplus
        )
        await self._effect(steps.flag_for_review, review, DB_TIMEOUT, DB_RETRY)
        if attempt is not None:
            attempt.status = AttemptStatus.NEEDS_REVIEW
            attempt.result_code = result.result_code

    def _is_last_chance(self, attempt: Attempt) -> bool:
        latest = attempt.attempt_no == len(self.attempts) - 1
        return latest and self._retries_used() >= self.inp.max_attempts

    async def _record_attempt(self, update: AttemptUpdate) -> None:
        await self._effect(steps.record_attempt, update, DB_TIMEOUT, DB_RETRY)
        self._set_attempt(update)

    def _set_attempt(self, update: AttemptUpdate) -> None:
        for a in self.attempts:
            if a.attempt_no == update.attempt_no:
                a.status = update.status
                a.result_code = update.result_code
                a.transaction_id = update.transaction_id or a.transaction_id

    async def _close_window(self, grace: bool) -> None:
        """Reconcile before expiring: a payment whose notification was lost pays the order; one still
        in flight holds the window for at most the grace, asked again every RECHECK. The gateways
        are asked without the lock, so handlers are never held up by a slow gateway."""
        async with self.closing:
            if self.status.is_terminal:
                return
            reconciled = await self._effect(
                steps.reconcile,
                ReconcileInput(order_id=self.inp.order_id, attempts=self.attempts),
                RECONCILE_TIMEOUT,
                DB_RETRY,
            )
            async with self.lock:
                await self._conclude(reconciled, grace)

    async def _conclude(self, reconciled: Reconciled, grace: bool) -> None:
        for result in reconciled.results:
            self.payment_result(result)
        await self._drain_inbox()
        now = workflow.now()
        if self.status.is_terminal or now < self.deadline:  # ended, or extended while we asked
            return
        grace_end = self.deadline + timedelta(minutes=self.inp.grace_minutes)
        if grace and reconciled.in_flight and now < grace_end:
            self.recheck_at = min(now + RECHECK, grace_end)
            return
        self.recheck_at = None
        silent = [a for a in self.attempts if a.gateway_order_id in reconciled.unanswered]
        await self._finish(OrderStatus.EXPIRED, "payment_window_closed")
        if silent:
            # Closed on time all the same; a payment made in time whose notification was lost is
            # still found once the gateway answers, and settled as a late payment.
            self._beside("confirm attempts", self._confirm_after_close(silent))

    async def _settle_late(self, result: PaymentResult, amount: int | None) -> None:
        """Money for an order that has ended otherwise: its own settlement (LatePaymentWorkflow),
        one per attempt, or per transfer where a link takes several (infra/temporal.py)."""
        late = LatePayment(
            order_id=self.inp.order_id,
            gateway=result.gateway,
            gateway_order_id=result.gateway_order_id,
            amount=amount,
            result_code=result.result_code,
            transaction_id=result.transaction_id,
            policy=self.inp.late_payment_policy,
            outcome=result.outcome,
        )
        await workflow.execute_activity(
            steps.request_late_settlement,
            late,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _finish(
        self,
        to: OrderStatus,
        reason: str,
        update: AttemptUpdate | None = None,
        audit: AuditEntry | None = None,
    ) -> TransitionResult:
        """The one terminal transition; an operator's action that causes it (`audit`) is recorded with it."""
        move = TransitionInput(
            order_id=self.inp.order_id, to_status=to, reason=reason, attempt=update, audit=audit
        )
        result: TransitionResult = await self._effect(steps.transition_order, move, DB_TIMEOUT, DB_RETRY)
        self.status = OrderStatus(result.status)
        if self.status is not to:  # Postgres shows the order ended otherwise, or still open
            return result
        self.end_reason = reason
        if update is not None:
            self._set_attempt(update)  # the guarded UPDATE wrote the attempt only if the order moved
        # Links still open at a gateway that can cancel them; never the one whose verdict this is
        # (it took the money, or ended already). Copies: the statuses below change on these objects.
        closing = [
            replace(a)
            for a in self.attempts
            if a.status in MAY_TAKE_MONEY
            and a.gateway in CANCELLABLE_LINKS
            and (update is None or a.attempt_no != update.attempt_no)
        ]
        for a in self.attempts:
            if a.status == AttemptStatus.PENDING:
                a.status = OPEN_ATTEMPTS_BECOME[self.status]
        workflow.upsert_search_attributes([ORDER_STATUS.value_set(self.status.value)])
        if closing:
            self._beside("cancel links", self._cancel_links_beside(closing, reason))
        return result

    async def _move_deadline(self, deadline: datetime, audit: AuditEntry | None = None) -> None:
        """The operator's action that moves it (`audit`) is recorded with the new deadline."""
        await self._effect(
            steps.set_deadline,
            DeadlineInput(order_id=self.inp.order_id, expires_at=deadline, audit=audit),
            DB_TIMEOUT,
            DB_RETRY,
        )
        self.deadline = deadline
        self.recheck_at = None
        self.wake = True
        workflow.upsert_search_attributes([PAYMENT_DEADLINE.value_set(deadline)])

    def _remind(self) -> None:
        """Beside the loop, retried until the window closes; abandoned (not awaited) when the order ends."""
        assert self.order is not None
        self.reminded = True
        reminder = ReminderInput(
            order_id=self.inp.order_id,
            order_code=self.order.order_code,
            customer_id=self.inp.customer_id,
            expires_at=self.deadline,
        )
        self.reminder = workflow.start_activity(
            steps.send_reminder,
            reminder,
            start_to_close_timeout=DB_TIMEOUT,
            schedule_to_close_timeout=max(self.deadline - workflow.now(), timedelta(seconds=30)),
            retry_policy=BESIDE_RETRY,
            cancellation_type=workflow.ActivityCancellationType.ABANDON,
        )
        self._beside("reminder", self.reminder)

    # ---- beside the critical path ----------------------------------------------------------------

    def _beside(self, what: str, step: Awaitable[Any]) -> None:
        """Run an optional effect without the loop or a handler waiting for it. Its failures are
        retried by its activity's policy and recorded by the activity; here they end quietly."""

        async def guarded() -> None:
            try:
                await step
            except ActivityError as err:
                if not isinstance(err.cause, CancelledError):  # not merely abandoned at the order's end
                    workflow.logger.warning("%s gave up: %s", what, err.cause or err)
            except asyncio.CancelledError:
                pass  # abandoned when the order ended

        task = asyncio.create_task(guarded())
        self.beside.add(task)
        task.add_done_callback(self.beside.discard)

    async def _cancel_links_beside(self, attempts: list[Attempt], reason: str) -> None:
        await workflow.execute_activity(
            steps.cancel_open_links,
            CancelLinksInput(order_id=self.inp.order_id, attempts=attempts, reason=reason[:100]),
            start_to_close_timeout=LINK_TIMEOUT,
            schedule_to_close_timeout=CANCEL_LINKS_BUDGET,
            retry_policy=BESIDE_RETRY,
        )

    async def _confirm_after_close(self, attempts: list[Attempt]) -> None:
        results = await workflow.execute_activity(
            steps.confirm_attempts,
            ReconcileInput(order_id=self.inp.order_id, attempts=attempts),
            start_to_close_timeout=RECONCILE_TIMEOUT,
            schedule_to_close_timeout=CONFIRM_BUDGET,
            retry_policy=BESIDE_RETRY,
        )
        for result in results:
            self.payment_result(result)  # read by the run's last inbox drain

    async def _effects_done(self) -> None:
        """At the end of the run: a reminder still trying is pointless now; link cancellations are
        let finish (bounded by CANCEL_LINKS_BUDGET), so they are not cut short with the history."""
        if self.reminder is not None and not self.reminder.done():
            self.reminder.cancel()
        if self.beside:
            await workflow.wait(list(self.beside))

    def _upsert_search_attributes(self) -> None:
        assert self.order is not None
        self._set_attributes(
            [
                ORDER_STATUS.value_set(self.status.value),
                ORDER_CODE.value_set(self.order.order_code),
                CUSTOMER_ID.value_set(self.inp.customer_id),
                GATEWAY.value_set(self.inp.gateway),
                PAYMENT_DEADLINE.value_set(self.deadline),
                GRAND_TOTAL.value_set(self.order.grand_total),
            ]
        )

    def _set_attributes(self, updates: list[SearchAttributeUpdate[Any]]) -> None:
        """Only the attributes whose value changes (each upsert is an event and a write to the
        server's visibility store; the API sends those it knows with the start)."""
        current = workflow.info().typed_search_attributes
        updates = [u for u in updates if current.get(u.key) != u.value]
        if updates:
            workflow.upsert_search_attributes(updates)
