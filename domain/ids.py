"""Identifiers: an order's workflow, a late payment's settlement, a refund and its key at the
gateway, the order id an Idempotency-Key stands for, a new 9-digit order code."""

from __future__ import annotations

import secrets
import uuid

IDEMPOTENCY_NS = uuid.UUID("7d1b3c1e-8f7a-4a53-9a55-6b1f3f0c2a10")


def workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


def late_workflow_id(gateway: str, gateway_order_id: str, transfer: str | None = None) -> str:
    """One late-payment settlement per attempt, or per transfer (`transfer`: its reference) where one
    link takes several (PayOS: domain/verdicts.py)."""
    return f"late-{gateway}-{gateway_order_id}" + (f"-{transfer}" if transfer else "")


def refund_workflow_id(payment_id: str) -> str:
    """An operator's refund of one payment: concurrent requests join the same run."""
    return f"refund-{payment_id}"


def refund_key(order_id: str, attempt_no: int) -> str:
    """The idempotency key of a payment's refund at its gateway, whoever asks (the late-payment
    settlement or an operator): the gateway refunds one payment once, however often it is asked."""
    return f"rf-{order_id}-{attempt_no}"


def surplus_refund_key(payment_id: str) -> str:
    """The refund key of a surplus row (money beside an attempt: store/payments.py): its own, never
    its attempt's, which the gateway would take for the attempt's refund."""
    return f"rs-{payment_id}"


def order_id_for(customer_id: str, idempotency_key: str | None) -> str:
    """Same customer + same Idempotency-Key -> same order id -> same workflow -> same order."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NS, f"{customer_id}\n{idempotency_key}"))


def new_order_code() -> int:
    """9 random digits, so no order code can be guessed from the previous one."""
    return 100_000_000 + secrets.randbelow(900_000_000)
