"""Operator levers: move an order's deadline or close its window now."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import AdminUser, ConnDep, TemporalDep
from api.errors import error_responses, ok
from api.ordering import WorkflowGone, call_update, ended_order_error
from api.read import find_order, session_out
from api.schemas import Envelope, ExtendIn, SessionOut
from domain.temporal import workflow_id
from workflows.messages import ExtendRequest
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/admin/orders", tags=["admin"])


@router.post("/{ref}/extend", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def extend(ref: str, body: ExtendIn, user: AdminUser, conn: ConnDep, client: TemporalDep) -> JSONResponse:
    row = await find_order(conn, ref, user)
    await conn.rollback()
    if row.status != "pending_payment":
        raise ended_order_error(row.status, "extend")
    handle = client.get_workflow_handle(workflow_id(str(row.id)))
    try:
        await call_update(lambda: handle.execute_update(OrderWorkflow.extend, ExtendRequest(minutes=body.minutes)))
    except WorkflowGone:
        raise ended_order_error((await find_order(conn, ref, user)).status, "extend") from None
    return ok(session_out(await find_order(conn, ref, user)), "Payment window moved")


@router.post("/{ref}/expire", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def expire(ref: str, user: AdminUser, conn: ConnDep, client: TemporalDep) -> JSONResponse:
    row = await find_order(conn, ref, user)
    await conn.rollback()
    if row.status != "pending_payment":
        raise ended_order_error(row.status, "expire")
    handle = client.get_workflow_handle(workflow_id(str(row.id)))
    try:
        await call_update(lambda: handle.execute_update(OrderWorkflow.expire_now))
    except WorkflowGone:
        raise ended_order_error((await find_order(conn, ref, user)).status, "expire") from None
    return ok(session_out(await find_order(conn, ref, user)), "Payment window closed")
