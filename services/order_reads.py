"""Read side: orders and sessions as Postgres holds them, shaped for the API (activities keep
Postgres current in the same transactions that move an order, so reads never need the workflow).
The queries are the store's (store/orders.py)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.messages import Creation, OrderInput
from domain.statuses import AttemptStatus
from services.caller import User
from services.errors import AppError, ErrorCode
from services.schemas import (
    AttemptOut,
    ItemOut,
    OrderOut,
    OrderSummary,
    Page,
    PaymentSummary,
    ReceiverOut,
    SessionOut,
)
from store import orders


async def find_order(conn: AsyncConnection, ref: str, user: User) -> Any:
    """The order row joined with its session, by id or 9-digit code; 404 for a customer's look at
    someone else's order, so order ids and codes leak nothing."""
    if ref.isdigit() and len(ref) == 9:
        row = await orders.find(conn, order_code=int(ref))
    else:
        try:
            row = await orders.find(conn, order_id=uuid.UUID(ref))
        except ValueError:
            raise AppError(ErrorCode.ORDER_NOT_FOUND, f"Order {ref[:64]} not found") from None
    if row is None or (not user.is_admin and row.customer_id != user.id):
        raise AppError(ErrorCode.ORDER_NOT_FOUND, f"Order {ref} not found")
    return row


async def order_for(conn: AsyncConnection, ref: str, user: User) -> OrderOut:
    """`GET /orders/{ref}`: the order as Postgres holds it."""
    return await order_detail(conn, await find_order(conn, ref, user))


async def session_for(conn: AsyncConnection, ref: str, user: User) -> SessionOut:
    """`GET /orders/{ref}/session`: the payment window's countdown."""
    return session_out(await find_order(conn, ref, user))


def session_out(row: Any, now: datetime | None = None) -> SessionOut:
    now = now or datetime.now(UTC)
    remaining = max(0, math.floor((row.expires_at - now).total_seconds()))
    active = row.session_status == "active"
    is_expired = row.session_status == "expired" or (active and remaining == 0)
    attempts, max_attempts = row.payment_attempts, row.max_payment_attempts
    return SessionOut(
        session_id=row.session_id,
        order_id=row.id,
        status=row.session_status,
        expires_at=row.expires_at,
        started_at=row.started_at,
        duration_minutes=float(row.session_duration_minutes),
        timeout_minutes=round((row.expires_at - row.started_at).total_seconds() / 60, 2),
        remaining_seconds=remaining if active else 0,
        remaining_minutes=round(remaining / 60, 2) if active else 0.0,
        minutes_elapsed=round(max(0.0, (now - row.started_at).total_seconds()) / 60, 2),
        is_expired=is_expired,
        payment_attempts=attempts,
        max_payment_attempts=max_attempts,
        remaining_attempts=max(0, max_attempts - attempts),
        last_payment_attempt=row.last_payment_attempt,
        can_retry=active and not is_expired and attempts < max_attempts,
    )


async def order_detail(conn: AsyncConnection, row: Any) -> OrderOut:
    items = await orders.items(conn, row.id)
    attempts = await orders.attempts(conn, row.id)
    latest = attempts[-1] if attempts else None
    return OrderOut(
        order_id=row.id,
        order_code=row.order_code,
        customer_id=row.customer_id,
        status=row.status,
        payment_status=_payment_status(attempts),
        order_type=row.order_type,
        currency_code=row.currency_code,
        subtotal_amount=row.subtotal_amount,
        discount_amount=row.discount_amount,
        shipping_fee=row.shipping_fee,
        grand_total=row.grand_total,
        receiver=ReceiverOut(
            name=row.receiver_name,
            phone=row.receiver_phone,
            address=row.receiver_address,
            email=row.receiver_email,
        ),
        items=[ItemOut.model_validate(i, from_attributes=True) for i in items],
        session=session_out(row),
        payment=PaymentSummary(gateway=latest.gateway, payment_url=latest.payment_url, status=latest.status)
        if latest
        else None,
        attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        late_payment=row.late_payment,
        end_reason=row.end_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
    )


def order_from_creation(inp: OrderInput, creation: Creation) -> OrderOut:
    """The order as its workflow answered the `created` update: what `POST /orders` returns without
    reading it back (the workflow answers after the snapshot and the first link were committed)."""
    order, view = creation.order, creation.session
    assert order is not None and view is not None
    session = SimpleNamespace(
        id=uuid.UUID(order.order_id),
        session_id=uuid.UUID(order.session_id),
        session_status=view.status,
        expires_at=view.expires_at,
        started_at=view.started_at,
        session_duration_minutes=view.duration_minutes,
        payment_attempts=view.payment_attempts,
        max_payment_attempts=view.max_payment_attempts,
        last_payment_attempt=view.last_payment_attempt,
    )
    attempts = [
        AttemptOut(
            attempt_no=a.attempt_no,
            gateway=a.gateway,
            gateway_order_id=a.gateway_order_id,
            request_id=a.request_id,
            status=a.status,
            amount=a.amount,
            payment_url=a.payment_url,
            result_code=a.result_code,
            transaction_id=a.transaction_id,
            expires_at=view.expires_at,
            created_at=a.created_at,
        )
        for a in view.attempts
    ]
    latest = attempts[-1] if attempts else None
    return OrderOut(
        order_id=session.id,
        order_code=order.order_code,
        customer_id=order.customer_id,
        status=view.order_status,
        payment_status=_payment_status(attempts),
        order_type=inp.order_type,
        currency_code=order.currency_code,
        subtotal_amount=order.subtotal_amount,
        discount_amount=order.discount_amount,
        shipping_fee=order.shipping_fee,
        grand_total=order.grand_total,
        receiver=ReceiverOut(
            name=inp.receiver.name,
            phone=inp.receiver.phone,
            address=inp.receiver.address,
            email=inp.receiver.email,
        ),
        items=[ItemOut.model_validate(i, from_attributes=True) for i in order.items],
        session=session_out(session),
        payment=PaymentSummary(gateway=latest.gateway, payment_url=latest.payment_url, status=latest.status)
        if latest
        else None,
        attempts=attempts,
        late_payment=False,
        end_reason=view.end_reason,
        created_at=view.started_at,
        updated_at=view.started_at,
        ended_at=None,
    )


# The attempt whose status the order's payment status shows: where the money is, else the latest
# (domain.statuses.HOLDS_MONEY, ranked: the order's own money first).
MONEY_FIRST = tuple(
    s.value
    for s in (
        AttemptStatus.SUCCESS,
        AttemptStatus.REFUNDED,
        AttemptStatus.REFUND_REQUIRED,
        AttemptStatus.NEEDS_REVIEW,
    )
)


def _payment_status(attempts: list[Any]) -> str | None:
    """The order's payment status: a success (or its refund) wins, otherwise the latest attempt's."""
    for status in MONEY_FIRST:
        if any(a.status == status for a in attempts):
            return status
    return attempts[-1].status if attempts else None


async def list_orders(
    conn: AsyncConnection,
    user: User,
    *,
    page: int,
    size: int,
    status: str | None,
    date_from: datetime | None,
    date_to: datetime | None,
    customer_id: str | None,
    late_payment: bool | None = None,
    payment_status: str | None = None,
) -> Page[OrderSummary]:
    if not user.is_admin:
        customer_id = user.id  # customers only ever see their own orders
    where = orders.OrderFilter(
        customer_id=customer_id,
        status=status,
        date_from=date_from,
        date_to=date_to,
        late_payment=late_payment,
        payment_status=payment_status,
    )
    total, rows = await orders.listing(conn, where, MONEY_FIRST, limit=size, offset=(page - 1) * size)
    items = [
        OrderSummary(
            order_id=r.id,
            order_code=r.order_code,
            customer_id=r.customer_id,
            status=r.status,
            payment_status=r.payment_status,
            order_type=r.order_type,
            grand_total=r.grand_total,
            currency_code=r.currency_code,
            late_payment=r.late_payment,
            expires_at=r.expires_at,
            created_at=r.created_at,
        )
        for r in rows
    ]
    return Page[OrderSummary](items=items, page=page, size=size, total=total)
