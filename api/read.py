"""Read side: orders, sessions and the catalog as Postgres holds them (activities keep Postgres
current in the same transactions that move an order, so reads never need the workflow)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import User
from api.errors import ApiError
from api.schemas import (
    AttemptOut,
    ItemOut,
    OrderOut,
    OrderSummary,
    Page,
    PaymentSummary,
    ProductOut,
    ReceiverOut,
    SessionOut,
    VariantOut,
)


def parse_ref(ref: str) -> tuple[str, Any]:
    """`ref` is an order id (uuid) or its 9-digit order code."""
    if ref.isdigit() and len(ref) == 9:
        return "order_code", int(ref)
    try:
        return "id", uuid.UUID(ref)
    except ValueError:
        raise ApiError(404, "ORDER_NOT_FOUND", f"Order {ref[:64]} not found") from None


async def find_order(conn: AsyncConnection, ref: str, user: User) -> Any:
    """The order row joined with its session; 404 for a customer's look at someone else's order,
    so order ids and codes leak nothing."""
    column, value = parse_ref(ref)
    row = (
        await conn.execute(
            text(
                f"""
                SELECT o.*, s.id AS session_id, s.status AS session_status, s.expires_at, s.started_at,
                    s.session_duration_minutes, s.payment_attempts, s.max_payment_attempts,
                    s.last_payment_attempt
                FROM "order" o JOIN order_session s ON s.order_id = o.id
                WHERE o.{column} = :value
                """
            ),
            {"value": value},
        )
    ).first()
    if row is None or (not user.is_admin and row.customer_id != user.id):
        raise ApiError(404, "ORDER_NOT_FOUND", f"Order {ref} not found")
    return row


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
    items = (
        await conn.execute(text("SELECT * FROM order_item WHERE order_id = :id ORDER BY variant_id"), {"id": row.id})
    ).all()
    attempts = (
        await conn.execute(text("SELECT * FROM payment WHERE order_id = :id ORDER BY attempt_no"), {"id": row.id})
    ).all()
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
            name=row.receiver_name, phone=row.receiver_phone, address=row.receiver_address, email=row.receiver_email
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


# The attempt whose status the order's payment status shows: where the money is, else the latest.
MONEY_FIRST = ("success", "refunded", "refund_required", "needs_review")


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
    where: list[str] = ["NOT o.archived"]
    params: dict[str, Any] = {"limit": size, "offset": (page - 1) * size, "money_first": list(MONEY_FIRST)}
    if not user.is_admin:
        customer_id = user.id  # customers only ever see their own orders
    for clause, key, value in (
        ("o.customer_id = :customer", "customer", customer_id),
        ("o.status = :status", "status", status),
        ("o.created_at >= :from", "from", date_from),
        ("o.created_at < :to", "to", date_to),
        ("o.late_payment = :late", "late", late_payment),
        ("EXISTS (SELECT 1 FROM payment p WHERE p.order_id = o.id AND p.status = :pstatus)", "pstatus", payment_status),
    ):
        if value is not None:
            where.append(clause)
            params[key] = value
    cond = " AND ".join(where)
    total = (await conn.execute(text(f'SELECT count(*) FROM "order" o WHERE {cond}'), params)).scalar_one()
    rows = (
        await conn.execute(
            text(
                f"""
                SELECT o.*, s.expires_at,
                    (SELECT p.status FROM payment p WHERE p.order_id = o.id
                     ORDER BY array_position(CAST(:money_first AS text[]), p.status) NULLS LAST,
                        p.attempt_no DESC
                     LIMIT 1) AS payment_status
                FROM "order" o JOIN order_session s ON s.order_id = o.id
                WHERE {cond} ORDER BY o.created_at DESC, o.id LIMIT :limit OFFSET :offset
                """
            ),
            params,
        )
    ).all()
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


async def list_products(conn: AsyncConnection) -> list[ProductOut]:
    rows = (
        await conn.execute(
            text(
                """
                SELECT p.id AS pid, p.name AS pname, p.description, v.id, v.sku, v.name, v.price, v.stock_quantity
                FROM product p JOIN product_variant v ON v.product_id = p.id
                ORDER BY p.created_at, p.name, v.sku
                """
            )
        )
    ).all()
    products: dict[uuid.UUID, ProductOut] = {}
    for r in rows:
        product = products.setdefault(
            r.pid, ProductOut(id=r.pid, name=r.pname, description=r.description, variants=[])
        )
        product.variants.append(
            VariantOut(id=r.id, sku=r.sku, name=r.name, price=r.price, stock_quantity=r.stock_quantity)
        )
    return list(products.values())
