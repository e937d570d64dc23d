"""The order-event outbox: an event row is written in the same transaction as the change it
reports, so an event exists exactly when the change happened. The same statement wakes the relay
(activities/event_relay.py), which delivers it beside the workflows with the statements below."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.order_events import EVENT_TYPES
from store.tables import OrderEvent

event = OrderEvent.__table__
RELAY_CHANNEL = "paywindow_outbox"  # NOTIFYed with every event; the relay LISTENs


def insert_event(source: str) -> str:
    """The outbox row for the order row(s) `source` yields (a table alias with the order's columns:
    an `"order" o` in this statement, or a CTE that RETURNING them), as a CTE body: one home for the
    event's payload, which statements that change an order embed so the event costs no extra round
    trip. Binds :eid, :eid_text, :type and :extra; wake the relay with WAKE_RELAY."""
    return f"""
        INSERT INTO order_event (id, order_id, type, payload)
        SELECT :eid, o.id, :type, jsonb_build_object(
                'eventId', CAST(:eid_text AS text), 'type', CAST(:type AS text), 'orderId', o.id,
                'orderCode', o.order_code, 'customerId', o.customer_id, 'status', o.status,
                'grandTotal', o.grand_total, 'currencyCode', o.currency_code, 'reason', o.end_reason,
                'occurredAt', now()
            ) || CAST(:extra AS jsonb)
        FROM {source}
        RETURNING id
    """


WAKE_RELAY = "SELECT pg_notify('paywindow_outbox', '') FROM event"
ORDER_BY_ID = '"order" o WHERE o.id = :id'
# Raw SQL on purpose: the payload is built from the order row as it is in this transaction, and the
# same statement NOTIFYs the relay.
RECORD_SQL = text(f"WITH event AS ({insert_event(ORDER_BY_ID)}) {WAKE_RELAY}")


def event_params(event_type: str, **extra: Any) -> dict[str, Any]:
    assert event_type in EVENT_TYPES, event_type
    event_id = uuid.uuid4()
    return {
        "eid": event_id,
        "eid_text": str(event_id),
        "type": event_type,
        "extra": json.dumps(extra, default=str),
    }


async def record_event(conn: AsyncConnection, order_id: str, event_type: str, **extra: Any) -> None:
    """Call inside the transaction that made the change."""
    await conn.execute(RECORD_SQL, {"id": order_id, **event_params(event_type, **extra)})


# ---- the relay -----------------------------------------------------------------------------------------

# Only the oldest undelivered event of each order is ever due: an order's events go out in order,
# and one that keeps failing holds back its order's later ones (never another order's).
HEAD = """
    e.delivered_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM order_event older
        WHERE older.order_id = e.order_id AND older.delivered_at IS NULL
            AND (older.created_at, older.id) < (e.created_at, e.id)
    )
"""
# Raw SQL on purpose: claim and lease in one statement, skipping rows another relay holds.
CLAIM_SQL = text(
    f"""
    WITH due AS (
        SELECT e.id FROM order_event e
        WHERE {HEAD} AND e.next_attempt_at <= now()
        ORDER BY e.next_attempt_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    UPDATE order_event e SET next_attempt_at = now() + make_interval(secs => :lease)
    FROM due WHERE e.id = due.id
    RETURNING e.id, e.order_id, e.type, e.payload, e.attempts, e.created_at
    """
)
FAILED_SQL = text(
    """
    UPDATE order_event e SET attempts = e.attempts + 1, last_error = f.error,
        next_attempt_at = now() + make_interval(secs => least(:cap, power(2, e.attempts)))
    FROM unnest(CAST(:ids AS uuid[]), CAST(:errors AS text[])) AS f(id, error)
    WHERE e.id = f.id
    """
)


async def claim_due(conn: AsyncConnection, batch: int, lease_s: float) -> list[Any]:
    """Events due for delivery (at most one per order: its oldest undelivered), leased to this
    relay for `lease_s`, those due longest first."""
    return list((await conn.execute(CLAIM_SQL, {"batch": batch, "lease": lease_s})).all())


async def delivered(conn: AsyncConnection, ids: list[Any]) -> None:
    await conn.execute(
        update(event)
        .where(event.c.id.in_(ids))
        .values(delivered_at=func.now(), attempts=event.c.attempts + 1, last_error=None)
    )


async def failed(conn: AsyncConnection, errors: dict[Any, str], cap_s: float) -> None:
    """Each event tried again after 2^attempts seconds, at most `cap_s`."""
    await conn.execute(FAILED_SQL, {"ids": list(errors), "errors": list(errors.values()), "cap": cap_s})


NEXT_DUE_SQL = text(
    f"SELECT extract(epoch FROM min(e.next_attempt_at) - now()) FROM order_event e WHERE {HEAD}"
)


async def next_due_in(conn: AsyncConnection) -> float | None:
    """Seconds until the earliest claimable event is due (None: none waits)."""
    due = (await conn.execute(NEXT_DUE_SQL)).scalar()
    return None if due is None else float(due)


# ---- legacy: one order's events, delivered from its workflow (before critical-path-v1) ---------------


async def undelivered_of(conn: AsyncConnection, order_id: str) -> list[Any]:
    rows = await conn.execute(
        select(event.c.id, event.c.type, event.c.payload)
        .where(event.c.order_id == order_id, event.c.delivered_at.is_(None))
        .order_by(event.c.created_at, event.c.id)
    )
    return list(rows.all())


async def count_try(conn: AsyncConnection, event_id: Any) -> None:
    await conn.execute(update(event).where(event.c.id == event_id).values(attempts=event.c.attempts + 1))


async def mark_delivered(conn: AsyncConnection, event_id: Any) -> None:
    await conn.execute(update(event).where(event.c.id == event_id).values(delivered_at=func.now()))
