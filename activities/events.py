"""The order-event outbox: an event row is written in the same transaction as the change it
reports, so an event exists exactly when the change happened. The same statement wakes the relay
(activities/event_relay.py), which delivers it beside the workflows."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

EVENT_TYPES = (
    "order.created",
    "order.paid",
    "order.cancelled",
    "order.expired",
    "order.failed",
    "payment.refund_required",
    "payment.refunded",
    "payment.needs_review",
)

RECORD_SQL = text(
    """
    WITH event AS (
        INSERT INTO order_event (id, order_id, type, payload)
        SELECT :eid, o.id, :type, jsonb_build_object(
                'eventId', CAST(:eid_text AS text), 'type', CAST(:type AS text), 'orderId', o.id,
                'orderCode', o.order_code, 'customerId', o.customer_id, 'status', o.status,
                'grandTotal', o.grand_total, 'currencyCode', o.currency_code, 'reason', o.end_reason,
                'occurredAt', now()
            ) || CAST(:extra AS jsonb)
        FROM "order" o WHERE o.id = :id
        RETURNING id
    )
    SELECT pg_notify('paywindow_outbox', '') FROM event
    """
)


async def record_event(conn: AsyncConnection, order_id: str, event_type: str, **extra: Any) -> None:
    """Call inside the transaction that made the change."""
    assert event_type in EVENT_TYPES, event_type
    event_id = uuid.uuid4()
    await conn.execute(
        RECORD_SQL,
        {
            "eid": event_id,
            "eid_text": str(event_id),
            "type": event_type,
            "id": order_id,
            "extra": json.dumps(extra, default=str),
        },
    )
