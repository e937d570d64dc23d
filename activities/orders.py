"""Order activities: the checkout snapshot, the terminal transition, a moved deadline (with the
operator's audit entry when an operator caused it). Each is
idempotent, because Temporal may run an activity again after a crash between its commit and the
workflow hearing of it. The SQL is the store's (store/orders.py, store/inventory.py)."""

from __future__ import annotations

import dataclasses
import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from domain.checkout import Rejected
from domain.gateways import amount_problem
from domain.messages import (
    CreateOrderInput,
    CreateOrderResult,
    DeadlineInput,
    TransitionInput,
    TransitionResult,
)
from domain.statuses import OrderStatus
from infra.db import autocommit
from store import audit, inventory, orders

log = logging.getLogger(__name__)


class OrderActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = autocommit(engine)  # for a lone statement (infra/db.py)

    @activity.defn
    async def create_order(self, inp: CreateOrderInput) -> CreateOrderResult:
        """Freeze the snapshot and reserve stock in one transaction (or write nothing)."""
        try:
            async with self.engine.begin() as conn:
                lines = await inventory.reserve(conn, inp.lines, unless_made=inp.order_id)
                if lines is None:  # made by an earlier try of this step
                    return CreateOrderResult(order=await orders.load_created(conn, inp.order_id))
                total = sum(line.unit_price * line.quantity for line in lines)
                problem = amount_problem(inp.gateway, total) if inp.gateway else None
                if problem:
                    raise Rejected("AMOUNT_OUT_OF_RANGE", problem)  # rolls the reservation back
                return CreateOrderResult(order=await orders.create(conn, inp, lines))
        except Rejected as rejected:
            return CreateOrderResult(error=rejected.code, message=rejected.message)

    @activity.defn
    async def transition_order(self, inp: TransitionInput) -> TransitionResult:
        """The guarded transition; an operator's cancel is audited in its transaction (and named in
        its `order.cancelled`), only when the order did move."""
        entry = dataclasses.replace(inp.audit, order_id=inp.order_id) if inp.audit else None
        # One statement unless an operator's entry goes with it.
        async with self.engine.begin() if entry else self.single.connect() as conn:
            moved = await orders.transition(
                conn,
                order_id=inp.order_id,
                to=OrderStatus(inp.to_status),
                reason=inp.reason,
                attempt=inp.attempt,
                event=audit.event_fields(entry) if entry else None,
            )
            if moved.moved and entry is not None:
                await audit.record(conn, entry)
        # The chaos run's double-transition check reads these lines (chaos/invariants.py).
        log.info(
            "order %s -> %s (%s)%s", inp.order_id, moved.status, inp.reason, "" if moved.moved else " [no-op]"
        )
        return TransitionResult(
            status=moved.status, transitioned=moved.moved, attempt_status=moved.attempt_status
        )

    @activity.defn
    async def set_deadline(self, inp: DeadlineInput) -> None:
        """The moved deadline; an operator's extend or expire is audited in the same transaction and
        published as `order.deadline_moved` (once, however often Temporal runs this)."""
        async with self.engine.begin() as conn:
            if inp.audit is not None:
                expires_at = inp.expires_at.isoformat()
                entry = dataclasses.replace(
                    inp.audit, order_id=inp.order_id, detail={**inp.audit.detail, "expiresAt": expires_at}
                )
                await audit.record(conn, entry, "order.deadline_moved", expiresAt=expires_at)
            await orders.set_deadline(conn, inp.order_id, inp.expires_at)
