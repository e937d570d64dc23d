"""Which adapters exist and how to build them from Settings."""

from __future__ import annotations

from collections.abc import Callable

from domain.gateways import GATEWAY_NAMES
from gateways.base import PaymentGateway
from gateways.momo import MomoGateway
from gateways.payos import PayOSGateway
from gateways.vnpay import VnpayGateway
from infra.settings import Settings

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
