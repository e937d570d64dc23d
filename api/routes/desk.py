"""The operators' desk (admin only): payments that need a person, stored verdicts, the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import AdminUser, ConnDep, EngineDep, PageNumber, PageSize, SettingsDep, TemporalDep
from api.errors import error_responses, ok
from services import money_desk
from services.audit import audit_page
from services.schemas import (
    AttemptStatusName,
    AuditOut,
    DeskPaymentOut,
    Envelope,
    GatewayName,
    MarkRefundedIn,
    NoteIn,
    NotificationOut,
    Page,
)
from services.stats import shop_range

router = APIRouter(prefix="/admin", tags=["desk"])


@router.get("/payments", response_model=Envelope[Page[DeskPaymentOut]], responses=error_responses(403))
async def list_payments(
    _: AdminUser,
    conn: ConnDep,
    page: PageNumber = 1,
    size: PageSize = 20,
    status: AttemptStatusName | None = None,
    gateway: GatewayName | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> Envelope[Page[DeskPaymentOut]]:
    """Payments in `status` (default: those that need a person, refund_required and needs_review),
    the longest waiting first; `from`/`to` without an offset are read in Asia/Ho_Chi_Minh."""
    from_, to = shop_range(from_, to)
    return ok(await money_desk.payments_page(conn, page, size, status, gateway, from_, to))


@router.post(
    "/payments/{payment_id}/refund",
    response_model=Envelope[DeskPaymentOut],
    responses={
        202: {"model": Envelope[DeskPaymentOut], "description": "The refund goes on in the worker"},
        **error_responses(403, 404, 409, 502),
    },
)
async def refund(
    payment_id: uuid.UUID,
    response: Response,
    user: AdminUser,
    conn: ConnDep,
    client: TemporalDep,
    settings: SettingsDep,
    body: NoteIn | None = None,
) -> Envelope[DeskPaymentOut]:
    """Ask the payment's gateway for the refund (again), in the worker, under the payment's one
    refund key, of exactly what it took: 200 refunded, 202 still under way or its outcome not known,
    502 the gateway said no (what it said is the payment's `reason`), 409 ORDER_STILL_OPEN while its
    order is open."""
    refund = await money_desk.refund(conn, client, settings, user, payment_id, body.note if body else "")
    if refund.done:
        return ok(refund.payment, f"Refunded through {refund.payment.gateway}")
    response.status_code = 202  # still under way, or its outcome not known: the gateway may have refunded
    return ok(refund.payment, "Refund under way: the payment's status tells how it ends")


@router.post(
    "/payments/{payment_id}/mark-refunded",
    response_model=Envelope[DeskPaymentOut],
    responses=error_responses(403, 404, 409),
)
async def mark_refunded(
    payment_id: uuid.UUID, body: MarkRefundedIn, user: AdminUser, conn: ConnDep, client: TemporalDep
) -> Envelope[DeskPaymentOut]:
    """The money went back outside the gateway (a bank transfer): record it, with its reference.
    409 ORDER_STILL_OPEN while its order is open, REFUND_IN_PROGRESS while a gateway refund of it is
    being tried, REFUND_OUTCOME_UNKNOWN when one was asked and the gateway has not said no."""
    payment = await money_desk.mark_refunded(conn, client, user, payment_id, body.reference, body.note)
    return ok(payment, "Marked refunded")


@router.get("/notifications", response_model=Envelope[Page[NotificationOut]], responses=error_responses(403))
async def list_notifications(
    _: AdminUser, conn: ConnDep, undelivered: bool = False, page: PageNumber = 1, size: PageSize = 20
) -> Envelope[Page[NotificationOut]]:
    """Stored verified verdicts; `undelivered=true`: only those never handed to their order (the
    oldest first), unmatched ones (no order) included."""
    return ok(await money_desk.notifications_page(conn, undelivered, page, size))


@router.post(
    "/notifications/{notification_id}/redeliver",
    response_model=Envelope[NotificationOut],
    responses=error_responses(403, 404, 409),
)
async def redeliver(
    notification_id: uuid.UUID,
    user: AdminUser,
    engine: EngineDep,
    conn: ConnDep,
    client: TemporalDep,
    settings: SettingsDep,
    body: NoteIn | None = None,
) -> Envelope[NotificationOut]:
    """Hand a stored verdict to its order's workflow (or its late-payment settlement) again."""
    out = await money_desk.redeliver(
        engine, conn, client, settings, user, notification_id, body.note if body else ""
    )
    return ok(out, "Verdict handed to its order")


@router.get("/audit", response_model=Envelope[Page[AuditOut]], responses=error_responses(403))
async def list_audit(
    _: AdminUser,
    conn: ConnDep,
    order_id: Annotated[uuid.UUID | None, Query(alias="orderId")] = None,
    payment_id: Annotated[uuid.UUID | None, Query(alias="paymentId")] = None,
    variant_id: Annotated[uuid.UUID | None, Query(alias="variantId")] = None,
    page: PageNumber = 1,
    size: PageSize = 50,
) -> Envelope[Page[AuditOut]]:
    """The operators' actions, newest first (append-only: Postgres refuses to change them)."""
    return ok(await audit_page(conn, page, size, order_id, payment_id, variant_id))
