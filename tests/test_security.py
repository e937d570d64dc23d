"""Abuse and authorization: tokens, roles, body size, rate limits, tampered notifications, secrets
in logs, and the database refusing to rewrite frozen order items."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

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
        (
            "POST",
            "/admin/products",
            {"name": "x", "variants": [{"sku": "S-1", "name": "x", "price": 1, "stockQuantity": 1}]},
        ),
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
    settings = make_settings(
        pg_url, port, rate_limit_per_minute=5, temporal_address=stack.settings.temporal_address
    )
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
    other_order = {**failed, "orderId": f"{uuid.uuid4().int % 10**9:09d}-0"}
    watched = [attempt["gatewayOrderId"], other_order["orderId"]]
    assert await inbox_rows(stack, watched) == 0
    tampered = {**failed, "resultCode": 0}  # flip the verdict, keep the old signature
    assert (await stack.http.post("/webhooks/momo", json=tampered)).status_code == 400
    assert (await stack.http.post("/webhooks/momo", json=other_order)).status_code == 400
    assert (await stack.http.post("/webhooks/momo", json={**failed, "signature": ""})).status_code == 400
    assert (await stack.http.post("/webhooks/momo", content=b"not json")).status_code == 400
    forged = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 90_000, 0, secret="f" * 32)
    assert (await stack.http.post("/webhooks/momo", json=forged)).status_code == 400
    assert await inbox_rows(stack, watched) == 0  # nothing stored: the inbox counts none
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
    assert await inbox_rows(stack, watched) == 2  # the signed failure and the signed success, once each


async def inbox_rows(stack: Any, gateway_order_ids: list[str]) -> int:
    """Rows of the notification inbox (matched to an order or not) for these gateway order ids."""
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT count(*) FROM payment_notification WHERE gateway_order_id = ANY(:g)"),
                {"g": gateway_order_ids},
            )
        ).scalar_one()


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
    await stack.http.post(
        f"/orders/{order['orderId']}/retry-payment", json={"gateway": "payos"}, headers=bearer(token)
    )
    s = stack.settings
    secrets = [
        s.auth_jwt_secret,
        s.momo_secret_key,
        s.momo_access_key,
        s.vnpay_hash_secret,
        s.payos_api_key,
        s.payos_checksum_key,
        token,
    ]
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
        price = (
            await conn.execute(text("SELECT unit_price FROM order_item WHERE order_id = :id"), {"id": oid})
        ).scalar_one()
    assert price == 50_000


async def test_ids_leak_nothing_to_strangers(stack):
    product = await stack.product()
    order = (await stack.order(stack.auth("owner"), product["variants"][0]["id"])).json()["data"]
    stranger = stack.auth(f"stranger-{uuid.uuid4().hex[:4]}")
    for path in (
        f"/orders/{order['orderId']}",
        f"/orders/{order['orderCode']}",
        f"/orders/{order['orderId']}/session",
    ):
        r = await stack.http.get(path, headers=stranger)
        missing = await stack.http.get(f"/orders/{uuid.uuid4()}", headers=stranger)
        assert r.status_code == missing.status_code == 404
        assert r.json()["error"] == missing.json()["error"] == "ORDER_NOT_FOUND"


# ---- replays and floods cannot grow an order's history ----------------------------------------------


async def signals(stack: Any, order_id: str) -> int:
    history = await stack.client.get_workflow_handle(f"order-{order_id}").fetch_history()
    return sum(1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes"))


async def test_a_replayed_ipn_or_return_is_answered_without_signalling_again(stack):
    product = await stack.product(stock=2, price=90_000)
    headers = stack.auth("replayer")
    order = (await stack.order(headers, product["variants"][0]["id"])).json()["data"]
    attempt = order["attempts"][0]
    momo = MomoGateway(stack.settings)
    failed = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 90_000, 1001)
    for _ in range(10):  # the same signed IPN, replayed: MoMo hears 204 every time
        assert (await stack.http.post("/webhooks/momo", json=failed)).status_code == 204
    async with httpx.AsyncClient(base_url=stack.base) as http:
        for _ in range(10):  # the same signed browser return (MoMo's return carries the IPN's fields)
            r = await http.get("/api/v1/payments/momo/return", params=failed)
            assert r.status_code == 303 and "outcome=failed" in r.headers["location"]
    assert await signals(stack, order["orderId"]) == 1
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT count(*) FROM payment_notification WHERE order_id = :id"),
                {"id": order["orderId"]},
            )
        ).scalar_one()
    assert rows == 1


async def test_an_unsigned_payos_return_never_speaks_for_the_gateway(stack):
    """PayOS signs nothing on its return URL: a forged `status=PAID` only makes us ask PayOS."""
    product = await stack.product(stock=2, price=90_000)
    headers = stack.auth("forger")
    order = (await stack.order(headers, product["variants"][0]["id"], gateway="payos")).json()["data"]
    code = order["attempts"][0]["gatewayOrderId"]
    forged = {"code": "00", "id": "x", "cancel": "false", "status": "PAID", "orderCode": code}
    async with httpx.AsyncClient(base_url=stack.base) as http:
        for _ in range(5):
            r = await http.get("/api/v1/payments/payos/return", params=forged)
            assert r.status_code == 303 and "outcome=pending" in r.headers["location"]  # PayOS says PENDING
    async with stack.engine.connect() as conn:
        outcomes = (
            (
                await conn.execute(
                    text("SELECT outcome FROM payment_notification WHERE order_id = :id"),
                    {"id": order["orderId"]},
                )
            )
            .scalars()
            .all()
        )
    assert outcomes == ["pending"]  # PayOS's own answer, once; never the forged "PAID"
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "pending_payment"
    assert await signals(stack, order["orderId"]) == 1  # that answer, handed on once


async def test_gateway_queries_for_returns_are_shared_not_repeated() -> None:
    from services.payment_intake import GatewayQueries

    asked: list[str] = []

    class Gateway:
        name = "payos"

        async def query(self, gateway_order_id: str, *, created_at: Any) -> Any:
            asked.append(gateway_order_id)
            await asyncio.sleep(0.05)
            return "answer"

    class Engine:  # the attempt's creation time, as the database would give it
        def connect(self) -> Any:
            class Conn:
                async def __aenter__(self) -> Any:
                    return self

                async def __aexit__(self, *_: object) -> None:
                    return None

                async def execute(self, *_: Any) -> Any:
                    class Rows:
                        def scalar(self) -> Any:
                            return time.time()

                    return Rows()

            return Conn()

    queries = GatewayQueries(every_s=60)
    answers = await asyncio.gather(*(queries.ask(Engine(), Gateway(), "123") for _ in range(20)))
    assert answers == ["answer"] * 20 and asked == ["123"]
    await queries.ask(Engine(), Gateway(), "123", since="FT2")  # a new transfer asks afresh
    assert asked == ["123", "123"]


async def test_browser_returns_are_rate_limited_per_client(pg_url, stack):
    port = free_port()
    settings = make_settings(
        pg_url, port, return_rate_limit_per_minute=3, temporal_address=stack.settings.temporal_address
    )
    server, task = await serve(create_app(settings), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1") as http:
            codes = [
                (await http.get("/payments/momo/return", params={"orderId": "x"})).status_code
                for _ in range(5)
            ]
            assert codes == [400, 400, 400, 429, 429], codes
            assert (await http.get("/products")).status_code == 200  # the API's own limit is apart
    finally:
        server.should_exit = True
        await task


async def test_docs_are_off_in_production_unless_enabled(pg_url, stack):
    production = {
        "environment": "production",
        "sandbox_enabled": False,
        "auth_jwt_secret": "p" * 40,
        "momo_secret_key": "m" * 32,
        "vnpay_hash_secret": "v" * 32,
        "payos_api_key": "k" * 20,
        "payos_checksum_key": "c" * 32,
        "vnpay_payment_url": "https://pay.example.vn/vpcpay.html",
        "vnpay_api_url": "https://pay.example.vn/merchant_webapi/api/transaction",
    }
    for overrides, served in (({}, False), ({"docs_enabled": True}, True)):
        port = free_port()
        settings = make_settings(
            pg_url, port, temporal_address=stack.settings.temporal_address, **production, **overrides
        )
        server, task = await serve(create_app(settings), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for path in ("/docs", "/openapi.json"):
                    assert ((await http.get(path)).status_code == 200) is served, (path, overrides)
                assert (await http.get("/sandbox/")).status_code == 404  # never mounted in production
        finally:
            server.should_exit = True
            await task


async def test_stream_tokens_never_reach_the_access_log(stack):
    from api.app import RedactTokens, app_factory

    app_factory()  # as `uvicorn api.app:app_factory --factory` starts it
    assert any(isinstance(f, RedactTokens) for f in logging.getLogger("uvicorn.access").filters)
    token = stack.token("watcher")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v1/orders/x/events?token={token}&y=1", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    assert token not in record.getMessage() and "token=[redacted]&y=1" in record.getMessage()


async def test_nul_characters_are_refused_with_a_clear_error(stack):
    """Postgres text cannot hold NUL: a body, a path or a query carrying one gets 422, never a 500."""
    product = await stack.product()
    vid = product["variants"][0]["id"]
    receiver = {"name": "A\u0000B", "phone": "0901234567", "address": "HCMC"}
    r = await stack.http.post(
        "/orders",
        json={"items": [{"variantId": vid, "quantity": 1}], "gateway": "momo", "receiver": receiver},
        headers=stack.auth(),
    )
    assert r.status_code == 422 and r.json()["error"] == "VALIDATION_ERROR", r.text
    admin = stack.auth("ops", "admin")
    r = await stack.http.post(
        f"/admin/payments/{uuid.uuid4()}/mark-refunded", json={"reference": "\u0000"}, headers=admin
    )
    assert r.status_code == 422 and r.json()["error"] == "VALIDATION_ERROR", r.text
    for url in ("/orders?customerId=%00", "/orders/%00", "/admin/payments?gateway=momo%00"):
        r = await stack.http.get(url, headers=admin)
        assert r.status_code == 422 and r.json()["error"] == "VALIDATION_ERROR", (url, r.text)
    assert await stack.stock(vid) == 10  # nothing was reserved
