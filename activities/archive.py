"""The daily archive's effect: mark orders that ended long ago `archived`, in batches.

Archiving only hides an order from listings (`NOT o.archived` in api/read.py); nothing is deleted,
so `/metrics` counters and `/admin/stats` over old ranges still see it. An order whose late payment
still waits for a refund (`refund_required`, e.g. PayOS, which has no refund API) stays visible until
an operator settles it, however old it is.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.archive import ARCHIVE_ACTIVITY, ArchiveInput, ArchiveResult

log = logging.getLogger(__name__)

ELIGIBLE = """
    NOT o.archived AND o.ended_at < :cutoff
    AND {negation} EXISTS (SELECT 1 FROM payment p WHERE p.order_id = o.id AND p.status = 'refund_required')
"""
# SKIP LOCKED: an order a late payment is settling right now is simply taken tomorrow. updated_at
# is left alone: it tracks the order's own lifecycle, and archiving is housekeeping.
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


class ArchiveActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn(name=ARCHIVE_ACTIVITY)
    async def archive_ended_orders(self, inp: ArchiveInput) -> ArchiveResult:
        """Idempotent: archived orders are not picked again, so a retried run carries on where the
        last one stopped (its progress comes back in the heartbeat details)."""
        if inp.batch_size < 1 or inp.older_than_days < 0:  # LIMIT 0 would loop forever
            raise ApplicationError(f"bad archive input {inp}", type="INVALID_ARCHIVE_INPUT", non_retryable=True)
        details = activity.info().heartbeat_details
        archived, batches = (int(details[0]), int(details[1])) if len(details) >= 2 else (0, 0)
        async with self.engine.connect() as conn:
            # Database time, like ended_at: no skew between the worker's clock and the rows'.
            cutoff = (
                await conn.execute(
                    text("SELECT now() - make_interval(secs => :secs)"), {"secs": inp.older_than_days * 86400.0}
                )
            ).scalar_one()
        while True:
            async with self.engine.begin() as conn:  # each batch its own transaction
                moved = (await conn.execute(BATCH_SQL, {"cutoff": cutoff, "limit": inp.batch_size})).rowcount
            if moved:
                archived, batches = archived + moved, batches + 1
            activity.heartbeat(archived, batches)
            if moved < inp.batch_size:  # the last, partial batch: nothing eligible is left
                break
        async with self.engine.connect() as conn:
            held = (await conn.execute(HELD_SQL, {"cutoff": cutoff})).scalar_one()
        log.info("archived %d orders in %d batches; %d held for a refund", archived, batches, held)
        return ArchiveResult(archived=archived, batches=batches, held_for_refund=held, cutoff=cutoff)
