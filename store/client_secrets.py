"""Client secrets as Postgres holds them: which were minted for which order, until when, and
whether they were revoked. The secrets themselves are signed, never stored (api/client_secrets.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import ClientSecret

secret = ClientSecret.__table__


async def add(
    conn: AsyncConnection, *, secret_id: uuid.UUID, order_id: uuid.UUID, expires_at: datetime
) -> None:
    await conn.execute(insert(secret).values(id=secret_id, order_id=order_id, expires_at=expires_at))


async def find(conn: AsyncConnection, secret_id: uuid.UUID) -> Any:
    """The row (order_id, expires_at, revoked_at), or None for a secret never minted here."""
    query = select(secret.c.order_id, secret.c.expires_at, secret.c.revoked_at).where(
        secret.c.id == secret_id
    )
    return (await conn.execute(query)).first()


async def revoke_all(conn: AsyncConnection, order_id: uuid.UUID) -> int:
    """Revoke every live secret of the order; how many were."""
    result = await conn.execute(
        update(secret)
        .where(secret.c.order_id == order_id, secret.c.revoked_at.is_(None), secret.c.expires_at > func.now())
        .values(revoked_at=func.now())
    )
    return result.rowcount
