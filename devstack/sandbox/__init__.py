"""A local fake of MoMo, VNPay and PayOS (dev tooling), served under /sandbox beside the API by
the dev app (devstack/app.py), or as a process of its own (app.py).

Same paths, fields and signatures as the real gateways, so the adapters run unchanged;
the payment URLs lead to a hosted pay page with Pay / Fail / Decline / Cancel buttons.
State is in memory and per process (see state.py).
"""

from __future__ import annotations

from fastapi import APIRouter

from devstack.sandbox.control import control_routes
from devstack.sandbox.momo import MomoSim, momo_routes
from devstack.sandbox.pages import pages_routes
from devstack.sandbox.payos import PayOSSim, payos_routes
from devstack.sandbox.state import GatewaySim, Sandbox, SandboxStore
from devstack.sandbox.vnpay import VnpaySim, vnpay_routes
from infra.settings import Settings

SANDBOX_PREFIX = "/sandbox"
VNPAY_IPN_PATH = "/api/v1/webhooks/vnpay"  # registered with VNPay per merchant account
PAYOS_WEBHOOK_PATH = "/api/v1/webhooks/payos"  # registered with PayOS (confirm-webhook)


class SandboxRouter(APIRouter):
    sandbox_store: SandboxStore  # the state behind the routes, for tests and debugging


def build_sandbox_router(
    settings: Settings,
    *,
    prefix: str = SANDBOX_PREFIX,
    vnpay_ipn_url: str | None = None,
    payos_webhook_url: str | None = None,
) -> SandboxRouter:
    """Routes to mount at `prefix` (the URLs the sandbox hands out assume that prefix).

    The store behind them is reachable as `router.sandbox_store` for tests and debugging.
    """
    base = settings.public_base_url or ""
    sandbox = Sandbox(
        settings=settings,
        store=SandboxStore(),
        base_url=f"{base}{prefix}",
        vnpay_ipn_url=vnpay_ipn_url or f"{base}{VNPAY_IPN_PATH}",
        payos_webhook_url=payos_webhook_url or f"{base}{PAYOS_WEBHOOK_PATH}",
    )
    momo, vnpay, payos = MomoSim(sandbox), VnpaySim(sandbox), PayOSSim(sandbox)
    sims: dict[str, GatewaySim] = {momo.name: momo, vnpay.name: vnpay, payos.name: payos}
    router = SandboxRouter()
    router.include_router(momo_routes(momo))
    router.include_router(vnpay_routes(vnpay))
    router.include_router(payos_routes(payos))
    router.include_router(pages_routes(sandbox, sims))
    router.include_router(control_routes(sandbox.store))
    router.sandbox_store = sandbox.store
    return router


__all__ = ["PAYOS_WEBHOOK_PATH", "SANDBOX_PREFIX", "VNPAY_IPN_PATH", "build_sandbox_router"]
