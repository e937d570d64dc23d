"""Messages to the shopper (payment reminders): each channel claimed before it is sent, so it goes
out at most once per order, and only while the order still waits for payment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import Notification, Order, OrderSession, Payment

REMINDER = "payment_reminder"
notification, order, session, payment = (
    Notification.__table__,
    Order.__table__,
    OrderSession.__table__,
    Payment.__table__,
)

# Raw SQL on purpose: the claim is one guarded upsert: only for an order still pending, and only a
# channel never claimed or whose send failed (its claim is taken again).
CLAIM_SQL = text(
    """
    INSERT INTO notification (id, order_id, kind, channel, status)
    SELECT :nid, o.id, 'payment_reminder', :channel, 'sending' FROM "order" o
    WHERE o.id = :id AND o.status = 'pending_payment'
    ON CONFLICT (order_id, kind, channel) DO UPDATE SET status = 'sending', updated_at = now()
        WHERE notification.status = 'failed'
    RETURNING id
    """
)


@dataclass(frozen=True)
class Reminder:
    id: uuid.UUID  # the claim's id: the reminder's event id, what receivers deduplicate on
    order_code: int
    customer_id: str
    email: str | None
    expires_at: datetime
    payment_url: str | None  # the latest attempt's link


async def claim_reminder(conn: AsyncConnection, order_id: str, channel: str) -> Reminder | None:
    """This channel's reminder for the order, claimed (None: sent before, or the order has ended)."""
    claim = (await conn.execute(CLAIM_SQL, {"nid": uuid.uuid4(), "id": order_id, "channel": channel})).first()
    if claim is None:
        return None
    latest_link = (
        select(payment.c.payment_url)
        .where(payment.c.order_id == order.c.id)
        .order_by(payment.c.attempt_no.desc())
        .limit(1)
        .scalar_subquery()
    )
    row = (
        await conn.execute(
            select(
                order.c.order_code,
                order.c.customer_id,
                order.c.receiver_email,
                session.c.expires_at,
                latest_link.label("payment_url"),
            )
            .join(session, session.c.order_id == order.c.id)
            .where(order.c.id == order_id)
        )
    ).one()
    return Reminder(
        id=claim.id,
        order_code=row.order_code,
        customer_id=row.customer_id,
        email=row.receiver_email,
        expires_at=row.expires_at,
        payment_url=row.payment_url,
    )


async def mark_reminder(
    conn: AsyncConnection, order_id: str, channel: str, status: str, detail: str | None
) -> None:
    """sent | skipped | failed (a failed one counts in `failures` and may be claimed again)."""
    await conn.execute(
        update(notification)
        .where(
            notification.c.order_id == order_id,
            notification.c.kind == REMINDER,
            notification.c.channel == channel,
        )
        .values(
            status=status,
            detail=detail,
            updated_at=func.now(),
            failures=notification.c.failures + int(status == "failed"),
        )
    )
