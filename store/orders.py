"""Orders with their sessions and frozen items: the checkout snapshot, the one guarded terminal
transition, a moved deadline, and the reads the API answers from (details and listings)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, text
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.checkout import ReservedLine
from domain.ids import new_order_code
from domain.messages import AttemptUpdate, CreatedOrder, CreateOrderInput, FrozenItem
from domain.statuses import (
    OPEN_ATTEMPTS_BECOME,
    OPERATOR_SETTLED,
    SESSION_FOR_ORDER,
    AttemptStatus,
    OrderStatus,
)
from store.outbox import WAKE_RELAY, event_params, insert_event
from store.pages import page_of
from store.status_sql import sql_in
from store.tables import Order, OrderItem, OrderSession, Payment

order, session, item, payment = (
    Order.__table__,
    OrderSession.__table__,
    OrderItem.__table__,
    Payment.__table__,
)
CODE_TRIES = 10  # 9-digit random codes collide rarely

# ---- the checkout snapshot ---------------------------------------------------------------------------


# Raw SQL on purpose: the whole snapshot (order, session, items and `order.created`) is one statement,
# one round trip. A 9-digit random code that collides leaves nothing written (`made` = 0): try another.
SNAPSHOT_SQL = text(
    f"""
    WITH o AS (
        INSERT INTO "order" (id, order_code, customer_id, status, order_type, subtotal_amount, discount_amount,
            shipping_fee, grand_total, receiver_name, receiver_phone, receiver_address, receiver_email,
            request_hash, created_at, updated_at)
        VALUES (:id, :code, :customer, 'pending_payment', :order_type, :subtotal, :discount, :shipping, :total,
            :rname, :rphone, :raddr, :remail, :hash, :at, :at)
        ON CONFLICT (order_code) DO NOTHING
        RETURNING id, order_code, customer_id, status, grand_total, currency_code, end_reason
    ), s AS (
        INSERT INTO order_session (id, order_id, status, session_duration_minutes, expires_at, started_at,
            payment_attempts, max_payment_attempts, created_at, updated_at)
        SELECT :sid, o.id, 'active', :minutes, :expires, :at, 0, :max, :at, :at FROM o
    ), i AS (
        INSERT INTO order_item (id, order_id, product_id, variant_id, product_name, variant_sku, variant_name,
            quantity, unit_price, sub_total_amount, created_at)
        SELECT gen_random_uuid(), o.id, x.pid, x.vid, x.pname, x.sku, x.vname, x.qty, x.price, x.price * x.qty, :at
        FROM o, unnest(CAST(:pids AS uuid[]), CAST(:vids AS uuid[]), CAST(:pnames AS text[]),
            CAST(:skus AS text[]), CAST(:vnames AS text[]), CAST(:qtys AS int[]), CAST(:prices AS bigint[]))
            AS x(pid, vid, pname, sku, vname, qty, price)
    ), event AS ({insert_event("o")}
    ), wake AS ({WAKE_RELAY})
    SELECT (SELECT count(*) FROM o) AS made, (SELECT count(*) FROM wake) AS woke
    """
)


async def create(conn: AsyncConnection, inp: CreateOrderInput, lines: list[ReservedLine]) -> CreatedOrder:
    """The order, its session and its items (prices as reserved), and `order.created`."""
    subtotal = sum(line.unit_price * line.quantity for line in lines)
    discount, shipping = 0, 0
    session_id = uuid.uuid4()
    params = {
        "id": inp.order_id,
        "customer": inp.customer_id,
        "order_type": inp.order_type,
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
        "sid": session_id,
        "minutes": inp.duration_minutes,
        "expires": inp.expires_at,
        "max": inp.max_attempts,
        "pids": [uuid.UUID(line.product_id) for line in lines],
        "vids": [uuid.UUID(line.variant_id) for line in lines],
        "pnames": [line.product_name for line in lines],
        "skus": [line.variant_sku for line in lines],
        "vnames": [line.variant_name for line in lines],
        "qtys": [line.quantity for line in lines],
        "prices": [line.unit_price for line in lines],
        **event_params("order.created"),
    }
    for _ in range(CODE_TRIES):
        params["code"] = new_order_code()
        if (await conn.execute(SNAPSHOT_SQL, params)).one().made:
            break
    else:
        raise RuntimeError("could not allocate a unique order code")
    return CreatedOrder(
        order_id=inp.order_id,
        order_code=params["code"],
        session_id=str(session_id),
        customer_id=inp.customer_id,
        subtotal_amount=subtotal,
        discount_amount=discount,
        shipping_fee=shipping,
        grand_total=params["total"],
        currency_code="VND",
        items=[
            FrozenItem(
                product_id=line.product_id,
                variant_id=line.variant_id,
                product_name=line.product_name,
                variant_sku=line.variant_sku,
                variant_name=line.variant_name,
                quantity=line.quantity,
                unit_price=line.unit_price,
                sub_total_amount=line.unit_price * line.quantity,
            )
            for line in lines
        ],
    )


async def load_created(conn: AsyncConnection, order_id: str) -> CreatedOrder | None:
    """The snapshot as `create` returned it (an activity's retry finds it made)."""
    row = (
        await conn.execute(
            select(order, session.c.id.label("session_id"))
            .join(session, session.c.order_id == order.c.id)
            .where(order.c.id == order_id)
        )
    ).first()
    if row is None:
        return None
    items = (
        await conn.execute(select(item).where(item.c.order_id == order_id).order_by(item.c.variant_id))
    ).all()
    return CreatedOrder(
        order_id=str(row.id),
        order_code=row.order_code,
        session_id=str(row.session_id),
        customer_id=row.customer_id,
        subtotal_amount=row.subtotal_amount,
        discount_amount=row.discount_amount,
        shipping_fee=row.shipping_fee,
        grand_total=row.grand_total,
        currency_code=row.currency_code,
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


# ---- the lifecycle -----------------------------------------------------------------------------------

# Raw SQL on purpose: one statement, so the transition, the restock, the session, the attempts and
# the outbox event move together or not at all, and the `status = 'pending_payment'` guard makes a
# second call a no-op (no double restock, no second event). It also wakes the order's live streams
# (`order_events`) and the event relay. An operator's decision stands: an attempt that is
# `refund_required` or `refunded` is never overwritten (nor is a surplus row), and an order is
# never paid by an attempt whose money an operator already settled.
TRANSITION_SQL = text(
    f"""
    WITH settled AS (
        SELECT status FROM payment
        WHERE order_id = :id AND attempt_no = :attempt_no AND surplus_of IS NULL
    ), moved AS (
        UPDATE "order" SET status = :to, end_reason = :reason, updated_at = now(), ended_at = now()
        WHERE id = :id AND status = 'pending_payment'
            AND NOT (CAST(:to AS text) = 'paid'
                AND EXISTS (SELECT 1 FROM settled WHERE status IN {sql_in(OPERATOR_SETTLED)}))
        RETURNING id, order_code, customer_id, status, grand_total, currency_code, end_reason
    ), event AS ({insert_event("moved o")}
    ), wake AS ({WAKE_RELAY}
    ), restock AS (
        UPDATE product_variant v SET stock_quantity = v.stock_quantity + i.quantity, updated_at = now()
        FROM order_item i, moved
        WHERE :restock AND i.order_id = moved.id AND v.id = i.variant_id RETURNING v.id
    ), sess AS (
        UPDATE order_session s SET status = :session_status, updated_at = now()
        FROM moved WHERE s.order_id = moved.id RETURNING s.id
    ), verdict AS (
        UPDATE payment p SET status = :attempt_status, result_code = :result_code,
            transaction_id = coalesce(:transaction_id, p.transaction_id),
            received_amount = coalesce(:received, p.received_amount), updated_at = now()
        FROM moved WHERE p.order_id = moved.id AND p.attempt_no = :attempt_no AND p.surplus_of IS NULL
            AND p.status NOT IN {sql_in(OPERATOR_SETTLED)}
        RETURNING p.status
    ), open_attempts AS (
        UPDATE payment p SET status = :open_status, updated_at = now()
        FROM moved WHERE p.order_id = moved.id AND p.status = 'pending' AND p.surplus_of IS NULL
            AND p.attempt_no IS DISTINCT FROM :attempt_no RETURNING p.id
    ), announce AS (
        SELECT pg_notify('order_events', CAST(moved.id AS text)) FROM moved
    )
    SELECT (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM announce) AS announced,
        (SELECT count(*) FROM wake) AS woke, (SELECT status FROM "order" WHERE id = :id) AS status,
        coalesce((SELECT status FROM verdict), (SELECT status FROM settled)) AS attempt_status
    """
)


@dataclass(frozen=True)
class Transition:
    moved: bool  # False: the order had already left pending_payment, or an operator settled the attempt
    status: OrderStatus  # the order's status after the call
    attempt_status: AttemptStatus | None = (
        None  # the verdict's attempt after the call (None: no attempt given)
    )


async def transition(
    conn: AsyncConnection,
    order_id: str,
    to: OrderStatus,
    reason: str,
    attempt: AttemptUpdate | None,
    event: dict[str, Any] | None = None,
) -> Transition:
    """Out of pending_payment, exactly once; the attempt whose verdict caused it records it, other
    open attempts follow the order, stock comes back unless paid, and `order.<status>` is published
    (with `event`'s fields: who acted, when an operator did)."""
    row = (
        await conn.execute(
            TRANSITION_SQL,
            {
                "id": order_id,
                "to": to.value,
                "reason": reason,
                "restock": to.restores_stock,
                "session_status": SESSION_FOR_ORDER[to].value,
                "open_status": OPEN_ATTEMPTS_BECOME[to].value,
                "attempt_no": attempt.attempt_no if attempt else None,
                "attempt_status": attempt.status if attempt else None,
                "result_code": attempt.result_code if attempt else None,
                "transaction_id": attempt.transaction_id if attempt else None,
                "received": attempt.received_amount if attempt else None,
                **event_params(f"order.{to.value}", **(event or {})),
            },
        )
    ).one()
    attempt_status = AttemptStatus(row.attempt_status) if row.attempt_status else None
    return Transition(
        moved=bool(row.moved),
        status=to if row.moved else OrderStatus(row.status),
        attempt_status=attempt_status,
    )


async def set_deadline(conn: AsyncConnection, order_id: str, expires_at: datetime) -> None:
    """A moved window (and its live streams told: `order_events`)."""
    await conn.execute(
        text(
            "WITH s AS (UPDATE order_session SET expires_at = :at, updated_at = now() WHERE order_id = :id) "
            "SELECT pg_notify('order_events', CAST(:id AS text))"
        ),
        {"at": expires_at, "id": order_id},
    )


# ---- reads -----------------------------------------------------------------------------------------------

ORDER_WITH_SESSION = select(
    order,
    session.c.id.label("session_id"),
    session.c.status.label("session_status"),
    session.c.expires_at,
    session.c.started_at,
    session.c.session_duration_minutes,
    session.c.payment_attempts,
    session.c.max_payment_attempts,
    session.c.last_payment_attempt,
).join(session, session.c.order_id == order.c.id)


async def find(
    conn: AsyncConnection, *, order_id: uuid.UUID | None = None, order_code: int | None = None
) -> Any:
    """The order joined with its session, by id or by 9-digit code (None: no such order)."""
    key = order.c.id == order_id if order_id is not None else order.c.order_code == order_code
    return (await conn.execute(ORDER_WITH_SESSION.where(key))).first()


async def items(conn: AsyncConnection, order_id: Any) -> list[Any]:
    return list(
        (
            await conn.execute(select(item).where(item.c.order_id == order_id).order_by(item.c.variant_id))
        ).all()
    )


async def attempts(conn: AsyncConnection, order_id: Any) -> list[Any]:
    rows = await conn.execute(
        select(payment).where(payment.c.order_id == order_id).order_by(payment.c.attempt_no)
    )
    return list(rows.all())


@dataclass(frozen=True)
class OrderFilter:
    customer_id: str | None = None
    status: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    late_payment: bool | None = None
    payment_status: str | None = None  # orders with an attempt in this status


async def listing(
    conn: AsyncConnection, where: OrderFilter, money_first: tuple[str, ...], limit: int, offset: int
) -> tuple[int, list[Any]]:
    """One page of orders, newest first, with each order's payment status (the attempt holding its
    money, in `money_first` order, else its latest), and the total that match. Archived orders
    are left out."""
    conditions = [~order.c.archived]
    if where.customer_id is not None:
        conditions.append(order.c.customer_id == where.customer_id)
    if where.status is not None:
        conditions.append(order.c.status == where.status)
    if where.date_from is not None:
        conditions.append(order.c.created_at >= where.date_from)
    if where.date_to is not None:
        conditions.append(order.c.created_at < where.date_to)
    if where.late_payment is not None:
        conditions.append(order.c.late_payment == where.late_payment)
    if where.payment_status is not None:
        conditions.append(
            select(literal(1))
            .where(payment.c.order_id == order.c.id, payment.c.status == where.payment_status)
            .exists()
        )
    money = func.array_position(array(list(money_first)), payment.c.status)
    payment_status = (
        select(payment.c.status)
        .where(payment.c.order_id == order.c.id)
        .order_by(money.asc().nulls_last(), payment.c.attempt_no.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = select(order, session.c.expires_at, payment_status.label("payment_status")).join(
        session, session.c.order_id == order.c.id
    )
    return await page_of(
        conn, query, order, conditions, (order.c.created_at.desc(), order.c.id), limit, offset
    )
