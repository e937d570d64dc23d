"""The one rule for verified money: only a success for exactly the attempt's amount pays an order.

Everything else that carries money (a transfer for more or less than asked, PayOS UNDERPAID, a
success with no amount, a success for an attempt the order does not know) is kept and flagged
`needs_review` with the reason this module gives. Pure: used by the workflow, the late-payment
settlement and the webhook intake alike.
"""

from __future__ import annotations

from domain.statuses import PaymentOutcome


def money_problem(outcome: PaymentOutcome | str, amount: int | None, expected: int | None) -> str | None:
    """Why a verdict's money cannot pay an attempt of `expected` VND, or None when it can (or when
    the verdict carries no money at all). `expected` None: no attempt of ours matches it."""
    outcome = PaymentOutcome(outcome)
    if not outcome.carries_money:
        return None
    if expected is None:
        return "payment for an attempt the order does not know"
    if amount is None:
        return f"{outcome.value} without an amount"
    if outcome is PaymentOutcome.UNDERPAID or amount < expected:
        return f"underpaid: received {amount} of {expected} VND"
    if amount > expected:
        return f"overpaid: received {amount} of {expected} VND"
    return None
