"""Configuration from the environment (pydantic-settings).

Durations are minutes and accept fractions (`0.1` = 6 s) so tests and demos run fast.
Unset `DATABASE_URL` / `TEMPORAL_ADDRESS` mean "use the embedded services under DATA_DIR"
(see devstack/). Gateway keys default to fixed test keys; gateway URLs to the local sandbox when
SANDBOX_ENABLED=true (`make dev`, the tests), else to the gateways' documented hosts, so the same
adapters reach the real gateways by configuration alone.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"
GATEWAY_URLS = ("momo_endpoint", "vnpay_payment_url", "vnpay_api_url", "payos_base_url")
SANDBOX_PATHS = {
    "momo_endpoint": "/momo",
    "vnpay_payment_url": "/vnpay/paymentv2/vpcpay.html",
    "vnpay_api_url": "/vnpay/merchant_webapi/api/transaction",
    "payos_base_url": "/payos",
}
# With the sandbox off and a URL unset: the gateways' documented hosts (shared/GATEWAYS.md).
TEST_HOSTS = {
    "momo_endpoint": "https://test-payment.momo.vn",
    "vnpay_payment_url": "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html",
    "vnpay_api_url": "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction",
    "payos_base_url": "https://api-merchant.payos.vn",
}
# VNPay's production URLs come with the merchant contract: they must be set.
PRODUCTION_HOSTS = {
    "momo_endpoint": "https://payment.momo.vn",
    "payos_base_url": "https://api-merchant.payos.vn",
}


def is_local(url: str) -> bool:
    """A host on this machine or its private network (loopback, a private address, or a one-label
    name such as a compose service `api`), never a gateway on the internet."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or (host and "." not in host and ":" not in host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def parse_durations(spec: str) -> dict[str, float]:
    """`normal=15,vip=30,quick=5` -> {"normal": 15.0, ...}; raises ValueError on bad input."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, minutes = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad ORDER_TYPE_DURATIONS entry {part!r}, expected name=minutes")
        value = float(minutes)
        if value <= 0:
            raise ValueError(f"ORDER_TYPE_DURATIONS {name!r} must be positive")
        out[name.strip()] = value
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path(".data")
    database_url: str | None = None
    db_pool_size: int = 10
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "orders"
    temporal_tls_cert: Path | None = None  # PEM client certificate (mTLS, e.g. Temporal Cloud)
    temporal_tls_key: Path | None = None  # PEM key for temporal_tls_cert
    temporal_api_key: str | None = None  # Temporal Cloud API key; implies TLS
    temporal_port: int = 7233  # embedded dev server only
    temporal_ui_port: int = 8233
    # The Temporal Web UI operators open (/ops links each order there); unset: 127.0.0.1:$TEMPORAL_UI_PORT.
    temporal_ui_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str | None = None  # how gateways and browsers reach this API
    frontend_return_url: str | None = None
    auth_jwt_secret: str = DEV_JWT_SECRET
    max_body_bytes: int = 64 * 1024
    rate_limit_per_minute: int = 1200  # per client IP on /api/v1 (webhooks and returns apart); 0 = off
    return_rate_limit_per_minute: int = 60  # per client IP on the gateways' browser returns; 0 = off
    # Shop origins whose pages may call the routes <paywindow-checkout> uses (comma-separated; empty:
    # no cross-origin answers at all). Webhooks and admin routes never answer cross-origin.
    allowed_origins: str = ""
    client_secret_margin_minutes: float = Field(30, gt=0)  # a client secret outlives its window by this

    order_session_duration_minutes: float = Field(15, gt=0)
    order_session_max_attempts: int = Field(3, ge=0)
    order_type_durations: str = "normal=15,vip=30,quick=5"
    order_session_reminder_minutes: float = Field(3, ge=0)
    payment_in_flight_grace_minutes: float = Field(5, ge=0)
    # At the deadline every open attempt's gateway is asked at once within this budget; one that does
    # not answer counts as in flight (asked again every 15 s, within the grace).
    reconcile_budget_seconds: float = Field(5, gt=0, le=10)
    late_payment_policy: Literal["refund", "accept_if_available"] = "refund"

    # Reminders (webhook and/or SMTP; the log when neither is set) and order events.
    reminder_webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "Paywindow <no-reply@paywindow.local>"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    order_events_urls: str = ""  # comma-separated endpoints that receive order events
    # The relay's backoff for a receiver that fails grows to at most this: a receiver that is back
    # gets its backlog within this long.
    order_events_retry_cap_seconds: float = Field(60, ge=1, le=3600)
    notification_secret: str = "dev-only-notification-secret-change-me"  # HMAC key for both

    archive_after_days: float = Field(30, gt=0)  # ended orders older than this leave default listings
    archive_batch_size: int = Field(1000, ge=1, le=100_000)  # orders per archive transaction
    worker_metrics_address: str = ""  # host:port for the worker's Temporal SDK metrics; empty = off
    # The SDK's sandbox re-imports the workflow modules for every workflow instance: about half the
    # worker's CPU per order and most of its memory per cached order. The test suite runs with it on,
    # so a non-deterministic call in workflow code fails CI; production runs the same code without it.
    workflow_sandbox: bool = False
    max_cached_workflows: int = Field(2000, ge=0)

    # The fake gateways under /sandbox (anyone can "pay" there): off unless asked for. `make dev` and
    # the tests turn it on; it is refused in production and next to a real gateway host.
    sandbox_enabled: bool = False
    docs_enabled: bool | None = None  # /docs, /redoc, /openapi.json; unset: on except in production
    # MoMo's published test credentials; the sandbox checks signatures with the same keys.
    momo_partner_code: str = "MOMOBKUN20180529"
    momo_access_key: str = "klm05TvNBzhg7h7j"
    momo_secret_key: str = "at67qH6mk8w5Y1nAyMoYKMWACiEi2bsa"
    momo_endpoint: str | None = None
    vnpay_tmn_code: str = "PAYWIN01"
    vnpay_hash_secret: str = "PAYWINDOWSANDBOXVNPAYSECRET00001"
    vnpay_payment_url: str | None = None
    vnpay_api_url: str | None = None
    payos_client_id: str = "paywindow-sandbox-client"
    payos_api_key: str = "paywindow-sandbox-api-key"
    payos_checksum_key: str = "paywindow-sandbox-checksum-key-0001"
    payos_base_url: str | None = None

    @field_validator("order_type_durations")
    @classmethod
    def _check_durations(cls, v: str) -> str:
        parse_durations(v)
        return v

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.environment == "production" and self.auth_jwt_secret == DEV_JWT_SECRET:
            raise ValueError("AUTH_JWT_SECRET must be set to a real secret in production")
        if len(self.auth_jwt_secret) < 32:
            raise ValueError("AUTH_JWT_SECRET must be at least 32 characters")
        if self.environment == "production":
            # The sandbox keys are in this repository: a gateway "signed" with them is anyone.
            public = [
                name.upper()
                for name in ("momo_secret_key", "vnpay_hash_secret", "payos_api_key", "payos_checksum_key")
                if getattr(self, name) == type(self).model_fields[name].default
            ]
            if public:
                raise ValueError(", ".join(public) + " still hold the public sandbox keys")
        base = (self.public_base_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")
        self.public_base_url = base
        if self.sandbox_enabled:
            if self.environment == "production":
                raise ValueError(
                    "SANDBOX_ENABLED=true is refused in production: anyone could mark orders paid"
                )
            remote = [
                name.upper()
                for name in GATEWAY_URLS
                if not is_local(getattr(self, name) or "http://localhost")
            ]
            if remote:
                # The sandbox signs with the configured keys: beside a real gateway, anyone could "pay".
                raise ValueError(", ".join(remote) + " point at a real host while SANDBOX_ENABLED=true")
            hosts = {name: f"{base}/sandbox{path}" for name, path in SANDBOX_PATHS.items()}
        else:
            hosts = dict(TEST_HOSTS if self.environment != "production" else PRODUCTION_HOSTS)
        unset = [name.upper() for name in GATEWAY_URLS if not getattr(self, name) and name not in hosts]
        if unset:
            raise ValueError(", ".join(unset) + " must be set in production (from your gateway contract)")
        self.momo_endpoint = (self.momo_endpoint or hosts["momo_endpoint"]).rstrip("/")
        self.vnpay_payment_url = self.vnpay_payment_url or hosts["vnpay_payment_url"]
        self.vnpay_api_url = self.vnpay_api_url or hosts["vnpay_api_url"]
        self.payos_base_url = (self.payos_base_url or hosts["payos_base_url"]).rstrip("/")
        self.frontend_return_url = self.frontend_return_url or f"{base}/payment-result"
        self.temporal_ui_url = (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip(
            "/"
        )
        if self.docs_enabled is None:
            self.docs_enabled = self.environment != "production"
        return self

    @property
    def durations_by_type(self) -> dict[str, float]:
        return parse_durations(self.order_type_durations)

    def window_minutes(self, order_type: str) -> float:
        """The order type picks its window; unknown types are refused by the API before this."""
        return self.durations_by_type.get(order_type, self.order_session_duration_minutes)

    @property
    def event_endpoints(self) -> list[str]:
        return [u.strip() for u in self.order_events_urls.split(",") if u.strip()]

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def api_prefix(self) -> str:
        return "/api/v1"


@lru_cache
def get_settings() -> Settings:
    return Settings()
