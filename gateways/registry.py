"""Which adapters exist and how to build them from Settings."""

from __future__ import annotations

from collections.abc import Callable

from domain.settings import Settings
from gateways.base import PaymentGateway
from gateways.momo import MomoGateway
from gateways.payos import PayOSGateway
from gateways.vnpay import VnpayGateway

GATEWAY_NAMES = ("momo", "vnpay", "payos")
# Gateways whose unpaid links can be cancelled through their API (MoMo's and VNPay's lapse).
CANCELLABLE_LINKS = frozenset({"payos"})

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

_FACTORIES: dict[str, Callable[[Settings], PaymentGateway]] = {
    "momo": MomoGateway,
    "vnpay": VnpayGateway,
    "payos": PayOSGateway,
}


def get_gateway(name: str, settings: Settings) -> PaymentGateway:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise KeyError(f"unknown gateway {name!r}; expected one of {GATEWAY_NAMES}") from None
    return factory(settings)


def build_gateways(settings: Settings) -> dict[str, PaymentGateway]:
    return {name: get_gateway(name, settings) for name in GATEWAY_NAMES}
