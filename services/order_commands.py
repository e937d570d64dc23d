"""Commands on orders: each goes to the order's workflow (start, validated updates), which is
the only writer of an order's state. Workflow refusals become the catalogue's codes here
(services/errors.py); Temporal being unreachable (RPCError) is left to the transport's handler."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain import search
from domain.ids import order_id_for, workflow_id
from domain.messages import (
    CancelRequest,
    Creation,
    ExpireRequest,
    ExtendRequest,
    OrderInput,
    OrderLine,
    Receiver,
    RetryRequest,
)
from domain.operator_actions import OperatorAction
from domain.statuses import OrderStatus
from infra.db import autocommit
from infra.settings import Settings
from services.audit import audit_entry
from services.caller import User
from services.errors import AppError, ErrorCode
from services.order_reads import find_order, order_detail, order_from_creation, session_out
from services.schemas import OrderCreate, OrderOut, RetryOut, SessionOut
from workflows.order import OrderWorkflow

T = TypeVar("T")


def request_hash(body: OrderCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_input(
    settings: Settings, user: User, body: OrderCreate, order_id: str, client_ip: str
) -> OrderInput:
    order_type = body.order_type or "normal"
    if order_type != "normal" and order_type not in settings.durations_by_type:
        known = ", ".join(sorted({"normal", *settings.durations_by_type}))
        raise AppError(ErrorCode.INVALID_ORDER_TYPE, f"Unknown orderType {order_type!r}; known: {known}")
    return OrderInput(
        order_id=order_id,
        customer_id=user.id,
        lines=[OrderLine(variant_id=str(i.variant_id), quantity=i.quantity) for i in body.items],
        gateway=body.gateway,
        order_type=order_type,
        receiver=Receiver(
            name=body.receiver.name,
            phone=body.receiver.phone,
            address=body.receiver.address,
            email=body.receiver.email,
        ),
        duration_minutes=settings.window_minutes(order_type),
        max_attempts=settings.order_session_max_attempts,
        reminder_minutes=settings.order_session_reminder_minutes,
        grace_minutes=settings.payment_in_flight_grace_minutes,
        request_hash=request_hash(body),
        client_ip=client_ip,
        late_payment_policy=settings.late_payment_policy,
    )


@dataclass(frozen=True)
class Placed:
    order: OrderOut
    replay: bool  # True: an earlier request with this Idempotency-Key made it


async def place_order(
    engine: AsyncEngine,
    client: Client,
    settings: Settings,
    user: User,
    body: OrderCreate,
    *,
    idempotency_key: str | None,
    client_ip: str,
) -> Placed:
    """Create the order (its workflow, one round trip), or answer the one this key made. No pooled
    connection is held while the workflow works: under load that wait is most of a create, and
    holding one would cap concurrent creates at the pool's size."""
    order_id = order_id_for(user.id, idempotency_key)
    inp = order_input(settings, user, body, order_id, client_ip)
    if idempotency_key is not None:
        async with autocommit(engine).connect() as conn:  # reads only: no BEGIN/ROLLBACK
            replay = await _replay(conn, order_id, inp.request_hash, user)
        if replay is not None:
            return Placed(order=replay, replay=True)
    creation = await start_order(client, settings, inp)
    if creation.request_hash and creation.request_hash != inp.request_hash:
        # A concurrent create with this key and another body started the workflow first.
        raise AppError(ErrorCode.IDEMPOTENCY_KEY_REUSED)
    if creation.error:
        raise AppError(ErrorCode.from_workflow(creation.error) or ErrorCode.INTERNAL_ERROR, creation.message)
    detail = order_from_creation(inp, creation)  # no read back: the workflow answered once it was written
    _refuse_if_no_link(detail)
    return Placed(order=detail, replay=False)


def _refuse_if_no_link(detail: OrderOut) -> None:
    """An order that ended before it got a payment link is answered as the failure it is, on the
    first request and on every replay of its key alike."""
    if detail.status == "failed" and detail.end_reason == "payment_link_unavailable":
        raise AppError(
            ErrorCode.PAYMENT_GATEWAY_ERROR,
            f"No payment link could be made; order {detail.order_code} failed",
        )


async def _replay(conn: AsyncConnection, order_id: str, req_hash: str, user: User) -> OrderOut | None:
    try:
        row = await find_order(conn, order_id, user)
    except AppError:
        return None
    if row.request_hash != req_hash:
        raise AppError(ErrorCode.IDEMPOTENCY_KEY_REUSED)
    detail = await order_detail(conn, row)
    _refuse_if_no_link(detail)
    return detail


async def start_order(client: Client, settings: Settings, inp: OrderInput) -> Creation:
    """Start the workflow and wait for its `created` update in one round trip. A retried request
    (same id) joins the running workflow; a finished one (rejected at checkout) is read back."""
    start = WithStartWorkflowOperation(
        OrderWorkflow.run,
        inp,
        id=workflow_id(inp.order_id),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=search.at_start(inp.customer_id, inp.gateway),
    )
    try:
        return await client.execute_update_with_start_workflow(
            OrderWorkflow.created, start_workflow_operation=start
        )
    except WorkflowAlreadyStartedError:
        outcome = await client.get_workflow_handle_for(OrderWorkflow.run, workflow_id(inp.order_id)).result()
        if outcome.status == "rejected":
            return Creation(error=outcome.reason, message=f"Order was refused: {outcome.reason}")
        return Creation(error=ErrorCode.ORDER_EXISTS.value, message="Order already exists")


async def call_update(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a workflow update, turning its typed ApplicationErrors into AppErrors. Raises
    `WorkflowGone` when the workflow has already finished (the caller answers from Postgres)."""
    try:
        return await fn()
    except WorkflowUpdateFailedError as err:
        cause: Any = err.cause
        while cause is not None and not isinstance(cause, ApplicationError):
            cause = cause.cause
        if isinstance(cause, ApplicationError) and (code := ErrorCode.from_workflow(cause.type)) is not None:
            raise AppError(code, cause.message) from None
        raise AppError(ErrorCode.PAYMENT_GATEWAY_ERROR) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WorkflowGone() from None
        raise  # Temporal unreachable: TEMPORAL_UNAVAILABLE (the transport's handler)


async def update_order(
    conn: AsyncConnection,
    client: Client,
    ref: str,
    user: User,
    action: str,
    update: Callable[[WorkflowHandle[Any, Any]], Awaitable[T]],
) -> tuple[Any, T]:
    """Every command on an order, one way: find it (404 for a stranger's), refuse an ended one as
    an ended order's command is refused (`ended_order_error`), run the workflow update (its typed
    refusals as AppErrors) with no pooled transaction held meanwhile, and re-read the order as
    Postgres now holds it. When the workflow had finished in between, the ended order's refusal is
    answered from Postgres."""
    row = await find_order(conn, ref, user)
    await conn.rollback()
    if row.status != OrderStatus.PENDING_PAYMENT.value:
        raise ended_order_error(row.status, action)
    handle = client.get_workflow_handle(workflow_id(str(row.id)))
    try:
        result = await call_update(lambda: update(handle))
    except WorkflowGone:
        raise ended_order_error((await find_order(conn, ref, user)).status, action) from None
    return await find_order(conn, ref, user), result


class WorkflowGone(Exception):
    """The order's workflow has completed; its final state is in Postgres."""


def ended_order_error(status: str, action: str) -> AppError:
    """What a command on an order whose workflow has finished answers: a retry reads as an ended
    session (expired, else not active), any other command as a payment already made or an order
    no longer pending."""
    if action == "retry":
        if status == "expired":
            return AppError(ErrorCode.SESSION_EXPIRED)
        return AppError(ErrorCode.SESSION_NOT_ACTIVE, f"Session is not active (order {status})")
    if status == "paid":
        return AppError(ErrorCode.PAYMENT_ALREADY_PROCESSED)
    return AppError(ErrorCode.ORDER_NOT_PENDING, f"Order is {status}")


# ---- the commands, one per route ------------------------------------------------------------------


async def retry_payment(
    conn: AsyncConnection, client: Client, ref: str, user: User, gateway: str | None
) -> RetryOut:
    """A new payment link (optionally through another gateway) while the window is open."""
    row, result = await update_order(
        conn,
        client,
        ref,
        user,
        "retry",
        lambda order: order.execute_update(OrderWorkflow.retry_payment, RetryRequest(gateway=gateway)),
    )
    return RetryOut(
        order_id=row.id,
        payment_attempts=result.payment_attempts,
        max_payment_attempts=result.max_payment_attempts,
        remaining_attempts=result.remaining_attempts,
        payment_url=result.payment_url,
        gateway=result.gateway,
    )


async def cancel_order(conn: AsyncConnection, client: Client, ref: str, user: User, reason: str) -> OrderOut:
    """The shopper's cancel, or an admin's: an operator action, audited with the transition (in its
    transaction)."""
    entry = audit_entry(user, OperatorAction.ORDER_CANCEL, reason) if user.is_admin else None
    cancel = CancelRequest(reason=reason, by="admin" if user.is_admin else "customer", audit=entry)
    row, _ = await update_order(
        conn, client, ref, user, "cancel", lambda order: order.execute_update(OrderWorkflow.cancel, cancel)
    )
    return await order_detail(conn, row)


async def extend_window(
    conn: AsyncConnection, client: Client, ref: str, user: User, minutes: float, note: str
) -> SessionOut:
    """Move the deadline (an operator lever); the audit entry travels with the update and is written
    by the activity, in the transaction that moves the deadline."""
    entry = audit_entry(user, OperatorAction.ORDER_EXTEND, note, detail={"minutes": minutes})
    request = ExtendRequest(minutes=minutes, audit=entry)
    row, _ = await update_order(
        conn, client, ref, user, "extend", lambda order: order.execute_update(OrderWorkflow.extend, request)
    )
    return session_out(row)


async def expire_now(conn: AsyncConnection, client: Client, ref: str, user: User, note: str) -> SessionOut:
    """Close the window now (an operator lever), audited like `extend_window`."""
    request = ExpireRequest(audit=audit_entry(user, OperatorAction.ORDER_EXPIRE, note))
    row, _ = await update_order(
        conn,
        client,
        ref,
        user,
        "expire",
        lambda order: order.execute_update(OrderWorkflow.expire_now, request),
    )
    return session_out(row)
