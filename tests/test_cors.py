"""CORS: ALLOWED_ORIGINS opens the routes <paywindow-checkout> calls to the listed shop origins,
preflight and actual requests alike; webhooks, admin routes and everything else never answer
cross-origin, and with ALLOWED_ORIGINS empty (the default) nothing does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from devstack.processes import free_port
from tests.conftest import make_settings, serve

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHOP = "http://shop.example:8080"


@pytest.fixture(scope="module")
async def cors_api(stack) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the suite's database with ALLOWED_ORIGINS set."""
    port = free_port()
    settings = make_settings(
        stack.settings.database_url,
        port,
        temporal_address=stack.settings.temporal_address,
        allowed_origins=f" {SHOP}/ , https://other-shop.vn",
        rate_limit_per_minute=0,
    )
    server, task = await serve(create_app(settings), port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        yield http
    server.should_exit = True
    await task


def preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def an_order(stack) -> tuple[str, str]:
    product = await stack.product()
    headers = stack.auth(f"cors-{uuid.uuid4().hex[:8]}")
    order = (await stack.order(headers, product["variants"][0]["id"])).json()["data"]
    minted = await stack.http.post(f"/orders/{order['orderId']}/client-secret", headers=headers)
    return order["orderId"], minted.json()["data"]["clientSecret"]


async def test_allowed_origins_parse_as_a_comma_separated_list():
    settings = make_settings(
        "postgresql://unused@/db", 1, allowed_origins=" https://a.vn/, ,https://b.vn:8443 "
    )
    assert settings.cors_origins == ["https://a.vn", "https://b.vn:8443"]
    assert make_settings("postgresql://unused@/db", 1).cors_origins == []  # empty by default


async def test_the_elements_routes_answer_the_listed_origins(stack, cors_api):
    ref, secret = await an_order(stack)
    for method, path in (
        ("GET", f"/api/v1/orders/{ref}"),
        ("GET", f"/api/v1/orders/{ref}/session"),
        ("GET", f"/api/v1/orders/{ref}/events"),
        ("POST", f"/api/v1/orders/{ref}/retry-payment"),
        ("POST", f"/api/v1/orders/{ref}/cancel"),
    ):
        r = await cors_api.options(path, headers=preflight(SHOP, method))
        assert r.status_code == 200, (path, r.text)
        assert r.headers["access-control-allow-origin"] == SHOP
        assert method in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in r.headers  # a header secret, never cookies
        # An origin not listed gets no grant.
        refused = await cors_api.options(path, headers=preflight("https://evil.example", method))
        assert refused.headers.get("access-control-allow-origin") is None, path
    actual = await cors_api.get(
        f"/api/v1/orders/{ref}", headers={"Origin": SHOP, "Authorization": f"Bearer {secret}"}
    )
    assert actual.status_code == 200 and actual.headers["access-control-allow-origin"] == SHOP
    # A refusal carries the grant too, so the element can read the error code.
    wrong = await cors_api.get(
        f"/api/v1/orders/{ref}", headers={"Origin": SHOP, "Authorization": "Bearer pwcs_x"}
    )
    assert wrong.status_code == 401 and wrong.headers["access-control-allow-origin"] == SHOP


async def test_webhooks_admin_and_the_rest_never_answer_cross_origin(stack, cors_api):
    ref, _ = await an_order(stack)
    never = [
        ("POST", "/api/v1/webhooks/momo"),
        ("GET", "/api/v1/webhooks/vnpay"),
        ("POST", "/api/v1/webhooks/payos"),
        ("GET", "/api/v1/payments/momo/return"),
        ("POST", f"/api/v1/admin/orders/{ref}/extend"),
        ("POST", f"/api/v1/admin/orders/{ref}/expire"),
        ("GET", "/api/v1/admin/payments"),
        ("GET", "/api/v1/admin/stats"),
        ("POST", "/api/v1/admin/products"),
        ("GET", "/api/v1/orders"),
        ("POST", "/api/v1/orders"),  # listing and creation: the shop's backend
        ("POST", f"/api/v1/orders/{ref}/client-secret"),
        ("POST", f"/api/v1/orders/{ref}/events/token"),
    ]
    for method, path in never:
        r = await cors_api.options(path, headers=preflight(SHOP, method))
        assert r.status_code != 200 and "access-control-allow-origin" not in r.headers, (path, r.status_code)
        actual = await cors_api.request(method, path, headers={"Origin": SHOP})
        assert "access-control-allow-origin" not in actual.headers, path


async def test_with_allowed_origins_empty_nothing_answers_cross_origin(stack):
    ref, secret = await an_order(stack)
    async with httpx.AsyncClient(base_url=stack.base) as http:
        r = await http.options(f"/api/v1/orders/{ref}", headers=preflight(SHOP))
        assert "access-control-allow-origin" not in r.headers
        actual = await http.get(
            f"/api/v1/orders/{ref}", headers={"Origin": SHOP, "Authorization": f"Bearer {secret}"}
        )
        assert actual.status_code == 200 and "access-control-allow-origin" not in actual.headers
