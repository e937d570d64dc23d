"""The audit trail: every operator action, appended in the transaction that makes the change (so
a change that rolls back leaves no entry, and an entry always names a change that happened).
Postgres itself refuses to change or delete an entry (a trigger, migration 0005)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.messages import AuditEntry
from domain.operator_actions import OperatorAction
from store.outbox import record_event
from store.pages import page_of
from store.tables import AuditLog, Order

audit, order = AuditLog.__table__, Order.__table__


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def record(conn: AsyncConnection, entry: AuditEntry, event: str | None = None, **extra: Any) -> bool:
    """Append the entry (call inside the transaction that makes the change) and, when it concerns
    an order, publish `event` with it (actor, action, note, auditId). The entry's id makes a retried
    activity write it once: True when it was written now."""
    OperatorAction(entry.action)  # an unknown action is a bug, not an entry
    written = (
        await conn.execute(
            insert(audit)
            .values(
                id=uuid.UUID(entry.id),
                actor=entry.actor,
                action=entry.action,
                note=entry.note,
                order_id=_uuid(entry.order_id),
                payment_id=_uuid(entry.payment_id),
                variant_id=_uuid(entry.variant_id),
                notification_id=_uuid(entry.notification_id),
                detail=entry.detail,
            )
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(audit.c.id)
        )
    ).first()
    if written is not None and event is not None and entry.order_id is not None:
        await record_event(conn, entry.order_id, event, **event_fields(entry), **extra)
    return written is not None


def event_fields(entry: AuditEntry) -> dict[str, Any]:
    """What an order event says of the operator's action behind it."""
    return {"action": entry.action, "actor": entry.actor, "note": entry.note, "auditId": entry.id}


@dataclass(frozen=True)
class AuditFilter:
    order_id: uuid.UUID | None = None
    payment_id: uuid.UUID | None = None
    variant_id: uuid.UUID | None = None


async def entries(
    conn: AsyncConnection, where: AuditFilter, limit: int, offset: int
) -> tuple[int, list[Any]]:
    """One page of the trail, newest first, each entry with its order's code, and how many match."""
    conditions: list[ColumnElement[bool]] = []
    if where.order_id is not None:
        conditions.append(audit.c.order_id == where.order_id)
    if where.payment_id is not None:
        conditions.append(audit.c.payment_id == where.payment_id)
    if where.variant_id is not None:
        conditions.append(audit.c.variant_id == where.variant_id)
    query = select(audit, order.c.order_code).outerjoin(order, order.c.id == audit.c.order_id)
    return await page_of(conn, query, audit, conditions, (audit.c.at.desc(), audit.c.id), limit, offset)
