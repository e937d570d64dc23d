"""Verified gateway verdicts -> the order's workflow, without ever losing one.

Order of work for every notification (webhook or browser return), after the adapter verified its
signature: match it to a payment attempt, persist it to the inbox (deduplicated; money that cannot
pay the order, by domain.money, is flagged `needs_review` in the same transaction; a PayOS transfer
is one money event of its own, judged with the link's other transfers), then signal the
workflow, unless this very verdict was handed on before. If the signal cannot be delivered now, the
inbox still holds it (the workflow reads the inbox before it closes the window) and the webhook
answers "send it again", so a verdict for an order that has already ended reaches its late-payment
settlement on the retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.ids import workflow_id
from domain.messages import AuditEntry, LatePayment, PaymentResult, ReviewInput
from domain.money import money_problem
from domain.statuses import HOLDS_MONEY, SETTLED_MONEY, OrderStatus
from domain.verdicts import is_transfer
from gateways.base import GatewayError, GatewayResult, PaymentGateway
from infra.settings import Settings
from infra.temporal import start_late_settlement
from store import audit, payments
from workflows.order import OrderWorkflow

log = logging.getLogger(__name__)
SIGNAL_TIMEOUT_S = 5.0  # gateways want an answer within ~15 s even when Temporal is slow


class Verdict(StrEnum):
    """What the intake made of a verified message (each gateway answers it in its own dialect)."""

    ACCEPTED = "accepted"  # new, stored, handed on
    DUPLICATE = "duplicate"  # seen before
    UNKNOWN_ORDER = "unknown_order"  # no attempt of ours (money in it is kept, unmatched)
    AMOUNT_MISMATCH = "amount_mismatch"  # money that cannot pay the order: kept, needs_review
    ALREADY_CONFIRMED = "already_confirmed"  # the attempt's money is settled already


@dataclass(frozen=True)
class Intake:
    verdict: Verdict
    order_id: str | None = None
    order_code: int | None = None
    order_status: str | None = None
    # False while Temporal could not be told: the inbox holds the verdict, but only the gateway's
    # retry makes sure it reaches an order that has already ended, so webhooks answer "retry".
    delivered: bool = True


async def take(
    engine: AsyncEngine, client: Client | None, settings: Settings, result: GatewayResult
) -> Intake:
    """Store a verified verdict (deduplicated) and hand it to its order. A replay of one already
    handed on is answered from the inbox without signalling again, so however often a gateway (or
    anyone holding a signed message) sends it, the order's history does not grow."""
    verdict, key, payload = as_verdict(result), dedupe_key(result), payments.raw(result.raw)
    async with engine.begin() as conn:
        matched = await payments.match(conn, result.gateway, result.gateway_order_id)
        if matched is None:
            if result.outcome.carries_money:  # verified money for no attempt of ours: keep it for a person
                await payments.store_verdict(conn, None, verdict, key, payload)
                log.error("verified %s payment for unknown %s", result.gateway, result.gateway_order_id)
            else:
                log.warning("notification for unknown %s payment %s", result.gateway, result.gateway_order_id)
            return Intake(Verdict.UNKNOWN_ORDER)
        inserted, waiting = await payments.store_verdict(conn, matched.order_id, verdict, key, payload)
        received = result.amount
        if is_transfer(
            result.gateway, result.result_code
        ):  # what the link has received, all transfers counted
            received = await payments.transfers_received(conn, result.gateway, result.gateway_order_id)
        problem = money_problem(result.outcome, received, matched.amount)
        # One more transfer to an ended order's link that holds money already: not the attempt's to
        # restate; its late settlement keeps it on a row of its own (activities/payments.py).
        beside = (
            is_transfer(result.gateway, result.result_code)
            and OrderStatus(matched.order_status).is_terminal
            and matched.attempt_status in HOLDS_MONEY
        )
        if problem and inserted and not beside:
            # Flagged here too, in the inbox's transaction: kept even if the order never hears of it.
            review = ReviewInput.for_result(
                result, order_id=matched.order_id, reason=problem, amount=received
            )
            await payments.flag(conn, review)
    if matched.attempt_status in SETTLED_MONEY:
        outcome = Verdict.ALREADY_CONFIRMED
    elif problem:
        outcome = Verdict.AMOUNT_MISMATCH
    else:
        outcome = Verdict.ACCEPTED if inserted else Verdict.DUPLICATE
    delivered = not waiting or (
        client is not None and await deliver(engine, client, settings, matched.order_id, result)
    )
    return Intake(
        verdict=outcome,
        order_id=matched.order_id,
        order_code=matched.order_code,
        order_status=matched.order_status,
        delivered=delivered,
    )


def as_verdict(result: GatewayResult) -> PaymentResult:
    return PaymentResult(
        gateway=result.gateway,
        gateway_order_id=result.gateway_order_id,
        outcome=result.outcome,
        result_code=result.result_code,
        amount=result.amount,
        transaction_id=result.transaction_id,
    )


def dedupe_key(result: GatewayResult) -> str:
    return payments.dedupe_key(
        result.gateway,
        result.gateway_order_id,
        result.outcome.value,
        result.transaction_id,
        result.result_code,
        result.amount,
    )


async def deliver(
    engine: AsyncEngine,
    client: Client,
    settings: Settings,
    order_id: str,
    result: GatewayResult,
    entry: AuditEntry | None = None,
) -> bool:
    """Signal the workflow (or, once it has ended, start the late payment's settlement); mark the
    inbox row delivered. False leaves the row for the workflow's own inbox read at the deadline and
    for the gateway's retry of this notification. An operator's redelivery (`entry`) is audited in
    the transaction that marks the row, once the verdict was handed on."""
    handle = client.get_workflow_handle(workflow_id(order_id))
    try:
        try:
            await asyncio.wait_for(
                handle.signal(OrderWorkflow.payment_result, as_verdict(result)), SIGNAL_TIMEOUT_S
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.wait_for(settle_late(client, settings, order_id, result), SIGNAL_TIMEOUT_S)
    except RPCError as err:
        log.warning("signal to order %s not delivered now (%s); the inbox keeps it", order_id, err.message)
        return False
    except TimeoutError:
        log.warning("signal to order %s timed out; the inbox keeps it", order_id)
        return False
    async with engine.begin() as conn:
        if entry is not None:
            await audit.record(
                conn,
                entry,
                "payment.verdict_redelivered",
                gatewayOrderId=result.gateway_order_id,
                outcome=result.outcome.value,
            )
        await payments.mark_delivered(conn, dedupe_key(result))
    return True


async def settle_late(client: Client, settings: Settings, order_id: str, result: GatewayResult) -> None:
    """The order's workflow has ended: money for it is settled by its own workflow, once per
    attempt, or per transfer for PayOS (the id makes a second start a no-op)."""
    if not result.outcome.carries_money:
        return  # a late failure or cancel changes nothing
    late = LatePayment(
        order_id=order_id,
        gateway=result.gateway,
        gateway_order_id=result.gateway_order_id,
        amount=result.amount,
        result_code=result.result_code,
        transaction_id=result.transaction_id,
        policy=settings.late_payment_policy,
        outcome=result.outcome,
    )
    await start_late_settlement(client, settings.temporal_task_queue, late)


class GatewayQueries:
    """Asks a gateway about one attempt on behalf of a message that cannot say the attempt's state
    itself: an unsigned browser return (PayOS signs nothing there) or a PayOS webhook (it reports one
    transfer; the link's state says whether the order is paid). At most once per attempt and prompt
    every `every_s` per process, so a flood of returns or replays shares one answer and never becomes
    a flood of gateway queries. Only the gateway's own answer is taken in, never a return's
    query parameters."""

    def __init__(self, every_s: float = 5.0, keep: int = 10_000) -> None:
        self.every_s, self.keep = every_s, keep
        self.answers: dict[tuple[str, str, str], tuple[float, asyncio.Future[GatewayResult | None]]] = {}

    async def ask(
        self, engine: AsyncEngine, gateway: PaymentGateway, gateway_order_id: str, since: str = ""
    ) -> GatewayResult | None:
        """The gateway's verdict, or None when the attempt is not ours or the gateway did not answer.
        `since`: what prompted the question (a transfer's reference): a new one asks afresh."""
        now = time.monotonic()
        key = (gateway.name, gateway_order_id, since)
        asked = self.answers.get(key)
        if asked is not None and now - asked[0] < self.every_s:
            return await asyncio.shield(asked[1])
        if len(self.answers) >= self.keep:
            self.answers = {k: v for k, v in self.answers.items() if now - v[0] < self.every_s}
        answer = asyncio.ensure_future(self._query(engine, gateway, gateway_order_id))
        self.answers[key] = (now, answer)
        return await asyncio.shield(answer)

    async def _query(
        self, engine: AsyncEngine, gateway: PaymentGateway, gateway_order_id: str
    ) -> GatewayResult | None:
        async with engine.connect() as conn:
            created_at = await payments.attempt_created_at(conn, gateway.name, gateway_order_id)
        if created_at is None:
            return None  # not one of our attempts: nothing to ask about
        try:
            return await gateway.query(gateway_order_id, created_at=created_at)
        except GatewayError as err:
            log.warning("could not confirm %s return for %s: %s", gateway.name, gateway_order_id, err)
            return None
