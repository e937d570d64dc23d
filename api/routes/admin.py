"""Operator levers: move an order's deadline or close its window now (services/order_commands.py)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminUser, ConnDep, TemporalDep
from api.errors import error_responses, ok
from services import order_commands
from services.schemas import Envelope, ExpireIn, ExtendIn, SessionOut

router = APIRouter(prefix="/admin/orders", tags=["admin"])


@router.post("/{ref}/extend", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def extend(
    ref: str, body: ExtendIn, user: AdminUser, conn: ConnDep, client: TemporalDep
) -> Envelope[SessionOut]:
    """Move the order's deadline by `minutes` (negative: sooner), audited."""
    session = await order_commands.extend_window(conn, client, ref, user, body.minutes, body.note)
    return ok(session, "Payment window moved")


@router.post("/{ref}/expire", response_model=Envelope[SessionOut], responses=error_responses(403, 404, 409))
async def expire(
    ref: str, user: AdminUser, conn: ConnDep, client: TemporalDep, body: ExpireIn | None = None
) -> Envelope[SessionOut]:
    """Close the order's window now (it expires, stock goes back), audited."""
    session = await order_commands.expire_now(conn, client, ref, user, body.note if body else "")
    return ok(session, "Payment window closed")
