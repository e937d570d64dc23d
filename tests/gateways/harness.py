"""Test support for the gateway tests: hermetic settings and a handle on the sandbox server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.sandbox.state import SandboxStore
from gateways.base import LinkRequest, PaymentGateway
from infra.settings import Settings

# Explicit values keep the tests independent of any .env or PAYOS_*/MOMO_* variables.
GATEWAY_SETTINGS: dict[str, Any] = {
    "environment": "test",
    "momo_partner_code": "MOMOBKUN20180529",
    "momo_access_key": "klm05TvNBzhg7h7j",
    "momo_secret_key": "at67qH6mk8w5Y1nAyMoYKMWACiEi2bsa",
    "momo_endpoint": None,
    "vnpay_tmn_code": "PAYWIN01",
    "vnpay_hash_secret": "PAYWINDOWSANDBOXVNPAYSECRET00001",
    "vnpay_payment_url": None,
    "vnpay_api_url": None,
    "payos_client_id": "paywindow-sandbox-client",
    "payos_api_key": "paywindow-sandbox-api-key",
    "payos_checksum_key": "paywindow-sandbox-checksum-key-0001",
    "payos_base_url": None,
    "sandbox_enabled": True,  # unset URLs: the sandbox under the test server's base URL
}


def make_settings(base_url: str = "http://127.0.0.1:9", **overrides: Any) -> Settings:
    return Settings(**{**GATEWAY_SETTINGS, "public_base_url": base_url, **overrides})


@dataclass
class SandboxEnv:
    settings: Settings
    base: str
    store: SandboxStore
    captured: list[dict[str, Any]] = field(default_factory=list)
    _codes: Iterator[int] = field(default_factory=lambda: itertools.count(100_000_001))

    def order_code(self) -> int:
        """A fresh 9-digit order code; the sandbox lives only as long as this session."""
        return next(self._codes)

    def link_request(
        self, gateway: PaymentGateway, *, amount: int = 50_000, expires_in: timedelta = timedelta(minutes=15)
    ) -> LinkRequest:
        code = self.order_code()
        now = datetime.now(UTC)
        return LinkRequest(
            gateway_order_id=gateway.make_gateway_order_id(code, 1),
            request_id=f"req-{code}-1",
            amount=amount,
            description=f"Thanh toán đơn hàng {code}",
            created_at=now - timedelta(seconds=1),
            expires_at=now + expires_in,
            return_url=f"{self.base}/api/v1/payments/{gateway.name}/return",
            ipn_url=f"{self.base}/api/v1/webhooks/{gateway.name}",
        )

    def notifications(self, gateway: str, order_id: str) -> list[dict[str, Any]]:
        key = {"momo": "orderId", "vnpay": "vnp_TxnRef"}.get(gateway)
        out = []
        for note in self.captured:
            if note["gateway"] != gateway:
                continue
            if gateway == "payos":
                ident = str(((note["json"] or {}).get("data") or {}).get("orderCode"))
            else:
                ident = (note["json"] or note["query"]).get(key)
            if ident == order_id:
                out.append(note)
        return out

    async def wait_notifications(
        self, gateway: str, order_id: str, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.notifications(gateway, order_id)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} {gateway} notification(s) for {order_id}, got {found}")
