"""Abuse and authorization: tokens, roles, body size, rate limits, tampered notifications, secrets
in logs, and the database refusing to rewrite frozen order items."""

from __future__ import annotations

import logging
import time
import uuid

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from gateways.momo import MomoGateway
from tests.conftest import free_port, make_settings, serve
from tests.helpers import momo_ipn, wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="session")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "claims_or_token",
    [
        "wrong-secret",
        "alg-none",
        "expired",
        {"role": "customer", "exp": "soon"},
        {"sub": "x", "exp": None},
        {"sub": "x", "role": "superuser"},
        {"sub": "", "role": "customer"},
        {"sub": "x", "role": "admin", "alg": "HS512"},
    ],
)
async def test_bad_tokens_are_refused(stack, claims_or_token):
    secret = stack.settings.auth_jwt_secret
    now = int(time.time())
    if claims_or_token == "wrong-secret":
        token = jwt.encode({"sub": "x", "role": "admin", "exp": now + 60}, "y" * 40, algorithm="HS256")
    elif claims_or_token == "alg-none":
        token = jwt.encode({"sub": "x", "role": "admin", "exp": now + 60}, None, algorithm="none")
    elif claims_or_token == "expired":
        token = jwt.encode({"sub": "x", "role": "admin", "exp": now - 5}, secret, algorithm="HS256")
    else:
        claims = dict(claims_or_token)
        alg = claims.pop("alg", "HS256")
        if claims.get("exp") == "soon" or "exp" not in claims:
            claims["exp"] = now + 60
        claims = {k: v for k, v in claims.items() if v is not None}
        token = jwt.encode(claims, secret, algorithm=alg)
    r = await stack.http.get("/orders", headers=bearer(token))
    assert r.status_code == 401, (claims_or_token, r.text)
    assert r.json()["error"] == "INVALID_TOKEN" and r.headers["www-authenticate"] == "Bearer"


async def test_admin_routes_check_the_role(stack):
    customer = stack.auth("not-an-admin")
    product = await stack.product()
    oid = (await stack.order(customer, product["variants"][0]["id"])).json()["data"]["orderId"]
    for method, path, body in (
        ("POST", "/admin/products", {"name": "x", "variants": [{"sku": "S-1", "name": "x", "price": 1, "stockQuantity": 1}]}),
        ("POST", f"/admin/orders/{oid}/extend", {"minutes": 60}),
        ("POST", f"/admin/orders/{oid}/expire", None),
    ):
        r = await stack.http.request(method, path, json=body, headers=customer)
        assert r.status_code == 403 and r.json()["error"] == "FORBIDDEN", path
    detail = (await stack.http.get(f"/orders/{oid}", headers=customer)).json()["data"]
    assert detail["status"] == "pending_payment" and detail["session"]["timeoutMinutes"] == 15


async def test_request_bodies_have_a_size_limit(stack):
    headers = {**stack.auth(), "content-type": "application/json"}
    big = b'{"items": [], "pad": "' + b"x" * (stack.settings.max_body_bytes + 10) + b'"}'
    r = await stack.http.post("/orders", content=big, headers=headers)
    assert r.status_code == 413 and r.json()["error"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(stack.settings.max_body_bytes // 1000 + 5):
            yield b" " * 1000

    r = await stack.http.post("/orders", content=chunks(), headers=headers)
    assert r.status_code == 413


async def test_public_endpoints_are_rate_limited_but_webhooks_are_not(pg_url, stack):
    port = free_port()
    settings = make_settings(pg_url, port, rate_limit_per_minute=5, temporal_address=stack.settings.temporal_address)
    server, task = await serve(create_app(settings), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1") as http:
            codes = [(await http.get("/products")).status_code for _ in range(7)]
            assert codes[:5] == [200] * 5 and codes[5:] == [429, 429], codes
            limited = await http.get("/products")
            assert limited.json()["error"] == "RATE_LIMITED"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            for _ in range(3):  # a gateway retrying a notification is never turned away
                r = await http.post("/webhooks/momo", json={"orderId": "x"})
                assert r.status_code == 400
    finally:
        server.should_exit = True
        await task


async def test_tampered_and_replayed_notifications_change_nothing(stack):
    product = await stack.product(stock=2, price=90_000)
    headers = stack.auth("tamper")
    order = (await stack.order(headers, product["variants"][0]["id"])).json()["data"]
    attempt = order["attempts"][0]
    momo = MomoGateway(stack.settings)
    failed = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 90_000, 1001)
    tampered = {**failed, "resultCode": 0}  # flip the verdict, keep the old signature
    assert (await stack.http.post("/webhooks/momo", json=tampered)).status_code == 400
    other_order = {**failed, "orderId": "123456789-0"}
    assert (await stack.http.post("/webhooks/momo", json=other_order)).status_code == 400
    assert (await stack.http.post("/webhooks/momo", json={**failed, "signature": ""})).status_code == 400
    assert (await stack.http.post("/webhooks/momo", content=b"not json")).status_code == 400
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "pending_payment" and detail["attempts"][0]["status"] == "pending"
    paid = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 90_000, 0)
    assert (await stack.http.post("/webhooks/momo", json=paid)).status_code == 204
    await wait_for_status(stack, order["orderId"], headers, "paid")
    for _ in range(2):  # replaying the old failure, or the success, moves nothing
        assert (await stack.http.post("/webhooks/momo", json=failed)).status_code == 204
        assert (await stack.http.post("/webhooks/momo", json=paid)).status_code == 204
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "paid" and detail["attempts"][0]["status"] == "success"
    assert await stack.stock(product["variants"][0]["id"]) == 1


async def test_secrets_never_reach_the_logs(stack, caplog):
    caplog.set_level(logging.DEBUG)
    token = stack.token("log-watcher")
    product = await stack.product()
    order = (await stack.order(bearer(token), product["variants"][0]["id"])).json()["data"]
    attempt = order["attempts"][0]
    momo = MomoGateway(stack.settings)
    forged = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 50_000, 0, secret="f" * 32)
    await stack.http.post("/webhooks/momo", json=forged)
    await stack.http.get("/orders", headers=bearer(token + "x"))
    await stack.http.post(f"/orders/{order['orderId']}/retry-payment", json={"gateway": "payos"}, headers=bearer(token))
    s = stack.settings
    secrets = [s.auth_jwt_secret, s.momo_secret_key, s.momo_access_key, s.vnpay_hash_secret,
               s.payos_api_key, s.payos_checksum_key, token]  # fmt: skip
    logged = caplog.text
    assert "momo" in logged.lower()  # the rejected notification was logged...
    for secret in secrets:
        assert secret not in logged  # ...without anything that would let a reader forge one


async def test_the_database_refuses_to_rewrite_order_items(stack):
    product = await stack.product()
    oid = (await stack.order(stack.auth(), product["variants"][0]["id"])).json()["data"]["orderId"]
    for statement in (
        "UPDATE order_item SET unit_price = 1 WHERE order_id = :id",
        "UPDATE order_item SET quantity = quantity + 1 WHERE order_id = :id",
    ):
        with pytest.raises(DBAPIError, match="immutable"):
            async with stack.engine.begin() as conn:
                await conn.execute(text(statement), {"id": oid})
    async with stack.engine.connect() as conn:
        price = (await conn.execute(text("SELECT unit_price FROM order_item WHERE order_id = :id"), {"id": oid})).scalar_one()
    assert price == 50_000


async def test_ids_leak_nothing_to_strangers(stack):
    product = await stack.product()
    order = (await stack.order(stack.auth("owner"), product["variants"][0]["id"])).json()["data"]
    stranger = stack.auth(f"stranger-{uuid.uuid4().hex[:4]}")
    for path in (f"/orders/{order['orderId']}", f"/orders/{order['orderCode']}", f"/orders/{order['orderId']}/session"):
        r = await stack.http.get(path, headers=stranger)
        missing = await stack.http.get(f"/orders/{uuid.uuid4()}", headers=stranger)
        assert r.status_code == missing.status_code == 404
        assert r.json()["error"] == missing.json()["error"] == "ORDER_NOT_FOUND"
