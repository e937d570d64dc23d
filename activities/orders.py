"""Activities: every effect OrderWorkflow asks for. Each is idempotent, because Temporal may run
an activity again after a crash between its commit and the workflow hearing of it."""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from activities.events import record_event
from activities.inventory import Rejected, reserve
from domain.statuses import OPEN_ATTEMPTS_BECOME, SESSION_FOR_ORDER, OrderStatus
from gateways.registry import amount_problem
from workflows.messages import (
    CreatedOrder,
    CreateOrderInput,
    CreateOrderResult,
    DeadlineInput,
    FrozenItem,
    TransitionInput,
    TransitionResult,
)

log = logging.getLogger(__name__)

# One statement, so the transition, the restock and the attempts move together or not at all;
# the `status = 'pending_payment'` guard makes a second call a no-op (no double restock).
TRANSITION_SQL = text(
    """
    WITH moved AS (
        UPDATE "order" SET status = :to, end_reason = :reason, updated_at = now(), ended_at = now()
        WHERE id = :id AND status = 'pending_payment' RETURNING id
    ), restock AS (
        UPDATE product_variant v SET stock_quantity = v.stock_quantity + i.quantity, updated_at = now()
        FROM order_item i, moved
        WHERE :restock AND i.order_id = moved.id AND v.id = i.variant_id RETURNING v.id
    ), sess AS (
        UPDATE order_session s SET status = :session_status, updated_at = now()
        FROM moved WHERE s.order_id = moved.id RETURNING s.id
    ), verdict AS (
        UPDATE payment p SET status = :attempt_status, result_code = :result_code,
            transaction_id = coalesce(:transaction_id, p.transaction_id), updated_at = now()
        FROM moved WHERE p.order_id = moved.id AND p.attempt_no = :attempt_no RETURNING p.id
    ), open_attempts AS (
        UPDATE payment p SET status = :open_status, updated_at = now()
        FROM moved WHERE p.order_id = moved.id AND p.status = 'pending'
            AND p.attempt_no IS DISTINCT FROM :attempt_no RETURNING p.id
    ), announce AS (
        SELECT pg_notify('order_events', CAST(moved.id AS text)) FROM moved
    )
    SELECT (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM announce) AS announced, (SELECT status FROM "order" WHERE id = :id) AS status
    """
)


class OrderActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # ---- checkout ---------------------------------------------------------------------------------

    @activity.defn
    async def create_order(self, inp: CreateOrderInput) -> CreateOrderResult:
        """Freeze the snapshot and reserve stock in one transaction (or write nothing)."""
        try:
            async with self.engine.begin() as conn:
                existing = await load_created_order(conn, inp.order_id)
                if existing is not None:
                    return CreateOrderResult(order=existing)
                lines = await reserve(conn, inp.lines)
                total = sum(line.unit_price * line.quantity for line in lines)
                problem = amount_problem(inp.gateway, total) if inp.gateway else None
                if problem:
                    raise Rejected("AMOUNT_OUT_OF_RANGE", problem)  # rolls the reservation back
                return CreateOrderResult(order=await _insert_order(conn, inp, lines))
        except Rejected as rejected:
            return CreateOrderResult(error=rejected.code, message=rejected.message)

    # ---- lifecycle ------------------------------------------------------------------------------------

    @activity.defn
    async def transition_order(self, inp: TransitionInput) -> TransitionResult:
        to = OrderStatus(inp.to_status)
        attempt = inp.attempt
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    TRANSITION_SQL,
                    {
                        "id": inp.order_id,
                        "to": to.value,
                        "reason": inp.reason,
                        "restock": to.restores_stock,
                        "session_status": SESSION_FOR_ORDER[to].value,
                        "open_status": OPEN_ATTEMPTS_BECOME[to].value,
                        "attempt_no": attempt.attempt_no if attempt else None,
                        "attempt_status": attempt.status if attempt else None,
                        "result_code": attempt.result_code if attempt else None,
                        "transaction_id": attempt.transaction_id if attempt else None,
                    },
                )
            ).one()
            if row.moved:
                await record_event(conn, inp.order_id, f"order.{to.value}")
        moved = row.moved > 0
        status = to.value if moved else row.status
        log.info("order %s -> %s (%s)%s", inp.order_id, status, inp.reason, "" if moved else " [no-op]")
        return TransitionResult(status=status, transitioned=moved)

    @activity.defn
    async def set_deadline(self, inp: DeadlineInput) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "WITH s AS (UPDATE order_session SET expires_at = :at, updated_at = now() WHERE order_id = :id) "
                    "SELECT pg_notify('order_events', CAST(:id AS text))"
                ),
                {"at": inp.expires_at, "id": inp.order_id},
            )


# ---- helpers ------------------------------------------------------------------------------------------


def new_order_code() -> int:
    return 100_000_000 + secrets.randbelow(900_000_000)


async def _insert_order(conn: AsyncConnection, inp: CreateOrderInput, lines: list[Any]) -> CreatedOrder:
    subtotal = sum(line.unit_price * line.quantity for line in lines)
    discount, shipping = 0, 0
    params = {
        "id": inp.order_id,
        "customer": inp.customer_id,
        "type": inp.order_type,
        "subtotal": subtotal,
        "discount": discount,
        "shipping": shipping,
        "total": subtotal - discount + shipping,
        "rname": inp.receiver.name,
        "rphone": inp.receiver.phone,
        "raddr": inp.receiver.address,
        "remail": inp.receiver.email,
        "hash": inp.request_hash,
        "at": inp.started_at,
    }
    for _ in range(10):  # 9-digit random codes collide rarely; a savepoint lets us try another
        params["code"] = new_order_code()
        try:
            async with conn.begin_nested():
                await conn.execute(
                    text(
                        """
                        INSERT INTO "order" (id, order_code, customer_id, status, order_type,
                            subtotal_amount, discount_amount, shipping_fee, grand_total,
                            receiver_name, receiver_phone, receiver_address, receiver_email, request_hash,
                            created_at, updated_at)
                        VALUES (:id, :code, :customer, 'pending_payment', :type, :subtotal, :discount,
                            :shipping, :total, :rname, :rphone, :raddr, :remail, :hash, :at, :at)
                        """
                    ),
                    params,
                )
            break
        except IntegrityError as err:
            if "order_code" not in str(err.orig):
                raise
    else:
        raise RuntimeError("could not allocate a unique order code")
    session_id = uuid.uuid4()
    await conn.execute(
        text(
            """
            INSERT INTO order_session (id, order_id, status, session_duration_minutes, expires_at,
                started_at, payment_attempts, max_payment_attempts, created_at, updated_at)
            VALUES (:sid, :id, 'active', :minutes, :exp, :at, 0, :max, :at, :at)
            """
        ),
        {
            "sid": session_id,
            "id": inp.order_id,
            "minutes": inp.duration_minutes,
            "exp": inp.expires_at,
            "at": inp.started_at,
            "max": inp.max_attempts,
        },
    )
    await conn.execute(
        text(
            """
            INSERT INTO order_item (id, order_id, product_id, variant_id, product_name, variant_sku,
                variant_name, quantity, unit_price, sub_total_amount, created_at)
            VALUES (:iid, :id, :pid, :vid, :pname, :sku, :vname, :qty, :price, :sub, :at)
            """
        ),
        [
            {
                "iid": uuid.uuid4(),
                "id": inp.order_id,
                "pid": line.product_id,
                "vid": line.variant_id,
                "pname": line.product_name,
                "sku": line.variant_sku,
                "vname": line.variant_name,
                "qty": line.quantity,
                "price": line.unit_price,
                "sub": line.unit_price * line.quantity,
                "at": inp.started_at,
            }
            for line in lines
        ],
    )
    await record_event(conn, inp.order_id, "order.created")
    created = await load_created_order(conn, inp.order_id)
    assert created is not None
    return created


async def load_created_order(conn: AsyncConnection, order_id: str) -> CreatedOrder | None:
    order = (
        await conn.execute(
            text(
                """
                SELECT o.*, s.id AS session_id FROM "order" o JOIN order_session s ON s.order_id = o.id
                WHERE o.id = :id
                """
            ),
            {"id": order_id},
        )
    ).first()
    if order is None:
        return None
    items = (
        await conn.execute(
            text("SELECT * FROM order_item WHERE order_id = :id ORDER BY variant_id"), {"id": order_id}
        )
    ).all()
    return CreatedOrder(
        order_id=str(order.id),
        order_code=order.order_code,
        session_id=str(order.session_id),
        customer_id=order.customer_id,
        subtotal_amount=order.subtotal_amount,
        discount_amount=order.discount_amount,
        shipping_fee=order.shipping_fee,
        grand_total=order.grand_total,
        currency_code=order.currency_code,
        items=[
            FrozenItem(
                product_id=str(i.product_id),
                variant_id=str(i.variant_id),
                product_name=i.product_name,
                variant_sku=i.variant_sku,
                variant_name=i.variant_name,
                quantity=i.quantity,
                unit_price=i.unit_price,
                sub_total_amount=i.sub_total_amount,
            )
            for i in items
        ],
    )
