"""Verified gateway verdicts -> the order's workflow, without ever losing one.

Order of work for every notification (webhook or browser return), after the adapter verified its
signature: match it to a payment attempt, check the amount, persist it to the inbox (deduplicated),
then signal the workflow. If the signal cannot be delivered now, the inbox still holds it (the
workflow reads the inbox before it closes the window) and the webhook answers "send it again", so a
verdict for an order that has already ended reaches its late-payment settlement on the retry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.late_payments import start_settlement
from domain.settings import Settings
from domain.temporal import workflow_id
from gateways.base import GatewayResult, PaymentOutcome
from workflows.messages import LatePayment, PaymentResult
from workflows.order import OrderWorkflow

log = logging.getLogger(__name__)
SIGNAL_TIMEOUT_S = 5.0  # gateways want an answer within ~15 s even when Temporal is slow


@dataclass(frozen=True)
class Intake:
    verdict: str  # accepted | duplicate | unknown_order | amount_mismatch | already_confirmed
    order_id: str | None = None
    order_code: int | None = None
    order_status: str | None = None
    # False while Temporal could not be told: the inbox holds the verdict, but only the gateway's
    # retry makes sure it reaches an order that has already ended, so webhooks answer "retry".
    delivered: bool = True


async def take(engine: AsyncEngine, client: Client | None, settings: Settings, result: GatewayResult) -> Intake:
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    """
                    SELECT p.order_id, p.amount, p.status AS attempt_status, o.order_code, o.status
                    FROM payment p JOIN "order" o ON o.id = p.order_id
                    WHERE p.gateway = :gateway AND p.gateway_order_id = :gid
                    """
                ),
                {"gateway": result.gateway, "gid": result.gateway_order_id},
            )
        ).first()
        if row is None:
            log.warning("notification for unknown %s payment %s", result.gateway, result.gateway_order_id)
            return Intake("unknown_order")
        order_id = str(row.order_id)
        if result.amount is not None and result.amount != row.amount:
            log.error(
                "amount mismatch on %s %s: got %s, expected %s",
                result.gateway, result.gateway_order_id, result.amount, row.amount,
            )
            return Intake("amount_mismatch", order_id, row.order_code, row.status)
        inserted = await conn.execute(
            text(
                """
                INSERT INTO payment_notification (id, order_id, gateway, gateway_order_id, dedupe_key,
                    outcome, result_code, amount, transaction_id, payload)
                VALUES (:id, :order_id, :gateway, :gid, :key, :outcome, :rc, :amount, :tx, CAST(:payload AS jsonb))
                ON CONFLICT (dedupe_key) DO NOTHING
                """
            ),
            {
                "id": uuid.uuid4(),
                "order_id": row.order_id,
                "gateway": result.gateway,
                "gid": result.gateway_order_id,
                "key": dedupe_key(result),
                "outcome": result.outcome.value,
                "rc": result.result_code,
                "amount": result.amount,
                "tx": result.transaction_id,
                "payload": _json(result.raw),
            },
        )
        if inserted.rowcount:
            await conn.execute(
                text("UPDATE payment SET raw_notification = CAST(:raw AS jsonb), updated_at = now() "
                     "WHERE gateway = :gateway AND gateway_order_id = :gid"),
                {"raw": _json(result.raw), "gateway": result.gateway, "gid": result.gateway_order_id},
            )
    if row.attempt_status in ("success", "refund_required", "refunded"):
        verdict = "already_confirmed"
    else:
        verdict = "accepted" if inserted.rowcount else "duplicate"
    delivered = client is not None and await deliver(engine, client, settings, order_id, result)
    return Intake(verdict, order_id, row.order_code, row.status, delivered)


async def deliver(
    engine: AsyncEngine, client: Client, settings: Settings, order_id: str, result: GatewayResult
) -> bool:
    """Signal the workflow (or, once it has ended, start the late payment's settlement); mark the
    inbox row delivered. False leaves the row for the workflow's own inbox read at the deadline and
    for the gateway's retry of this notification."""
    handle = client.get_workflow_handle(workflow_id(order_id))
    signal = PaymentResult(
        gateway=result.gateway,
        gateway_order_id=result.gateway_order_id,
        outcome=result.outcome.value,
        result_code=result.result_code,
        amount=result.amount,
        transaction_id=result.transaction_id,
    )
    try:
        try:
            await asyncio.wait_for(handle.signal(OrderWorkflow.payment_result, signal), SIGNAL_TIMEOUT_S)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.wait_for(start_late_settlement(client, settings, order_id, result), SIGNAL_TIMEOUT_S)
    except RPCError as err:
        log.warning("signal to order %s not delivered now (%s); the inbox keeps it", order_id, err.message)
        return False
    except TimeoutError:
        log.warning("signal to order %s timed out; the inbox keeps it", order_id)
        return False
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE payment_notification SET delivered_at = now() WHERE dedupe_key = :key AND delivered_at IS NULL"),
            {"key": dedupe_key(result)},
        )
    return True


async def start_late_settlement(client: Client, settings: Settings, order_id: str, result: GatewayResult) -> None:
    """The order's workflow has ended: money for it is settled by its own workflow, once per
    attempt (the id makes a second start a no-op)."""
    if result.outcome is not PaymentOutcome.SUCCESS:
        return  # a late failure or cancel changes nothing
    late = LatePayment(
        order_id=order_id,
        gateway=result.gateway,
        gateway_order_id=result.gateway_order_id,
        amount=result.amount,
        result_code=result.result_code,
        transaction_id=result.transaction_id,
        policy=settings.late_payment_policy,
        publish_events=bool(settings.event_endpoints),
    )
    await start_settlement(client, settings.temporal_task_queue, late)


async def attempt_created_at(engine: AsyncEngine, result: GatewayResult) -> datetime | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT created_at FROM payment WHERE gateway = :g AND gateway_order_id = :gid"),
                {"g": result.gateway, "gid": result.gateway_order_id},
            )
        ).scalar_one_or_none()


def dedupe_key(result: GatewayResult) -> str:
    # One row per (attempt, verdict, gateway transaction): retries of the same IPN collapse.
    return f"{result.gateway}:{result.gateway_order_id}:{result.outcome.value}:{result.transaction_id or result.result_code}"


def _json(raw: dict[str, Any]) -> str:
    import json

    return json.dumps(raw, ensure_ascii=False, default=str)
