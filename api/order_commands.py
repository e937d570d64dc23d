"""Commands on orders: each goes to the order's workflow (start, validated updates), which is
the only writer of an order's state. Workflow failures become the API's error codes here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import User
from api.errors import ApiError
from api.read import find_order
from api.schemas import OrderCreate
from domain import search
from domain.ids import workflow_id
from domain.messages import Creation, OrderInput, OrderLine, Receiver
from domain.statuses import OrderStatus
from infra.settings import Settings
from workflows.order import OrderWorkflow

T = TypeVar("T")

# Error types raised by the workflow's validators and handlers -> HTTP status.
UPDATE_ERRORS = {
    "SESSION_EXPIRED": 400,
    "SESSION_NOT_ACTIVE": 400,
    "MAX_ATTEMPTS_REACHED": 400,
    "INVALID_GATEWAY": 422,
    "AMOUNT_OUT_OF_RANGE": 422,
    "VALIDATION_ERROR": 422,
    "PAYMENT_ALREADY_PROCESSED": 409,
    "ORDER_NOT_PENDING": 409,
}


def request_hash(body: OrderCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_input(settings: Settings, user: User, body: OrderCreate, order_id: str, client_ip: str) -> OrderInput:
    order_type = body.order_type or "normal"
    if order_type != "normal" and order_type not in settings.durations_by_type:
        known = ", ".join(sorted({"normal", *settings.durations_by_type}))
        raise ApiError(422, "INVALID_ORDER_TYPE", f"Unknown orderType {order_type!r}; known: {known}")
    return OrderInput(
        order_id=order_id,
        customer_id=user.id,
        lines=[OrderLine(variant_id=str(i.variant_id), quantity=i.quantity) for i in body.items],
        gateway=body.gateway,
        order_type=order_type,
        receiver=Receiver(
            name=body.receiver.name, phone=body.receiver.phone, address=body.receiver.address, email=body.receiver.email
        ),
        duration_minutes=settings.window_minutes(order_type),
        max_attempts=settings.order_session_max_attempts,
        reminder_minutes=settings.order_session_reminder_minutes,
        grace_minutes=settings.payment_in_flight_grace_minutes,
        request_hash=request_hash(body),
        client_ip=client_ip,
        late_payment_policy=settings.late_payment_policy,
    )


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
        return await client.execute_update_with_start_workflow(OrderWorkflow.created, start_workflow_operation=start)
    except WorkflowAlreadyStartedError:
        outcome = await client.get_workflow_handle_for(OrderWorkflow.run, workflow_id(inp.order_id)).result()
        if outcome.status == "rejected":
            return Creation(error=outcome.reason, message=f"Order was refused: {outcome.reason}")
        return Creation(error="ORDER_EXISTS", message="Order already exists")
    except RPCError as err:
        raise ApiError(503, "TEMPORAL_UNAVAILABLE", f"Workflow service unavailable: {err.message}") from None


async def call_update(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a workflow update, turning its typed ApplicationErrors into ApiErrors. Raises
    `WorkflowGone` when the workflow has already finished (the caller answers from Postgres)."""
    try:
        return await fn()
    except WorkflowUpdateFailedError as err:
        cause: Any = err.cause
        while cause is not None and not isinstance(cause, ApplicationError):
            cause = cause.cause
        if isinstance(cause, ApplicationError) and cause.type in UPDATE_ERRORS:
            raise ApiError(UPDATE_ERRORS[cause.type], cause.type, cause.message) from None
        raise ApiError(502, "PAYMENT_GATEWAY_ERROR", "The payment gateway could not make a link") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WorkflowGone() from None
        raise ApiError(503, "TEMPORAL_UNAVAILABLE", f"Workflow service unavailable: {err.message}") from None


async def update_order(
    conn: AsyncConnection,
    client: Client,
    ref: str,
    user: User,
    action: str,
    update: Callable[[WorkflowHandle[Any, Any]], Awaitable[T]],
) -> tuple[Any, T]:
    """Every command on an order, one way: find it (404 for a stranger's), refuse an ended one in
    seeds 000/002's terms, run the workflow update (its typed refusals as API errors) with no
    pooled transaction held meanwhile, and re-read the order as Postgres now holds it. When the
    workflow had finished in between, the ended order's refusal is answered from Postgres."""
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


def ended_order_error(status: str, action: str) -> ApiError:
    """What a command on an order whose workflow has finished answers (seed 000 / seed 002)."""
    if action == "retry":
        if status == "expired":
            return ApiError(400, "SESSION_EXPIRED", "Phiên thanh toán đã hết hạn. Vui lòng tạo đơn hàng mới.")
        return ApiError(400, "SESSION_NOT_ACTIVE", f"Session is not active (order {status})")
    if status == "paid":
        return ApiError(409, "PAYMENT_ALREADY_PROCESSED", "Payment already processed")
    return ApiError(409, "ORDER_NOT_PENDING", f"Order is {status}")
