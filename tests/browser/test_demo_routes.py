"""The demo's HTTP side without a browser: pages and assets, the demo token and where it exists."""

from __future__ import annotations

import httpx
import pytest

from api.routes.demo import build_router
from tests.conftest import make_settings


@pytest.mark.asyncio(loop_scope="session")
async def test_pages_and_assets_are_served_locally(stack):
    async with httpx.AsyncClient(base_url=stack.base) as http:
        for path in ("/demo", "/payment-result?orderId=x&outcome=success&gateway=momo"):
            r = await http.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert "http://" not in r.text and "https://" not in r.text  # no CDN: works offline
        for name, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
            r = await http.get(f"/demo/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        for bad in ("../events.py", "%2e%2e%2fevents.py", "nope.js", "index.html"):
            assert (await http.get(f"/demo/static/{bad}")).status_code == 404, bad
        config = (await http.get("/demo/config")).json()["data"]
        assert config["orderTypes"]["flash"] == 0.05 and config["demoTokens"] is True


@pytest.mark.asyncio(loop_scope="session")
async def test_demo_token_is_a_working_customer_token(stack):
    async with httpx.AsyncClient(base_url=stack.base) as http:
        minted = (await http.post("/demo/token")).json()["data"]
        assert minted["sub"].startswith("demo-") and minted["role"] == "customer"
        again = (await http.post("/demo/token", json={"sub": minted["sub"]})).json()["data"]
        assert again["sub"] == minted["sub"]
        for sub in ("alice", "demo-", "demo-" + "x" * 41, "demo-a b"):
            r = await http.post("/demo/token", json={"sub": sub})
            assert r.status_code == 422 and r.json()["error"] == "VALIDATION_ERROR", sub
    orders = await stack.http.get("/orders", headers={"Authorization": f"Bearer {minted['token']}"})
    assert orders.status_code == 200 and orders.json()["data"]["total"] == 0
    admin_only = await stack.http.post(
        "/admin/products", json={}, headers={"Authorization": f"Bearer {minted['token']}"}
    )
    assert admin_only.status_code == 403


# Production (the sandbox is refused there): real keys, VNPay's contract URLs.
PRODUCTION = {
    "environment": "production",
    "auth_jwt_secret": "p" * 40,
    "sandbox_enabled": False,
    "momo_secret_key": "m" * 32,
    "vnpay_hash_secret": "v" * 32,
    "payos_api_key": "k" * 20,
    "payos_checksum_key": "c" * 32,
    "vnpay_payment_url": "https://pay.example.vn/vpcpay.html",
    "vnpay_api_url": "https://pay.example.vn/merchant_webapi/api/transaction",
}


@pytest.mark.parametrize(
    ("overrides", "mounted"),
    [({}, True), ({"sandbox_enabled": False}, False), (PRODUCTION, False)],
)
def test_demo_token_exists_only_with_the_sandbox_outside_production(overrides, mounted):
    settings = make_settings("postgresql://unused@/db", 1, **overrides)
    paths = {route.path for route in build_router(settings).routes}
    assert ("/demo/token" in paths) is mounted
    assert {"/demo", "/payment-result", "/demo/static/{name}"} <= paths
