"""Operator levers: move an order's deadline or close its window now."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import AdminUser, ConnDep, TemporalDep
from api.errors import error_responses, ok
from api.order_commands import update_order
from api.read import session_out
from api.schemas import Envelope, ExtendIn, SessionOut
from domain.messages import ExtendRequest
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/admin/orders", tags=["admin"])


@router.post("/{ref}/extend", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def extend(ref: str, body: ExtendIn, user: AdminUser, conn: ConnDep, client: TemporalDep) -> JSONResponse:
    row, _ = await update_order(
        conn, client, ref, user, "extend",
        lambda order: order.execute_update(OrderWorkflow.extend, ExtendRequest(minutes=body.minutes)),
    )  # fmt: skip
    return ok(session_out(row), "Payment window moved")


@router.post("/{ref}/expire", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def expire(ref: str, user: AdminUser, conn: ConnDep, client: TemporalDep) -> JSONResponse:
    row, _ = await update_order(
        conn, client, ref, user, "expire", lambda order: order.execute_update(OrderWorkflow.expire_now)
    )
    return ok(session_out(row), "Payment window closed")
