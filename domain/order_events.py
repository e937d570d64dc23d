"""The order events other systems receive (seed 004's hooks for payments, inventory and
fulfilment), each written with the change it reports and delivered by the relay."""

from __future__ import annotations

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
