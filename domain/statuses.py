"""Statuses and the rules that move between them (pure: no I/O, safe inside workflows)."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self is not OrderStatus.PENDING_PAYMENT

    @property
    def restores_stock(self) -> bool:
        """Every way out of pending_payment except `paid` gives the reserved stock back."""
        return self in (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.FAILED)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class AttemptStatus(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SYSTEM_ERROR = "system_error"
    REFUND_REQUIRED = "refund_required"
    REFUNDED = "refunded"
    NEEDS_REVIEW = "needs_review"  # verified money that cannot pay the order (wrong amount, unknown attempt)


# The attempt-status sets, named once: the workflow, the store (its SQL lists too) and chaos use these.
# Money the gateway took sits in the attempt: the order's, a person's to decide, or on its way back.
HOLDS_MONEY = frozenset(
    {AttemptStatus.SUCCESS, AttemptStatus.REFUND_REQUIRED, AttemptStatus.REFUNDED, AttemptStatus.NEEDS_REVIEW}
)
# Money with a decided home (the order's own success, a refund under way or done): no review overrides it.
SETTLED_MONEY = frozenset({AttemptStatus.SUCCESS, AttemptStatus.REFUND_REQUIRED, AttemptStatus.REFUNDED})
# Money whose story is over (it paid the order, or went back): the link is never cancelled, and late
# money on it is already settled. Unlike SETTLED_MONEY, a refund still owed is not at rest.
MONEY_AT_REST = frozenset({AttemptStatus.SUCCESS, AttemptStatus.REFUNDED})
# Money an operator decided about: nothing the workflow learns may pay the order with it again.
OPERATOR_SETTLED = frozenset({AttemptStatus.REFUND_REQUIRED, AttemptStatus.REFUNDED})
# A link that may still take money: open, or holding a short transfer that may yet become a full payment.
MAY_TAKE_MONEY = frozenset({AttemptStatus.PENDING, AttemptStatus.NEEDS_REVIEW})
# Money that waits for a person at the money desk.
NEEDS_PERSON = frozenset({AttemptStatus.REFUND_REQUIRED, AttemptStatus.NEEDS_REVIEW})


def values_of(statuses: frozenset[AttemptStatus]) -> tuple[str, ...]:
    """A set's values in the enum's order (a set's own order varies between runs): for SQL and listings."""
    return tuple(s.value for s in AttemptStatus if s in statuses)


class PaymentOutcome(StrEnum):
    """What a gateway's answer means for one attempt (adapters translate their codes into these)."""

    SUCCESS = "success"
    PENDING = "pending"  # link made, the shopper has not started paying: not final
    PROCESSING = "processing"  # in flight at the gateway: a deadline waits (bounded) for its verdict
    UNDERPAID = "underpaid"  # money arrived, but less than asked (PayOS): never pays, goes to review
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SYSTEM_ERROR = "system_error"
    NOT_FOUND = "not_found"  # query only: the gateway has no such payment
    # Not a verdict: a duplicate-id answer, a `99`, a code the adapter does not know. Nothing is
    # decided from it; the gateway is asked again (docs/GATEWAYS.md, "Answers that are not verdicts").
    UNKNOWN = "unknown"

    @property
    def carries_money(self) -> bool:
        return self in (PaymentOutcome.SUCCESS, PaymentOutcome.UNDERPAID)


# The session (the countdown's own status) mirrors the order's terminal state.
SESSION_FOR_ORDER: dict[OrderStatus, SessionStatus] = {
    OrderStatus.PENDING_PAYMENT: SessionStatus.ACTIVE,
    OrderStatus.PAID: SessionStatus.COMPLETED,
    OrderStatus.CANCELLED: SessionStatus.CANCELLED,
    OrderStatus.EXPIRED: SessionStatus.EXPIRED,
    OrderStatus.FAILED: SessionStatus.EXPIRED,
}

# What still-open attempts become when the order ends without their own verdict.
OPEN_ATTEMPTS_BECOME: dict[OrderStatus, AttemptStatus] = {
    OrderStatus.PAID: AttemptStatus.CANCELLED,
    OrderStatus.CANCELLED: AttemptStatus.CANCELLED,
    OrderStatus.EXPIRED: AttemptStatus.EXPIRED,
    OrderStatus.FAILED: AttemptStatus.FAILED,
}
