"""Configuration refuses what would be unsafe or meaningless."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.settings import Settings, parse_durations


def test_order_type_durations_parse_with_fractions():
    assert parse_durations("normal=15, vip=30,quick=0.1") == {"normal": 15.0, "vip": 30.0, "quick": 0.1}
    s = Settings(order_type_durations="normal=15,flash=0.1", order_session_duration_minutes=7)
    assert s.window_minutes("flash") == 0.1 and s.window_minutes("normal") == 15


@pytest.mark.parametrize("spec", ["normal", "vip=0", "=5", "quick=-1", "x=abc"])
def test_bad_durations_are_refused(spec):
    with pytest.raises(ValidationError):
        Settings(order_type_durations=spec)


def test_production_refuses_the_dev_secret_and_public_gateway_keys():
    with pytest.raises(ValidationError, match="AUTH_JWT_SECRET"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="sandbox keys"):
        Settings(environment="production", auth_jwt_secret="s" * 40, sandbox_enabled=False)
    ok = Settings(
        environment="production", auth_jwt_secret="s" * 40, sandbox_enabled=False, momo_secret_key="m" * 32,
        vnpay_hash_secret="v" * 32, payos_api_key="p" * 20, payos_checksum_key="c" * 32,
    )  # fmt: skip
    assert ok.public_base_url == "http://127.0.0.1:8000"
    with pytest.raises(ValidationError):
        Settings(auth_jwt_secret="short")
