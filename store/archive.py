"""The daily archive's statements: orders that ended long ago are marked `archived` in batches.

Archiving only hides an order from listings (`NOT archived` in store/orders.py); nothing is deleted,
so /metrics counters and /admin/stats over old ranges still see it. An order whose late payment
still waits for a refund (`refund_required`, e.g. PayOS, which has no refund API) stays visible
until an operator settles it, however old it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

ELIGIBLE = """
    NOT o.archived AND o.ended_at < :cutoff
    AND {negation} EXISTS (SELECT 1 FROM payment p WHERE p.order_id = o.id AND p.status = 'refund_required')
"""
# Raw SQL on purpose: pick and mark a batch in one statement. SKIP LOCKED: an order a late payment
# is settling right now is simply taken tomorrow. updated_at is left alone: it tracks the order's
# own lifecycle, and archiving is housekeeping.
BATCH_SQL = text(
    f"""
    WITH batch AS (
        SELECT o.id FROM "order" o WHERE {ELIGIBLE.format(negation="NOT")}
        ORDER BY o.ended_at LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    UPDATE "order" o SET archived = true FROM batch WHERE o.id = batch.id
    """
)
HELD_SQL = text(f'SELECT count(*) FROM "order" o WHERE {ELIGIBLE.format(negation="")}')


async def cutoff(conn: AsyncConnection, older_than_days: float) -> datetime:
    """Database time, like ended_at: no skew between the worker's clock and the rows'."""
    return (await conn.execute(select(func.now() - timedelta(days=older_than_days)))).scalar_one()


async def archive_batch(conn: AsyncConnection, cutoff_at: datetime, limit: int) -> int:
    return (await conn.execute(BATCH_SQL, {"cutoff": cutoff_at, "limit": limit})).rowcount


async def held_for_refund(conn: AsyncConnection, cutoff_at: datetime) -> int:
    held: int = (await conn.execute(HELD_SQL, {"cutoff": cutoff_at})).scalar_one()  # count(*) from raw SQL
    return held
