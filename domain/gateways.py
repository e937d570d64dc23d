"""The gateways we take and their rules: names, what each accepts for one payment, which can cancel
an unpaid link. Pure: the workflow decides with these, the adapters live in gateways/."""

from __future__ import annotations

GATEWAY_NAMES = ("momo", "vnpay", "payos")
# Gateways whose unpaid links can be cancelled through their API (MoMo's and VNPay's lapse).
CANCELLABLE_LINKS = frozenset({"payos"})
# Gateways with a refund API. PayOS has none: money received by transfer goes back by bank transfer,
# and an operator records it (`mark-refunded`).
REFUND_API = frozenset({"momo", "vnpay"})

# What each gateway accepts for one payment, in VND. MoMo's wallet range is documented
# (GATEWAYS.md); VNPay's 5,000 minimum and "under one billion" come from its merchant guide;
# PayOS's bounds are unconfirmed (a bank transfer; we refuse only the absurd).
AMOUNT_LIMITS: dict[str, tuple[int, int]] = {
    "momo": (1_000, 50_000_000),
    "vnpay": (5_000, 999_999_999),
    "payos": (1_000, 10_000_000_000),
}


def amount_problem(gateway: str, amount: int) -> str | None:
    """Why `gateway` cannot take `amount`, or None when it can."""
    low, high = AMOUNT_LIMITS[gateway]
    if low <= amount <= high:
        return None
    return f"{gateway} accepts {low:,} to {high:,} VND; this order is {amount:,} VND"
