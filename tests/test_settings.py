"""Configuration refuses what would be unsafe or meaningless."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.settings import Settings, parse_durations


def test_order_type_durations_parse_with_fractions():
    assert parse_durations("normal=15, vip=30,quick=0.1") == {"normal": 15.0, "vip": 30.0, "quick": 0.1}
    s = Settings(order_type_durations="normal=15,flash=0.1", order_session_duration_minutes=7)
    assert s.window_minutes("flash") == 0.1 and s.window_minutes("normal") == 15


@pytest.mark.parametrize("spec", ["normal", "vip=0", "=5", "quick=-1", "x=abc"])
def test_bad_durations_are_refused(spec):
    with pytest.raises(ValidationError):
        Settings(order_type_durations=spec)


REAL_KEYS = {
    "momo_secret_key": "m" * 32,
    "vnpay_hash_secret": "v" * 32,
    "payos_api_key": "p" * 20,
    "payos_checksum_key": "c" * 32,
}
VNPAY_CONTRACT = {
    "vnpay_payment_url": "https://pay.example.vn/vpcpay.html",
    "vnpay_api_url": "https://pay.example.vn/merchant_webapi/api/transaction",
}


def test_production_refuses_the_dev_secret_and_public_gateway_keys():
    with pytest.raises(ValidationError, match="AUTH_JWT_SECRET"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="sandbox keys"):
        Settings(environment="production", auth_jwt_secret="s" * 40, **VNPAY_CONTRACT)
    ok = Settings(environment="production", auth_jwt_secret="s" * 40, **REAL_KEYS, **VNPAY_CONTRACT)
    assert ok.public_base_url == "http://127.0.0.1:8000"
    with pytest.raises(ValidationError):
        Settings(auth_jwt_secret="short")


def test_the_sandbox_is_off_unless_asked_for_and_never_beside_a_real_gateway():
    default = Settings()
    assert default.sandbox_enabled is False
    # Off: the gateways' documented hosts (test hosts outside production).
    assert default.momo_endpoint == "https://test-payment.momo.vn"
    assert default.payos_base_url == "https://api-merchant.payos.vn"
    assert default.vnpay_api_url == "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction"
    on = Settings(sandbox_enabled=True, public_base_url="http://127.0.0.1:8123")
    assert on.momo_endpoint == "http://127.0.0.1:8123/sandbox/momo"
    # A compose service name or a private address is this deployment's own sandbox: allowed.
    Settings(
        sandbox_enabled=True, momo_endpoint="http://api:8000/sandbox/momo", payos_base_url="http://10.0.0.5/x"
    )
    with pytest.raises(ValidationError, match="MOMO_ENDPOINT point at a real host"):
        Settings(sandbox_enabled=True, momo_endpoint="https://payment.momo.vn")
    with pytest.raises(ValidationError, match="refused in production"):
        Settings(environment="production", auth_jwt_secret="s" * 40, sandbox_enabled=True, **REAL_KEYS)


def test_production_needs_vnpays_contract_urls_and_takes_the_documented_hosts():
    with pytest.raises(ValidationError, match="VNPAY_PAYMENT_URL, VNPAY_API_URL must be set in production"):
        Settings(environment="production", auth_jwt_secret="s" * 40, **REAL_KEYS)
    prod = Settings(environment="production", auth_jwt_secret="s" * 40, **REAL_KEYS, **VNPAY_CONTRACT)
    assert (
        prod.momo_endpoint == "https://payment.momo.vn"
        and prod.payos_base_url == "https://api-merchant.payos.vn"
    )


def test_api_docs_are_off_in_production_unless_enabled():
    assert Settings().docs_enabled is True
    prod = {"environment": "production", "auth_jwt_secret": "s" * 40, **REAL_KEYS, **VNPAY_CONTRACT}
    assert Settings(**prod).docs_enabled is False
    assert Settings(**prod, docs_enabled=True).docs_enabled is True
