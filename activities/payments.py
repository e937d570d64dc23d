"""Gateway-facing activities: payment links, reconciliation before a window closes, cancelling
links that must not be paid any more, settling late payments (accept or refund, once), and an
operator's refund of a payment (the same refund, under the same key).
Each is idempotent: Temporal may run one again after a crash between its commit and the workflow
hearing of it. The SQL is the store's (store/payments.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from domain.messages import (
    Attempt,
    AttemptRef,
    AttemptUpdate,
    CancelLinksInput,
    LateOutcome,
    LatePayment,
    LinkInput,
    PaymentResult,
    Reconciled,
    ReconcileInput,
    RefundOutcome,
    RefundRequest,
    ReviewInput,
)
from domain.money import money_problem
from domain.statuses import (
    HOLDS_MONEY,
    MAY_TAKE_MONEY,
    MONEY_AT_REST,
    AttemptStatus,
    OrderStatus,
    PaymentOutcome,
)
from domain.verdicts import is_transfer
from gateways.base import GatewayError, GatewayResult, LinkItem, LinkRequest, PaymentGateway, RefundState
from infra.db import autocommit, while_unavailable
from infra.settings import Settings
from infra.temporal import start_late_settlement
from store import inventory, payments

log = logging.getLogger(__name__)
T = TypeVar("T")
# A refund whose outcome the gateway did not make known: the activity fails with this (retryable)
# type and its workflow asks again on a durable backoff, for as long as it takes (docs/GATEWAYS.md).
REFUND_UNKNOWN = "REFUND_UNKNOWN"
# What a refund still being asked shows on the payment (`refund_note`), for the desk: never by hand.
ASKING = "asking the gateway"
HEARTBEAT_EVERY_SECONDS = 5.0  # refund activities heartbeat; their heartbeat timeout is a few of these


class PaymentActivities:
    def __init__(
        self, engine: AsyncEngine, gateways: dict[str, PaymentGateway], settings: Settings, client: Client
    ) -> None:
        self.engine = engine
        self.single = autocommit(engine)  # for a lone statement (infra/db.py)
        self.gateways = gateways
        self.settings = settings
        self.client = client

    def _gateway(self, name: str) -> PaymentGateway:
        gateway = self.gateways.get(name)
        if gateway is None:
            raise ApplicationError(f"gateway {name!r} is not configured", non_retryable=True)
        return gateway

    # ---- links ----------------------------------------------------------------------------------------

    @activity.defn
    async def create_payment_link(self, inp: LinkInput) -> Attempt:
        # The tries (LINK_RETRY) are the gateway's: a database restarting meanwhile is waited for
        # here rather than spending them (and failing an order the gateway would have served).
        made = await while_unavailable(lambda: self._stored_link(inp))
        if made is not None:  # made on an earlier try of this activity
            return made
        gateway = self._gateway(inp.gateway)
        base = self.settings.public_base_url
        link = await gateway.create_link(
            LinkRequest(
                gateway_order_id=gateway.make_gateway_order_id(inp.order_code, inp.attempt_no),
                request_id=f"{inp.order_id}-{inp.attempt_no}",
                amount=inp.amount,
                description=inp.description,
                created_at=inp.created_at,
                expires_at=inp.expires_at,
                return_url=f"{base}/api/v1/payments/{inp.gateway}/return",
                ipn_url=f"{base}/api/v1/webhooks/{inp.gateway}",
                client_ip=inp.client_ip,
                items=tuple(
                    LinkItem(name=i.product_name, quantity=i.quantity, price=i.unit_price) for i in inp.items
                ),
            )
        )

        async def store() -> Attempt:
            async with self.single.connect() as conn:
                return await payments.store_link(
                    conn, inp, link.gateway_order_id, link.request_id, link.payment_url
                )

        return await while_unavailable(store)

    async def _stored_link(self, inp: LinkInput) -> Attempt | None:
        async with self.single.connect() as conn:
            return await payments.stored_link(conn, inp.order_id, inp.attempt_no)

    @activity.defn
    async def record_attempt(self, update: AttemptUpdate) -> None:
        async with self.single.connect() as conn:
            await payments.record_attempt(conn, update)

    @activity.defn
    async def cancel_open_links(self, inp: CancelLinksInput) -> int:
        """A link that can still be paid after the order ended invites a late payment. Runs beside
        the order (never on its critical path): a gateway that would not answer is recorded on the
        attempt and the activity fails, so Temporal tries again on the workflow's schedule."""
        cancelled, failures = 0, []
        for attempt in inp.attempts:
            if attempt.status in MONEY_AT_REST:  # its money paid the order or went back
                continue
            try:
                cancelled += await self._gateway(attempt.gateway).cancel(attempt.gateway_order_id, inp.reason)
            except GatewayError as err:
                log.warning("could not cancel %s link %s: %s", attempt.gateway, attempt.gateway_order_id, err)
                failures.append((attempt, f"{type(err).__name__}: {err}"[:300]))
        if failures:
            async with self.engine.begin() as conn:
                for attempt, why in failures:
                    await payments.record_cancel_failure(conn, attempt.gateway, attempt.gateway_order_id, why)
            raise ApplicationError(
                f"{len(failures)} link(s) not cancelled: {failures[0][1]}", type="CANCEL_FAILED"
            )
        return cancelled

    # ---- reconciliation ----------------------------------------------------------------------------

    @activity.defn
    async def reconcile(self, inp: ReconcileInput) -> Reconciled:
        """Before the window closes: every verified notification in the inbox (a signal may have
        been lost while Temporal was unreachable), then each open attempt as the gateway sees it."""
        async with self.single.connect() as conn:
            results = await payments.take_inbox(conn, inp.order_id)
        open_attempts = [a for a in inp.attempts if a.status in MAY_TAKE_MONEY]
        answers = await asyncio.gather(*(self._ask(a) for a in open_attempts))
        # Unknown is not "unpaid": the window waits for a silent gateway (bounded by the grace).
        silent = [
            a.gateway_order_id for a, answer in zip(open_attempts, answers, strict=True) if answer is None
        ]
        spoken = [answer for answer in answers if answer is not None]
        in_flight = bool(silent) or any(a.outcome is PaymentOutcome.PROCESSING for a in spoken)
        return Reconciled(results=results + verdicts(spoken), in_flight=in_flight, unanswered=silent)

    @activity.defn
    async def confirm_attempts(self, inp: ReconcileInput) -> list[PaymentResult]:
        """After a window closed while a gateway would not say how its attempts stood: ask again
        (the workflow's retry policy spaces the tries) until it answers, so money paid in time whose
        notification was lost is still found, and settled as a late payment."""
        answers = await asyncio.gather(*(self._ask(a) for a in inp.attempts))
        if any(answer is None for answer in answers):
            raise ApplicationError("the gateway still gives no answer", type="GATEWAY_SILENT")
        return verdicts([a for a in answers if a is not None])

    async def _ask(self, attempt: Attempt) -> GatewayResult | None:
        """The gateway's view of one attempt within RECONCILE_BUDGET_SECONDS (all open attempts are
        asked at once, under that one budget); None when it could not say: the window then treats the
        attempt as in flight, bounded by the grace like any other. An answer that is not a verdict
        (MoMo 99, a code we do not know: PaymentOutcome.UNKNOWN) is no answer, exactly like silence."""
        try:
            answer = await asyncio.wait_for(
                self._gateway(attempt.gateway).query(attempt.gateway_order_id, created_at=attempt.created_at),
                self.settings.reconcile_budget_seconds,
            )
        except (GatewayError, TimeoutError) as err:
            log.warning("query %s %s gave no answer: %r", attempt.gateway, attempt.gateway_order_id, err)
            return None
        if answer.outcome is PaymentOutcome.UNKNOWN:
            log.warning(
                "query %s %s answered %s: not a verdict",
                attempt.gateway,
                attempt.gateway_order_id,
                answer.result_code,
            )
            return None
        return answer

    @activity.defn
    async def find_attempt(self, ref: AttemptRef) -> Attempt | None:
        async with self.single.connect() as conn:
            return await payments.attempt_by_gateway_id(conn, ref.order_id, ref.gateway, ref.gateway_order_id)

    @activity.defn
    async def flag_for_review(self, inp: ReviewInput) -> bool:
        """Verified money that cannot pay the order: kept on its attempt as `needs_review` with the
        reason, published as an event. Never overrides money already settled (success, refunds).
        True when the attempt changed."""
        async with self.engine.begin() as conn:
            changed = await payments.flag(conn, inp)
        if changed:
            log.error("payment %s %s needs review: %s", inp.gateway, inp.gateway_order_id, inp.reason)
        return changed

    # ---- late payments -----------------------------------------------------------------------------

    @activity.defn
    async def request_late_settlement(self, late: LatePayment) -> None:
        """From a running order workflow: a separate workflow (not a child) settles the money, so
        it outlives the order's and is the same one the webhook would start."""
        await start_late_settlement(self.client, self.settings.temporal_task_queue, late)

    @activity.defn
    async def settle_late_payment(self, late: LatePayment) -> LateOutcome:
        """Decide, once and atomically, what money for an ended order becomes."""
        async with self.engine.begin() as conn:
            link_total = 0
            if is_transfer(late.gateway, late.result_code):
                # The link's settlements one at a time, each reading the link's running total under
                # the lock: a transfer the order already counted through a query's total (its own
                # webhook lost until now) is not counted again.
                await payments.lock_link(conn, late.gateway, late.gateway_order_id)
                link_total = await self._link_total(conn, late)
            row = await payments.lock_for_settlement(conn, late.gateway, late.gateway_order_id)
            if row is None:  # the intake keeps such a verdict in the inbox, unmatched, for a person
                log.error("late payment for no attempt of ours: %s %s", late.gateway, late.gateway_order_id)
                return LateOutcome("needs_review", "no such payment attempt")
            if another_transfer(late, row):
                # A link that takes several transfers, whose money so far is accounted for: what this
                # transfer brings beyond what our rows hold is settled too, on a review row of its own.
                received = max(
                    link_total, await payments.transfers_received(conn, late.gateway, late.gateway_order_id)
                )
                accounted = await payments.link_accounted(conn, late.gateway, late.gateway_order_id)
                new_money = min(late.amount or 0, received - accounted)
                if new_money <= 0:
                    return LateOutcome("already_settled", f"counted already: {accounted} VND of {received}")
                reason = f"transfer of {new_money} VND after the order was {row.order_status}"
                review = ReviewInput.for_result(
                    late, order_id=late.order_id, reason=reason, amount=new_money, surplus=True
                )
                await payments.flag(conn, review)
                return LateOutcome("needs_review", reason)
            if row.status in MONEY_AT_REST:
                return LateOutcome("already_settled", row.status)
            if row.status == AttemptStatus.REFUND_REQUIRED:
                return LateOutcome("refund_required", "recorded earlier")
            problem = money_problem(late.outcome, late.amount, row.amount)
            if problem:
                review = ReviewInput.for_result(
                    late, order_id=late.order_id, reason=problem, amount=late.amount
                )
                await payments.flag(conn, review)
                return LateOutcome("needs_review", problem)
            if (
                late.policy == "accept_if_available"
                and row.order_status == OrderStatus.EXPIRED
                and await inventory.reserve_again(conn, late.order_id)
            ):
                await payments.accept_late(
                    conn, late.order_id, row.attempt_no, late.result_code, late.transaction_id, late.amount
                )
                return LateOutcome("accepted", "every item could be reserved again")
            await payments.require_refund(
                conn,
                late.order_id,
                row.attempt_no,
                late.result_code,
                late.transaction_id,
                late.gateway_order_id,
                late.amount,
            )
        log.error(
            "late payment on order %s via %s %s: refund required",
            late.order_id,
            late.gateway,
            late.gateway_order_id,
        )
        return LateOutcome("refund_required", f"order was {row.order_status}")

    async def _link_total(self, conn: Any, late: LatePayment) -> int:
        """What the gateway says the link has received in all (its running total); no answer is no
        verdict: the settlement fails and is tried again."""
        created_at = await payments.attempt_created_at(conn, late.gateway, late.gateway_order_id)
        if created_at is None:
            return 0
        link = Attempt(
            attempt_no=-1,
            gateway=late.gateway,
            gateway_order_id=late.gateway_order_id,
            request_id="",
            amount=0,
            status=AttemptStatus.PENDING,
            payment_url="",
            created_at=created_at,
        )
        answer = await self._ask(link)
        if answer is None:
            raise ApplicationError("the gateway gives no running total for the link", type="GATEWAY_SILENT")
        if answer.outcome is PaymentOutcome.NOT_FOUND:
            return 0
        paid = (answer.raw or {}).get("amountPaid")
        if isinstance(paid, int):
            return paid
        return (answer.amount or 0) if answer.outcome.carries_money else 0

    @activity.defn
    async def refund_late_payment(self, late: LatePayment) -> LateOutcome:
        """Refund through the gateway exactly once: the idempotency key is the payment's one refund
        key, and the row moves refund_required -> refunded only once the gateway shows the refund.
        While its outcome is unknown the activity fails (REFUND_UNKNOWN) and is asked again."""
        async with self.engine.begin() as conn:
            row = await payments.by_gateway_id(conn, late.gateway, late.gateway_order_id, lock=True)
            if row.status == AttemptStatus.REFUNDED:
                return LateOutcome("refunded", "refunded earlier")
            if row.status != AttemptStatus.REFUND_REQUIRED:
                return LateOutcome("already_settled", row.status)
            await payments.refund_asked(conn, row.id)  # committed before the request leaves
        state, detail = await self._refund(
            row,
            row.transaction_id or late.transaction_id or "",
            f"Refund late payment {row.gateway_order_id}",
        )
        return LateOutcome("refunded" if state is RefundState.REFUNDED else "refund_required", detail)

    @activity.defn
    async def refund_payment(self, req: RefundRequest) -> RefundOutcome:
        """An operator's refund (RefundWorkflow): the same request under the same key as the late
        settlement's, so the gateway refunds one payment once whoever asks, and however often."""
        async with self.engine.begin() as conn:  # waits for an operator's mark-refunded in progress
            row = await payments.lock_payment(conn, uuid.UUID(req.payment_id))
            if row is None:
                return RefundOutcome("not_refundable", "no such payment")
            if row.status == AttemptStatus.REFUNDED:
                return RefundOutcome("refunded", "refunded earlier")
            if row.status != AttemptStatus.REFUND_REQUIRED:
                return RefundOutcome("not_refundable", f"the payment is {row.status}")
            await payments.refund_asked(conn, row.id)  # committed before the request leaves
        state, detail = await self._refund(
            row,
            row.transaction_id or "",
            f"Refund {row.gateway_order_id}",
            requestedBy=req.requested_by,
            auditId=req.audit_id,
        )
        return RefundOutcome("refunded" if state is RefundState.REFUNDED else "refused", detail)

    async def _refund(
        self, row: Any, transaction_id: str, description: str, **event: Any
    ) -> tuple[RefundState, str]:
        """Ask the payment's gateway to refund the money received (payments.refund_amount) under the
        payment's one refund key (payments.gateway_refund_key); the caller has committed
        `refund_asked` first (the desk reads it: the money may be on its way back). REFUNDED: the row
        becomes refunded (and `payment.refunded` is published). REFUSED, or a request our record
        cannot make: nothing went back, `refund_refused` clears the flag so a person may refund by
        hand. UNKNOWN: noted on the row ("asking the gateway"), the flag stays, and REFUND_UNKNOWN is
        raised: the workflow asks again, never a person."""
        gateway = self._gateway(row.gateway)
        try:
            result = await _heartbeating(
                gateway.refund(
                    gateway_order_id=row.gateway_order_id,
                    transaction_id=transaction_id,
                    amount=payments.refund_amount(row),
                    idempotency_key=payments.gateway_refund_key(row),
                    description=description,
                    created_at=row.created_at,
                    paid_at=row.updated_at,
                )
            )
        except ValueError as err:  # our record cannot make a valid refund request: it never left
            return RefundState.REFUSED, await self._refused(row, f"cannot request a refund: {err}")
        if result.state is RefundState.REFUNDED:
            async with self.engine.begin() as conn:
                await payments.mark_refunded(
                    conn,
                    row.id,
                    str(row.order_id),
                    row.gateway_order_id,
                    note=f"refunded through {row.gateway} (refund {result.refund_id or '?'})",
                    **event,
                )
            return RefundState.REFUNDED, result.refund_id or ""
        if result.state is RefundState.REFUSED:
            reason = (
                "no refund API" if result.result_code == "UNSUPPORTED" else f"refused {result.result_code}"
            )
            log.error("refund of %s refused (%s): refund by hand", row.gateway_order_id, reason)
            return RefundState.REFUSED, await self._refused(row, f"{reason} {result.message}".strip())
        note = f"{ASKING}: {row.gateway} has not shown the refund ({result.result_code} {result.message})"
        log.warning("refund of %s: %s", row.gateway_order_id, note)
        await self._note_refund(row, note)
        raise ApplicationError(note, type=REFUND_UNKNOWN)

    async def _refused(self, row: Any, note: str) -> str:
        """A definite no: nothing went back, so a person may return the money by hand."""
        async with self.engine.begin() as conn:
            await payments.refund_refused(conn, row.id, note)
        return note

    async def _note_refund(self, row: Any, note: str) -> str:
        async with self.engine.begin() as conn:
            await payments.note_refund(conn, row.id, note)
        return note


def another_transfer(late: LatePayment, row: Any) -> bool:
    """Late money that is one more transfer to a link whose attempt already holds other money."""
    return (
        is_transfer(late.gateway, late.result_code)
        and row.status in HOLDS_MONEY
        and (row.transaction_id or "") != (late.transaction_id or "")
    )


async def _heartbeating(call: Awaitable[T]) -> T:
    """Await `call`, heartbeating meanwhile so that a dead worker is noticed by its heartbeat
    timeout rather than the whole start-to-close."""
    task = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_SECONDS)
            if done:
                return task.result()
            if activity.in_activity():
                activity.heartbeat()
    finally:
        task.cancel()


def verdicts(answers: list[GatewayResult]) -> list[PaymentResult]:
    """Gateway answers as the workflow's verdicts; "not found" (nobody reached the gateway) says nothing."""
    return [
        PaymentResult(
            gateway=a.gateway,
            gateway_order_id=a.gateway_order_id,
            outcome=a.outcome,
            result_code=a.result_code,
            amount=a.amount,
            transaction_id=a.transaction_id,
        )
        for a in answers
        if a.outcome not in (PaymentOutcome.NOT_FOUND, PaymentOutcome.UNKNOWN)
    ]
