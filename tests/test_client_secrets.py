"""Order-scoped client secrets over HTTP against the real stack: minted by the shop's backend with a
JWT, good for one order's detail, session, retry, cancel and (as `?clientSecret=`) its stream, and
refused everywhere else, for any other order, once expired, forged or revoked."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from services import client_secrets
from tests.test_events import stream

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Every route that takes a client secret, as (method, path template, body).
SCOPED = {
    "detail": ("GET", "/orders/{ref}", None),
    "session": ("GET", "/orders/{ref}/session", None),
    "retry": ("POST", "/orders/{ref}/retry-payment", {"gateway": "vnpay"}),
    "cancel": ("POST", "/orders/{ref}/cancel", {"reason": "changed my mind"}),
    "events": ("GET", "/orders/{ref}/events", None),
}


async def two_orders(stack: Any) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """One customer's two open orders: a secret for one must not open the other, even the same
    customer's."""
    product = await stack.product(stock=10)
    headers = stack.auth(f"cs-{uuid.uuid4().hex[:8]}")
    made = [await stack.order(headers, product["variants"][0]["id"]) for _ in range(2)]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    return headers, made[0].json()["data"], made[1].json()["data"]


async def mint(stack: Any, ref: str, headers: dict[str, str]) -> str:
    r = await stack.http.post(f"/orders/{ref}/client-secret", headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["data"]["clientSecret"]


async def call(stack: Any, route: str, ref: str, secret: str) -> tuple[int, str | None]:
    """(status, error code) of a route called with `secret` the way the element sends it."""
    method, path, body = SCOPED[route]
    url = path.format(ref=ref)
    if route == "events":  # EventSource cannot send a header: the stream takes it in the query
        async with stack.http.stream("GET", url, params={"clientSecret": secret}) as r:
            if r.status_code == 200:
                return 200, None
            await r.aread()
            return r.status_code, r.json().get("error")
    r = await stack.http.request(method, url, json=body, headers={"Authorization": f"Bearer {secret}"})
    return r.status_code, (r.json().get("error") if r.status_code >= 400 else None)


def claims_of(secret: str) -> dict[str, Any]:
    return jwt.decode(secret.removeprefix(client_secrets.PREFIX), options={"verify_signature": False})


async def test_mint_binds_one_order_and_expires_with_its_window_plus_the_margin(stack):
    headers, order, _ = await two_orders(stack)
    ref = order["orderId"]
    r = await stack.http.post(f"/orders/{ref}/client-secret", headers=headers)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert set(data) == {"clientSecret", "expiresAt"} and data["clientSecret"].startswith("pwcs_")
    window_end = datetime.fromisoformat(order["session"]["expiresAt"])
    margin = timedelta(minutes=stack.settings.client_secret_margin_minutes)
    assert abs(datetime.fromisoformat(data["expiresAt"]) - (window_end + margin)) < timedelta(seconds=2)
    assert claims_of(data["clientSecret"])["ord"] == ref
    # By its 9-digit code too, and by an admin (a shop's service account) for any order.
    admin = stack.auth("shop-backend", "admin")
    assert (
        await stack.http.post(f"/orders/{order['orderCode']}/client-secret", headers=admin)
    ).status_code == 201
    # Another customer cannot mint one for this order (404: ids leak nothing).
    stranger = await stack.http.post(f"/orders/{ref}/client-secret", headers=stack.auth("someone-else"))
    assert stranger.status_code == 404 and stranger.json()["error"] == "ORDER_NOT_FOUND"


async def test_every_scoped_route_serves_its_order_by_id_and_code(stack):
    headers, order, _ = await two_orders(stack)
    secret = await mint(stack, order["orderId"], headers)
    for ref in (order["orderId"], str(order["orderCode"])):
        for route in ("detail", "session", "events"):
            assert await call(stack, route, ref, secret) == (200, None), (route, ref)
    retry = await stack.http.post(
        f"/orders/{order['orderId']}/retry-payment",
        json={"gateway": "vnpay"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert retry.status_code == 200 and retry.json()["data"]["gateway"] == "vnpay", retry.text
    assert await call(stack, "cancel", order["orderId"], secret) == (200, None)
    detail = await stack.http.get(
        f"/orders/{order['orderId']}", headers={"Authorization": f"Bearer {secret}"}
    )
    assert detail.json()["data"]["status"] == "cancelled"
    # The shopper's cancel, not an operator's: the secret stands for the order's customer.
    async with stream(stack, order["orderId"], params={"clientSecret": secret}) as events:
        kind, pushed = await events.next()
        assert (
            kind == "session" and pushed["status"] == "cancelled" and pushed["endReason"] != "admin_cancelled"
        )


@pytest.mark.parametrize("route", list(SCOPED))
async def test_each_scoped_route_refuses_another_order_expired_forged_and_revoked(stack, route):
    headers, order, other = await two_orders(stack)
    ref, secret = order["orderId"], await mint(stack, order["orderId"], headers)
    key = stack.settings.auth_jwt_secret

    # Another order of the same customer, by id and by code: refused before it is looked up.
    assert await call(stack, route, other["orderId"], secret) == (403, "CLIENT_SECRET_WRONG_ORDER")
    assert await call(stack, route, str(other["orderCode"]), secret) == (403, "CLIENT_SECRET_WRONG_ORDER")

    # Expired: the same minted row, signed with the right key, past its expiry.
    claims = claims_of(secret)
    row = SimpleNamespace(
        id=uuid.UUID(claims["ord"]), order_code=int(claims["code"]), customer_id=claims["sub"]
    )
    stale = client_secrets.issue(
        key, secret_id=uuid.UUID(claims["jti"]), row=row, expires_at=datetime.now(UTC) - timedelta(seconds=5)
    )
    assert await call(stack, route, ref, stale) == (401, "CLIENT_SECRET_EXPIRED")

    # Forged: signed with another key; a claim changed without re-signing; the customer's JWT
    # dressed as a secret; a well-signed secret never minted here (no row).
    other_key = jwt.encode(claims, "x" * 32, algorithm="HS256")
    head, _, sig = secret.removeprefix(client_secrets.PREFIX).rpartition(".")
    body = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({**claims, "ord": other["orderId"]}).encode()
    ).decode()
    tampered = f"{head.split('.')[0]}.{body}.{sig}"
    dressed = client_secrets.PREFIX + headers["Authorization"].removeprefix("Bearer ")
    unminted = client_secrets.issue(
        key, secret_id=uuid.uuid4(), row=row, expires_at=datetime.now(UTC) + timedelta(1)
    )
    for forged in ("pwcs_" + other_key, client_secrets.PREFIX + tampered, dressed, unminted, "pwcs_garbage"):
        assert await call(stack, route, ref, forged) == (401, "INVALID_CLIENT_SECRET"), forged

    # Revoked: DELETE revokes every live secret of the order; a new mint works again.
    revoke = await stack.http.delete(f"/orders/{ref}/client-secret", headers=headers)
    assert revoke.status_code == 200 and revoke.json()["data"]["revoked"] == 1, revoke.text
    assert await call(stack, route, ref, secret) == (401, "CLIENT_SECRET_REVOKED")
    fresh = await mint(stack, ref, headers)
    assert (await call(stack, route, ref, fresh))[0] == 200


async def test_routes_outside_the_scope_refuse_a_valid_secret(stack):
    headers, order, _ = await two_orders(stack)
    ref = order["orderId"]
    secret = await mint(stack, ref, headers)
    as_bearer = {"Authorization": f"Bearer {secret}"}
    product = await stack.product()
    outside = [
        ("GET", "/orders", None),  # the customer's listing
        (
            "POST",
            "/orders",
            {
                "items": [{"variantId": product["variants"][0]["id"], "quantity": 1}],
                "receiver": {"name": "A", "phone": "0901234567", "address": "HCMC"},
            },
        ),
        ("POST", f"/orders/{ref}/client-secret", None),  # a secret cannot mint more secrets
        ("DELETE", f"/orders/{ref}/client-secret", None),
        ("POST", f"/orders/{ref}/events/token", None),
        ("POST", f"/admin/orders/{ref}/extend", {"minutes": 5}),
        ("POST", f"/admin/orders/{ref}/expire", None),
        ("GET", "/admin/payments", None),
    ]
    for method, path, body in outside:
        r = await stack.http.request(method, path, json=body, headers=as_bearer)
        assert r.status_code == 401 and r.json()["error"] == "INVALID_TOKEN", (method, path, r.text)
    # On the stream only as `?clientSecret=`: not as a bearer header, not as a stream token.
    events = f"/orders/{ref}/events"
    assert (await stack.http.get(events, headers=as_bearer)).status_code == 401
    assert (await stack.http.get(events, params={"token": secret})).status_code == 401
    # The order's own routes still take the secret (the refusals above are about scope).
    assert (await call(stack, "detail", ref, secret)) == (200, None)


async def test_client_secrets_never_reach_the_access_log(stack):
    from api.app import RedactTokens

    headers, order, _ = await two_orders(stack)
    secret = await mint(stack, order["orderId"], headers)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v1/orders/x/events?clientSecret={secret}&y=1", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    assert secret not in record.getMessage() and "clientSecret=[redacted]&y=1" in record.getMessage()
