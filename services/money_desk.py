"""The money desk: payments that need a person (refund through the gateway again, or record money
sent back by hand) and stored verdicts to hand to their order again. Each action is audited in the
transaction that makes its change (store/audit.py) and published as an event of its order.

Where a refund runs: in the worker (RefundWorkflow -> the `refund_payment` activity), never here.
The API locks the payment, checks it may be refunded, records the request and starts the workflow;
the gateway is called from an activity with the same idempotency key as the late-payment
settlement's (`rf-<order>-<attempt>`), retried durably if the gateway cannot be reached, and the row
becomes `refunded` only on the gateway's yes. No database lock is held across a gateway call, and an
API process that dies mid-request leaves a refund that still completes (or was never started).

The desk goes through the order: while it is open, its workflow decides its money, so nothing is
settled by hand beside it (ORDER_STILL_OPEN). A refund returns exactly what the gateway took, once.
Money whose gateway refund was asked and not definitively refused is never offered for a refund by
hand (store/payments.py, "a gateway refund asked").
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from domain.gateways import REFUND_API
from domain.ids import late_workflow_id, refund_workflow_id
from domain.messages import RefundOutcome, RefundRequest
from domain.operator_actions import OperatorAction
from domain.statuses import NEEDS_PERSON, AttemptStatus, OrderStatus, PaymentOutcome, values_of
from gateways.base import GatewayResult
from infra.settings import Settings
from services.audit import audit_entry
from services.caller import User
from services.errors import AppError, ErrorCode
from services.payment_intake import deliver
from services.schemas import DeskPaymentOut, NotificationOut, Page
from store import audit, payments
from workflows.refund import RefundWorkflow

REFUND_WAIT_S = 10.0  # then 202: the refund goes on in the worker, the desk shows how it ended


def desk_payment(row: Any) -> DeskPaymentOut:
    return DeskPaymentOut(
        payment_id=row.id,
        order_id=row.order_id,
        order_code=row.order_code,
        order_status=row.order_status,
        attempt_no=row.attempt_no,
        gateway=row.gateway,
        gateway_order_id=row.gateway_order_id,
        transaction_id=row.transaction_id,
        amount=row.amount,
        received_amount=row.received_amount,
        status=row.status,
        reason=_reason(row),
        refund_asked=_gateway_asked(row),
        updated_at=row.updated_at,
    )


def _reason(row: Any) -> str | None:
    if _gateway_asked(row):
        heard = f" (last heard: {row.refund_note})" if row.refund_note else ""
        asked = f"refund asked of {row.gateway}, its outcome not known yet: the gateway is being asked{heard}"
        return asked[:300]
    reason: str | None = row.refund_note or row.review_reason
    return reason


def _gateway_asked(row: Any) -> bool:
    """A gateway refund of this money was asked and not definitively refused: it may have happened."""
    return row.refund_asked_at is not None and row.status in NEEDS_PERSON


async def payments_page(
    conn: AsyncConnection,
    page: int,
    size: int,
    status: str | None,
    gateway: str | None,
    date_from: datetime | None,
    date_to: datetime | None,
) -> Page[DeskPaymentOut]:
    statuses = (status,) if status else values_of(NEEDS_PERSON)
    where = payments.DeskFilter(statuses=statuses, gateway=gateway, date_from=date_from, date_to=date_to)
    total, rows = await payments.desk(conn, where, size, (page - 1) * size)
    return Page(items=[desk_payment(r) for r in rows], page=page, size=size, total=total)


async def read_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> DeskPaymentOut:
    statuses = tuple(s.value for s in AttemptStatus)
    _, rows = await payments.desk(conn, payments.DeskFilter(statuses, payment_id=payment_id), 1, 0)
    return desk_payment(rows[0])


async def _locked(conn: AsyncConnection, payment_id: uuid.UUID) -> Any:
    """The payment, locked, when its money waits for a person; else the refusal."""
    row = await payments.lock_payment(conn, payment_id)
    if row is None:
        raise AppError(ErrorCode.PAYMENT_NOT_FOUND, f"Payment {payment_id} not found")
    if row.status not in NEEDS_PERSON:
        raise AppError(
            ErrorCode.NOT_REFUNDABLE,
            f"Payment {payment_id} is {row.status}: only refund_required or needs_review money",
        )
    if not OrderStatus(row.order_status).is_terminal:  # its workflow still decides this money
        raise AppError(
            ErrorCode.ORDER_STILL_OPEN,
            f"Order {row.order_code} is still open ({row.order_status}): wait for its window to close, "
            "or cancel or expire the order first",
        )
    return row


async def request_refund(
    conn: AsyncConnection, client: Client, settings: Settings, user: User, payment_id: uuid.UUID, note: str
) -> tuple[RefundOutcome | None, DeskPaymentOut]:
    """Record the request and start the refund in the worker; wait a little for its outcome (None:
    still under way). Asking twice is safe: one workflow at a time, one refund key per payment."""
    async with conn.begin():
        row = await _locked(conn, payment_id)
        if row.gateway not in REFUND_API:
            raise AppError(
                ErrorCode.REFUND_NOT_SUPPORTED,
                f"{row.gateway} has no refund API: send the money back by bank transfer, then mark it refunded",
            )
        amount = payments.refund_amount(row)  # what the gateway took, however often asked
        entry = audit_entry(
            user,
            OperatorAction.PAYMENT_REFUND,
            note,
            order_id=row.order_id,
            payment_id=row.id,
            detail={
                "gateway": row.gateway,
                "gatewayOrderId": row.gateway_order_id,
                "amount": amount,
                "status": row.status,
            },
        )
        await audit.record(
            conn, entry, "payment.refund_requested", gatewayOrderId=row.gateway_order_id, amount=amount
        )
        await payments.ask_refund(conn, row.id)  # committed before the workflow can ask the gateway
    request = RefundRequest(payment_id=str(row.id), amount=amount, requested_by=user.id, audit_id=entry.id)
    try:
        handle = await client.start_workflow(
            RefundWorkflow.run,
            request,
            id=refund_workflow_id(str(row.id)),
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # a concurrent request joins it
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,  # a later one may ask again
        )
        outcome: RefundOutcome | None = await asyncio.wait_for(handle.result(), REFUND_WAIT_S)
    except TimeoutError:
        outcome = None
    return outcome, await read_payment(conn, payment_id)


@dataclass(frozen=True)
class Refund:
    payment: DeskPaymentOut
    done: bool  # refunded; False: still under way, or its outcome not known yet (it may have happened)


async def refund(
    conn: AsyncConnection, client: Client, settings: Settings, user: User, payment_id: uuid.UUID, note: str
) -> Refund:
    """`request_refund`, its outcome read: refunded, still under way, or refused (NOT_REFUNDABLE by
    the worker's own check, REFUND_FAILED on the gateway's definite no: its words are the reason)."""
    outcome, payment = await request_refund(conn, client, settings, user, payment_id, note)
    if outcome is not None and outcome.state == "not_refundable":
        raise AppError(ErrorCode.NOT_REFUNDABLE, f"Not refunded: {outcome.detail}")
    if outcome is not None and outcome.state == "refused":
        raise AppError(ErrorCode.REFUND_FAILED, f"{payment.gateway} did not refund: {outcome.detail}")
    return Refund(payment=payment, done=outcome is not None and outcome.state == "refunded")


async def _refund_running(client: Client, row: Any) -> str | None:
    """The workflow still refunding this payment through its gateway, if any: money sent back by
    hand meanwhile would go back twice."""
    for workflow_id in (refund_workflow_id(str(row.id)), late_workflow_id(row.gateway, row.gateway_order_id)):
        try:
            described = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                continue
            raise  # Temporal unreachable: TEMPORAL_UNAVAILABLE (api/errors.py)
        if described.status == WorkflowExecutionStatus.RUNNING:
            return workflow_id
    return None


async def mark_refunded(
    conn: AsyncConnection, client: Client, user: User, payment_id: uuid.UUID, reference: str, note: str
) -> DeskPaymentOut:
    """The money went back outside the gateway (a bank transfer): `refunded`, with its reference.
    Refused while the gateway refund may still happen (REFUND_IN_PROGRESS); the row stays locked
    from that check to the commit, and a refund's activity reads it locked before asking."""
    async with conn.begin():
        row = await _locked(conn, payment_id)
        running = await _refund_running(client, row)
        if running is not None:
            raise AppError(
                ErrorCode.REFUND_IN_PROGRESS,
                f"A gateway refund of this payment is still being tried (workflow {running}): wait for it",
            )
        if _gateway_asked(row):
            raise AppError(
                ErrorCode.REFUND_OUTCOME_UNKNOWN,
                f"A refund of this payment was asked of {row.gateway} and it has not said no: the money may "
                "already be on its way back. Refund it through the gateway again (one refund key: it cannot "
                "go twice) until the gateway answers",
            )
        entry = audit_entry(
            user,
            OperatorAction.PAYMENT_MARK_REFUNDED,
            note,
            order_id=row.order_id,
            payment_id=row.id,
            detail={"reference": reference, "amount": payments.refund_amount(row), "status": row.status},
        )
        await audit.record(
            conn,
            entry,
            "payment.refunded",
            gatewayOrderId=row.gateway_order_id,
            manual=True,
            reference=reference,
        )
        await payments.mark_refunded(
            conn,
            row.id,
            str(row.order_id),
            row.gateway_order_id,
            note=f"refunded by hand: {reference}"[:300],
            from_statuses=values_of(NEEDS_PERSON),
            publish=False,
        )
    return await read_payment(conn, payment_id)


# ---- stored verdicts ---------------------------------------------------------------------------------


def notification_out(row: Any) -> NotificationOut:
    return NotificationOut(
        notification_id=row.id,
        order_id=row.order_id,
        order_code=row.order_code,
        gateway=row.gateway,
        gateway_order_id=row.gateway_order_id,
        outcome=row.outcome,
        result_code=row.result_code,
        amount=row.amount,
        transaction_id=row.transaction_id,
        received_at=row.received_at,
        delivered_at=row.delivered_at,
    )


async def notifications_page(
    conn: AsyncConnection, undelivered: bool, page: int, size: int
) -> Page[NotificationOut]:
    total, rows = await payments.inbox_page(conn, undelivered, size, (page - 1) * size)
    return Page(items=[notification_out(r) for r in rows], page=page, size=size, total=total)


async def redeliver(
    engine: AsyncEngine,
    conn: AsyncConnection,
    client: Client,
    settings: Settings,
    user: User,
    notification_id: uuid.UUID,
    note: str,
) -> NotificationOut:
    """Hand a stored verdict to its order's workflow, or to the late-payment settlement once that
    has finished, as the webhook would have (services/payment_intake.deliver): the workflow applies a
    verdict once, a settlement runs once per attempt, so handing one on again is safe."""
    row = await payments.inbox_row(conn, notification_id)
    if row is None:
        raise AppError(ErrorCode.NOTIFICATION_NOT_FOUND, f"Notification {notification_id} not found")
    if row.order_id is None:
        raise AppError(
            ErrorCode.NOTIFICATION_UNMATCHED,
            f"{row.gateway} {row.gateway_order_id} matches no payment of ours: nothing to deliver it to",
        )
    attempt = await payments.by_gateway_id(conn, row.gateway, row.gateway_order_id)
    await conn.rollback()  # no pooled transaction held while Temporal is asked
    result = GatewayResult(
        gateway=row.gateway,
        gateway_order_id=row.gateway_order_id,
        outcome=PaymentOutcome(row.outcome),
        result_code=row.result_code,
        amount=row.amount,
        transaction_id=row.transaction_id,
        raw=row.payload,
    )
    entry = audit_entry(
        user,
        OperatorAction.NOTIFICATION_REDELIVER,
        note,
        order_id=row.order_id,
        notification_id=row.id,
        payment_id=attempt.id if attempt is not None else None,
        detail={
            "gateway": row.gateway,
            "gatewayOrderId": row.gateway_order_id,
            "outcome": row.outcome,
            "deliveredBefore": row.delivered_at is not None,
        },
    )
    if not await deliver(engine, client, settings, str(row.order_id), result, entry):
        # Not an RPCError reaching the handler: deliver() caught it and kept the verdict in the inbox.
        raise AppError(
            ErrorCode.TEMPORAL_UNAVAILABLE, "The order's workflow could not be told now: try again"
        )
    again = await payments.inbox_row(conn, notification_id)
    return notification_out(again)
