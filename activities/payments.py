"""Gateway-facing activities: payment links, reconciliation before a window closes, cancelling
links that must not be paid any more, and settling late payments (accept or refund, once)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.events import record_event
from activities.inventory import Rejected, reserve
from activities.late_payments import start_settlement
from domain.db import while_unavailable
from domain.money import money_problem
from domain.settings import Settings
from gateways.base import (
    GatewayError,
    GatewayResult,
    LinkItem,
    LinkRequest,
    PaymentGateway,
    PaymentLink,
    PaymentOutcome,
)
from workflows.messages import (
    Attempt,
    AttemptUpdate,
    CancelLinksInput,
    LateOutcome,
    LatePayment,
    LinkInput,
    OrderLine,
    PaymentResult,
    Reconciled,
    ReconcileInput,
    ReviewInput,
)

log = logging.getLogger(__name__)
SETTLED = ("success", "refunded")
# Attempts the reconciliation asks their gateway about: still open, or holding money that may yet
# become a full payment (a PayOS transfer that was short).
RECONCILED_STATUSES = ("pending", "needs_review")
CANCEL_FAILED_SQL = text(
    "UPDATE payment SET cancel_failures = cancel_failures + 1, cancel_error = :why, updated_at = now() "
    "WHERE gateway = :g AND gateway_order_id = :gid"
)
FLAG_SQL = text(
    """
    WITH p AS (
        UPDATE payment SET status = 'needs_review', review_reason = :reason, received_amount = :amount,
            result_code = :rc, transaction_id = coalesce(:tx, transaction_id), updated_at = now()
        WHERE gateway = :gateway AND gateway_order_id = :gid
            AND status NOT IN ('success', 'refund_required', 'refunded')
            AND (status <> 'needs_review' OR review_reason IS DISTINCT FROM :reason)
        RETURNING order_id
    )
    SELECT p.order_id, pg_notify('order_events', CAST(p.order_id AS text)) FROM p
    """
)


async def flag_payment(conn: Any, inp: ReviewInput) -> bool:
    """The one place money goes to review (the workflow's activity and the late settlement)."""
    row = (
        await conn.execute(
            FLAG_SQL,
            {
                "reason": inp.reason[:300],
                "amount": inp.amount,
                "rc": inp.result_code,
                "tx": inp.transaction_id,
                "gateway": inp.gateway,
                "gid": inp.gateway_order_id,
            },
        )
    ).first()
    if row is None:
        return False
    await record_event(
        conn,
        str(row.order_id),
        "payment.needs_review",
        gatewayOrderId=inp.gateway_order_id,
        reviewReason=inp.reason,
        receivedAmount=inp.amount,
    )
    log.error("payment %s %s needs review: %s", inp.gateway, inp.gateway_order_id, inp.reason)
    return True


class PaymentActivities:
    def __init__(
        self, engine: AsyncEngine, gateways: dict[str, PaymentGateway], settings: Settings, client: Client
    ) -> None:
        self.engine = engine
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
        row = await while_unavailable(lambda: self._stored_link(inp))
        if row is not None:  # made on an earlier try of this activity
            return attempt_from_row(row)
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
                items=tuple(LinkItem(i.product_name, i.quantity, i.unit_price) for i in inp.items),
            )
        )
        return attempt_from_row(await while_unavailable(lambda: self._store_link(inp, link)))

    async def _stored_link(self, inp: LinkInput) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    text("SELECT * FROM payment WHERE order_id = :id AND attempt_no = :n"),
                    {"id": inp.order_id, "n": inp.attempt_no},
                )
            ).first()

    async def _store_link(self, inp: LinkInput, link: PaymentLink) -> Any:
        async with self.engine.begin() as conn:
            return (
                await conn.execute(
                    text(
                        """
                        WITH ins AS (
                            INSERT INTO payment (id, order_id, attempt_no, gateway, gateway_order_id,
                                request_id, amount, status, payment_url, expires_at, created_at)
                            VALUES (:pid, :id, :n, :gateway, :gid, :rid, :amount, 'pending', :url, :exp, :at)
                            RETURNING *
                        ), sess AS (
                            UPDATE order_session SET payment_attempts = GREATEST(payment_attempts, :n),
                                last_payment_attempt = :at, updated_at = now()
                            WHERE order_id = :id
                        ), announce AS (
                            SELECT pg_notify('order_events', CAST(:id AS text))
                        )
                        SELECT ins.* FROM ins, announce
                        """
                    ),
                    {
                        "pid": uuid.uuid4(),
                        "id": inp.order_id,
                        "n": inp.attempt_no,
                        "gateway": inp.gateway,
                        "gid": link.gateway_order_id,
                        "rid": link.request_id,
                        "amount": inp.amount,
                        "url": link.payment_url,
                        "exp": inp.expires_at,
                        "at": inp.created_at,
                    },
                )
            ).one()

    @activity.defn
    async def record_attempt(self, update: AttemptUpdate) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    """
                    WITH p AS (
                        UPDATE payment SET status = :status, result_code = :rc,
                            transaction_id = coalesce(:tx, transaction_id), updated_at = now()
                        WHERE order_id = :id AND attempt_no = :n AND status = 'pending'
                    )
                    SELECT pg_notify('order_events', CAST(:id AS text))
                    """
                ),
                {
                    "status": update.status,
                    "rc": update.result_code,
                    "tx": update.transaction_id,
                    "id": update.order_id,
                    "n": update.attempt_no,
                },
            )

    @activity.defn
    async def cancel_open_links(self, inp: CancelLinksInput) -> int:
        """A link that can still be paid after the order ended invites a late payment. Runs beside
        the order (never on its critical path): a gateway that would not answer is recorded on the
        attempt and the activity fails, so Temporal tries again on the workflow's schedule."""
        cancelled, failures = 0, []
        for attempt in inp.attempts:
            if attempt.status in SETTLED:
                continue
            try:
                cancelled += await self._gateway(attempt.gateway).cancel(attempt.gateway_order_id, inp.reason)
            except GatewayError as err:
                log.warning("could not cancel %s link %s: %s", attempt.gateway, attempt.gateway_order_id, err)
                failures.append((attempt, f"{type(err).__name__}: {err}"[:300]))
        if failures:
            async with self.engine.begin() as conn:
                for attempt, why in failures:
                    await conn.execute(CANCEL_FAILED_SQL, {"g": attempt.gateway, "gid": attempt.gateway_order_id, "why": why})
            raise ApplicationError(f"{len(failures)} link(s) not cancelled: {failures[0][1]}", type="CANCEL_FAILED")
        return cancelled

    # ---- reconciliation ----------------------------------------------------------------------------

    @activity.defn
    async def reconcile(self, inp: ReconcileInput) -> Reconciled:
        """Before the window closes: every verified notification in the inbox (a signal may have
        been lost while Temporal was unreachable), then each open attempt as the gateway sees it."""
        async with self.engine.begin() as conn:
            inbox = (
                await conn.execute(
                    text(
                        """
                        UPDATE payment_notification SET delivered_at = coalesce(delivered_at, now())
                        WHERE order_id = :id RETURNING gateway, gateway_order_id, outcome, result_code,
                            amount, transaction_id
                        """
                    ),
                    {"id": inp.order_id},
                )
            ).all()
        results = [
            PaymentResult(r.gateway, r.gateway_order_id, r.outcome, r.result_code, r.amount, r.transaction_id)
            for r in inbox
        ]
        open_attempts = [a for a in inp.attempts if a.status in RECONCILED_STATUSES]
        answers = await asyncio.gather(*(self._ask(a) for a in open_attempts))
        # Unknown is not "unpaid": the window waits for a silent gateway (bounded by the grace).
        silent = [a.gateway_order_id for a, answer in zip(open_attempts, answers, strict=True) if answer is None]
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
        attempt as in flight, bounded by the grace like any other."""
        try:
            return await asyncio.wait_for(
                self._gateway(attempt.gateway).query(attempt.gateway_order_id, created_at=attempt.created_at),
                self.settings.reconcile_budget_seconds,
            )
        except (GatewayError, TimeoutError) as err:
            log.warning("query %s %s gave no answer: %r", attempt.gateway, attempt.gateway_order_id, err)
            return None

    @activity.defn
    async def flag_for_review(self, inp: ReviewInput) -> bool:
        """Verified money that cannot pay the order: kept on its attempt as `needs_review` with the
        reason, published as an event. Never overrides money already settled (success, refunds).
        True when the attempt changed."""
        async with self.engine.begin() as conn:
            return await flag_payment(conn, inp)

    # ---- late payments -----------------------------------------------------------------------------

    @activity.defn
    async def request_late_settlement(self, late: LatePayment) -> None:
        """From a running order workflow: a separate workflow (not a child) settles the money, so
        it outlives the order's and is the same one the webhook would start."""
        await start_settlement(self.client, self.settings.temporal_task_queue, late)

    @activity.defn
    async def settle_late_payment(self, late: LatePayment) -> LateOutcome:
        """Decide, once and atomically, what money for an ended order becomes."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        """
                        SELECT o.status AS order_status, o.grand_total, p.attempt_no, p.status, p.amount
                        FROM payment p JOIN "order" o ON o.id = p.order_id
                        WHERE p.gateway = :gateway AND p.gateway_order_id = :gid
                        FOR UPDATE OF o, p
                        """
                    ),
                    {"gateway": late.gateway, "gid": late.gateway_order_id},
                )
            ).first()
            if row is None:  # the intake keeps such a verdict in the inbox, unmatched, for a person
                log.error("late payment for no attempt of ours: %s %s", late.gateway, late.gateway_order_id)
                return LateOutcome("needs_review", "no such payment attempt")
            if row.status in SETTLED:
                return LateOutcome("already_settled", row.status)
            if row.status == "refund_required":
                return LateOutcome("refund_required", "recorded earlier")
            problem = money_problem(late.outcome, late.amount, row.amount)
            if problem:
                review = ReviewInput(
                    late.order_id, late.gateway, late.gateway_order_id, problem, late.amount, late.result_code,
                    late.transaction_id,
                )  # fmt: skip
                await flag_payment(conn, review)
                return LateOutcome("needs_review", problem)
            params = {"id": late.order_id, "n": row.attempt_no, "rc": late.result_code, "tx": late.transaction_id}
            if (
                late.policy == "accept_if_available"
                and row.order_status == "expired"
                and await _reserve_again(conn, late.order_id)
            ):
                await conn.execute(
                    text(
                        """
                        WITH o AS (
                            UPDATE "order" SET status = 'paid', end_reason = 'late_payment_accepted',
                                late_payment = true, updated_at = now(), ended_at = now()
                            WHERE id = :id AND status = 'expired' RETURNING id
                        ), s AS (
                            UPDATE order_session SET status = 'completed', updated_at = now() WHERE order_id = :id
                        )
                        UPDATE payment SET status = 'success', result_code = :rc,
                            transaction_id = coalesce(:tx, transaction_id), updated_at = now()
                        WHERE order_id = :id AND attempt_no = :n
                        """
                    ),
                    params,
                )
                await record_event(conn, late.order_id, "order.paid", latePayment=True)
                return LateOutcome("accepted", "every item could be reserved again")
            await conn.execute(
                text(
                    """
                    WITH o AS (
                        UPDATE "order" SET late_payment = true, updated_at = now() WHERE id = :id
                    )
                    UPDATE payment SET status = 'refund_required', result_code = :rc,
                        transaction_id = coalesce(:tx, transaction_id), updated_at = now()
                    WHERE order_id = :id AND attempt_no = :n
                    """
                ),
                params,
            )
            await record_event(conn, late.order_id, "payment.refund_required", gatewayOrderId=late.gateway_order_id)
        log.error("late payment on order %s via %s %s: refund required", late.order_id, late.gateway, late.gateway_order_id)
        return LateOutcome("refund_required", f"order was {row.order_status}")

    @activity.defn
    async def refund_late_payment(self, late: LatePayment) -> LateOutcome:
        """Refund through the gateway exactly once: the idempotency key is the order + attempt, and
        the row moves refund_required -> refunded only after the gateway confirmed."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT * FROM payment WHERE gateway = :g AND gateway_order_id = :gid"),
                    {"g": late.gateway, "gid": late.gateway_order_id},
                )
            ).one()
        if row.status == "refunded":
            return LateOutcome("refunded", "refunded earlier")
        if row.status != "refund_required":
            return LateOutcome("already_settled", row.status)
        try:
            result = await self._gateway(late.gateway).refund(
                gateway_order_id=row.gateway_order_id,
                transaction_id=row.transaction_id or late.transaction_id or "",
                amount=row.amount,
                idempotency_key=f"rf-{row.order_id}-{row.attempt_no}",
                description=f"Refund late payment {row.gateway_order_id}",
                created_at=row.created_at,
                paid_at=row.updated_at,
            )
        except ValueError as err:  # our record cannot make a valid refund request: a person must look
            return LateOutcome("refund_required", f"cannot request a refund: {err}")
        if not result.ok:
            # The gateway answered and said no: asking again will not change its mind. Transport
            # failures (GatewayError) are retried by the activity's policy instead.
            reason = "no refund API" if result.result_code == "UNSUPPORTED" else f"refused {result.result_code}"
            log.error("refund of %s not done (%s): refund by hand", row.gateway_order_id, reason)
            return LateOutcome("refund_required", f"{reason} {result.message}".strip())
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE payment SET status = 'refunded', updated_at = now() "
                    "WHERE id = :id AND status = 'refund_required'"
                ),
                {"id": row.id},
            )
            await record_event(conn, str(row.order_id), "payment.refunded", gatewayOrderId=row.gateway_order_id)
        return LateOutcome("refunded", result.refund_id or "")


async def _reserve_again(conn: Any, order_id: str) -> bool:
    items = (
        await conn.execute(text("SELECT variant_id, quantity FROM order_item WHERE order_id = :id"), {"id": order_id})
    ).all()
    try:
        async with conn.begin_nested():
            await reserve(conn, [OrderLine(str(i.variant_id), i.quantity) for i in items])
    except Rejected:
        return False
    return True


def verdicts(answers: list[GatewayResult]) -> list[PaymentResult]:
    """Gateway answers as the workflow's verdicts; "not found" (nobody reached the gateway) says nothing."""
    return [
        PaymentResult(a.gateway, a.gateway_order_id, a.outcome.value, a.result_code, a.amount, a.transaction_id)
        for a in answers
        if a.outcome is not PaymentOutcome.NOT_FOUND
    ]


def attempt_from_row(row: Any) -> Attempt:
    return Attempt(
        attempt_no=row.attempt_no,
        gateway=row.gateway,
        gateway_order_id=row.gateway_order_id,
        request_id=row.request_id,
        amount=row.amount,
        status=row.status,
        payment_url=row.payment_url,
        created_at=row.created_at,
        result_code=row.result_code,
        transaction_id=row.transaction_id,
    )
