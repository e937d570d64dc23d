"""The registry builds one adapter per gateway, configured from Settings."""

from __future__ import annotations

import pytest

from domain.gateways import GATEWAY_NAMES
from gateways.momo import MomoGateway
from gateways.payos import PayOSGateway
from gateways.registry import build_gateways, get_gateway
from gateways.vnpay import VnpayGateway
from tests.gateways.harness import make_settings


def test_build_gateways() -> None:
    gateways = build_gateways(make_settings("http://shop.example"))
    assert tuple(gateways) == GATEWAY_NAMES == ("momo", "vnpay", "payos")
    assert [type(g) for g in gateways.values()] == [MomoGateway, VnpayGateway, PayOSGateway]
    assert all(name == g.name for name, g in gateways.items())


def test_get_gateway() -> None:
    assert isinstance(get_gateway("vnpay", make_settings()), VnpayGateway)
    with pytest.raises(KeyError, match="zalopay"):
        get_gateway("zalopay", make_settings())


def test_adapters_follow_settings_to_the_real_hosts() -> None:
    settings = make_settings(
        sandbox_enabled=False,
        momo_endpoint="https://payment.momo.vn",
        vnpay_payment_url="https://pay.example.vn/paymentv2/vpcpay.html",
    )
    momo, vnpay, payos = build_gateways(settings).values()
    assert momo._endpoint == "https://payment.momo.vn"
    assert vnpay._payment_url.startswith("https://pay.example.vn/")
    # Unset, with the sandbox off: the gateways' documented test hosts.
    assert vnpay._api_url.startswith("https://sandbox.vnpayment.vn/")
    assert payos._base_url == "https://api-merchant.payos.vn/"
