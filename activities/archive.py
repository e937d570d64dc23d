"""The daily archive's effect: mark orders that ended long ago `archived`, in batches (the rules
and statements are store/archive.py's)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.messages import ArchiveInput, ArchiveResult
from store import archive

log = logging.getLogger(__name__)


class ArchiveActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @activity.defn
    async def archive_ended_orders(self, inp: ArchiveInput) -> ArchiveResult:
        """Idempotent: archived orders are not picked again, so a retried run carries on where the
        last one stopped (its progress comes back in the heartbeat details)."""
        if inp.batch_size < 1 or inp.older_than_days < 0:  # LIMIT 0 would loop forever
            raise ApplicationError(
                f"bad archive input {inp}", type="INVALID_ARCHIVE_INPUT", non_retryable=True
            )
        details = activity.info().heartbeat_details
        archived, batches = (int(details[0]), int(details[1])) if len(details) >= 2 else (0, 0)
        async with self.engine.connect() as conn:
            cutoff = await archive.cutoff(conn, inp.older_than_days)
        while True:
            async with self.engine.begin() as conn:  # each batch its own transaction
                moved = await archive.archive_batch(conn, cutoff, inp.batch_size)
            if moved:
                archived, batches = archived + moved, batches + 1
            activity.heartbeat(archived, batches)
            if moved < inp.batch_size:  # the last, partial batch: nothing eligible is left
                break
        async with self.engine.connect() as conn:
            held = await archive.held_for_refund(conn, cutoff)
        log.info("archived %d orders in %d batches; %d held for a refund", archived, batches, held)
        return ArchiveResult(archived=archived, batches=batches, held_for_refund=held, cutoff=cutoff)
