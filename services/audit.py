"""The audit trail as the API writes and reads it: an entry for each operator action (built here,
written by the store in the transaction that makes the change), and the trail's pages."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.messages import AuditEntry
from domain.operator_actions import OperatorAction
from services.caller import User
from services.schemas import AuditOut, Page
from store import audit


def audit_entry(user: User, action: OperatorAction, note: str = "", **subject: Any) -> AuditEntry:
    """A new entry for `user`'s action; `subject`: order_id, payment_id, variant_id, notification_id
    (ids as text or UUID) and `detail`. Its id is chosen here, once per request."""
    ids = {k: str(v) for k, v in subject.items() if k != "detail" and v is not None}
    return AuditEntry(
        id=str(uuid.uuid4()),
        actor=user.id,
        action=action,
        note=note,
        detail=subject.get("detail", {}),
        **ids,
    )


async def audit_page(
    conn: AsyncConnection,
    page: int,
    size: int,
    order_id: uuid.UUID | None,
    payment_id: uuid.UUID | None,
    variant_id: uuid.UUID | None,
) -> Page[AuditOut]:
    where = audit.AuditFilter(order_id=order_id, payment_id=payment_id, variant_id=variant_id)
    total, rows = await audit.entries(conn, where, size, (page - 1) * size)
    items = [
        AuditOut(
            audit_id=r.id,
            at=r.at,
            actor=r.actor,
            action=r.action,
            order_id=r.order_id,
            order_code=r.order_code,
            payment_id=r.payment_id,
            variant_id=r.variant_id,
            notification_id=r.notification_id,
            note=r.note,
            detail=r.detail,
        )
        for r in rows
    ]
    return Page(items=items, page=page, size=size, total=total)
