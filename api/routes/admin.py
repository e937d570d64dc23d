"""Operator levers: move an order's deadline or close its window now. The workflow makes the
change; the audit entry built here travels with the update and is written by the activity, in the
transaction that moves the deadline."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.audit import audit_entry
from api.deps import AdminUser, ConnDep, TemporalDep
from api.errors import error_responses, ok
from api.order_commands import update_order
from api.read import session_out
from api.schemas import Envelope, ExpireIn, ExtendIn, SessionOut
from domain.messages import ExpireRequest, ExtendRequest
from domain.operator_actions import OperatorAction
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/admin/orders", tags=["admin"])


@router.post("/{ref}/extend", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def extend(ref: str, body: ExtendIn, user: AdminUser, conn: ConnDep, client: TemporalDep) -> JSONResponse:
    entry = audit_entry(user, OperatorAction.ORDER_EXTEND, body.note, detail={"minutes": body.minutes})
    row, _ = await update_order(
        conn, client, ref, user, "extend",
        lambda order: order.execute_update(OrderWorkflow.extend, ExtendRequest(minutes=body.minutes, audit=entry)),
    )  # fmt: skip
    return ok(session_out(row), "Payment window moved")


@router.post("/{ref}/expire", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def expire(
    ref: str, user: AdminUser, conn: ConnDep, client: TemporalDep, body: ExpireIn | None = None
) -> JSONResponse:
    entry = audit_entry(user, OperatorAction.ORDER_EXPIRE, body.note if body else "")
    row, _ = await update_order(
        conn, client, ref, user, "expire",
        lambda order: order.execute_update(OrderWorkflow.expire_now, ExpireRequest(audit=entry)),
    )  # fmt: skip
    return ok(session_out(row), "Payment window closed")
