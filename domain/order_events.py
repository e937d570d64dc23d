"""The order events other systems receive (the hooks payments, inventory rollback and
fulfilment hang on), each written with the change it reports and delivered by the relay. An operator's
action on an order is published too (its event carries `actor`, `auditId` and `note`)."""

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
    "order.deadline_moved",  # an operator extended or closed the window
    "payment.refund_requested",  # an operator asked the gateway for the refund (again)
    "payment.verdict_redelivered",  # an operator handed a stored verdict to the order again
)
