"""The sandbox as a process of its own, the way production meets MoMo, VNPay and PayOS: over HTTP,
somewhere else. The bench runs it so that the gateways' CPU is not counted as ours; chaos builds on
it (chaos/gateway_app.py) so that killing our API does not make "the gateways" forget a payment.

The API and the worker reach it through their ordinary settings (`MOMO_ENDPOINT`,
`VNPAY_PAYMENT_URL`, `VNPAY_API_URL`, `PAYOS_BASE_URL`: `devstack.stack.Stack.gateway_env`), and its
notifications go to the merchant's webhooks at `SANDBOX_MERCHANT_URL`. `PUBLIC_BASE_URL` is this
process's own address (the pay pages it hands out).

Run with `uvicorn devstack.sandbox.app:app_factory --factory`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI

from devstack.sandbox import PAYOS_WEBHOOK_PATH, SANDBOX_PREFIX, VNPAY_IPN_PATH, build_sandbox_router
from devstack.sandbox.state import SandboxStore
from infra.settings import Settings


def create_sandbox_app(settings: Settings, merchant_url: str, **fastapi: Any) -> tuple[FastAPI, SandboxStore]:
    """The sandbox's routes under /sandbox and a /healthz; `fastapi` goes to FastAPI (a lifespan)."""
    router = build_sandbox_router(
        settings,
        vnpay_ipn_url=f"{merchant_url}{VNPAY_IPN_PATH}",
        payos_webhook_url=f"{merchant_url}{PAYOS_WEBHOOK_PATH}",
    )
    app = FastAPI(title="Paywindow gateway sandbox", **fastapi)
    app.include_router(router, prefix=SANDBOX_PREFIX)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app, router.sandbox_store


def merchant_url() -> str:
    return os.environ["SANDBOX_MERCHANT_URL"].rstrip("/")


def app_factory() -> FastAPI:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s gateways %(levelname)s %(name)s: %(message)s"
    )
    return create_sandbox_app(Settings(), merchant_url())[0]
