"""What operators do, by name: the actions the audit trail records (pure vocabulary)."""

from __future__ import annotations

from enum import StrEnum


class OperatorAction(StrEnum):
    ORDER_EXTEND = "order.extend"  # the payment window moved (minutes, positive or negative)
    ORDER_EXPIRE = "order.expire"  # the window closed now
    ORDER_CANCEL = "order.cancel"  # an admin cancelled the order
    PAYMENT_REFUND = "payment.refund"  # a gateway refund asked for (again)
    PAYMENT_MARK_REFUNDED = "payment.mark_refunded"  # the money went back outside the gateway
    NOTIFICATION_REDELIVER = "notification.redeliver"  # a stored verdict handed to its order again
    VARIANT_UPDATE = "variant.update"  # stock corrected, price changed, variant (de)activated
