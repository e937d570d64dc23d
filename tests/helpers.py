"""Helpers tests share: signed gateway messages built from the documented recipe, the sandbox's pay
page as a shopper uses it, polling reads, and orders for the operators' desk."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from gateways.momo import NOTIFY_SIGNED, MomoGateway, momo_signature


def momo_ipn(
    momo: MomoGateway, order_id: str, request_id: str, amount: int, result_code: int, secret: str | None = None
) -> dict[str, Any]:
    """A MoMo IPN body as MoMo sends it, signed with the configured (or a forged) secret."""
    body: dict[str, Any] = {
        "partnerCode": momo._partner_code,
        "orderId": order_id,
        "requestId": request_id,
        "amount": amount,
        "orderInfo": "Order",
        "orderType": "momo_wallet",
        "transId": 4_000_000_000 + result_code + amount,
        "resultCode": result_code,
        "message": "Successful." if result_code == 0 else "Failed.",
        "payType": "qr",
        "responseTime": int(time.time() * 1000),
        "extraData": "",
    }
    values = {**body, "accessKey": momo._access_key}
    body["signature"] = momo_signature(secret or momo._secret_key, NOTIFY_SIGNED, values)
    return body


async def wait_for_status(stack: Any, order_id: str, headers: dict[str, str], status: str, timeout: float = 10) -> dict:
    """Read the order until it reaches `status` (the workflow acts asynchronously on signals)."""
    deadline = time.monotonic() + timeout
    detail: dict = {}
    while time.monotonic() < deadline:
        detail = (await stack.http.get(f"/orders/{order_id}", headers=headers)).json()["data"]
        if detail["status"] == status:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} is {detail.get('status')}, expected {status}")


async def open_pay_page(payment_url: str) -> str:
    """What the shopper's browser does with the payment URL: land on the gateway's pay page."""
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as http:
        r = await http.get(payment_url)
    assert r.status_code == 200 and "/sandbox/pay/" in str(r.url), (r.status_code, r.url)
    assert "Pay" in r.text
    return str(r.url)


async def click(pay_page: str, action: str, **knobs: Any) -> dict[str, Any]:
    """A button on the pay page (`drop=True`: the gateway sends no notification of it)."""
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{pay_page}/{action}", json=knobs, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


# ---- the operators' desk ---------------------------------


async def desk_order(stack: Any, gateway: str, price: int = 64_000) -> tuple[dict, dict[str, str]]:
    """A new shopper's pending order of one unit of a new product."""
    product = await stack.product(stock=5, price=price)
    headers = stack.auth(f"desk-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, product["variants"][0]["id"], 1, gateway=gateway)
    assert r.status_code == 201, r.text
    return r.json()["data"], headers


async def expire_now(stack: Any, order: dict) -> None:
    r = await stack.http.post(f"/admin/orders/{order['orderId']}/expire", headers=stack.auth("desk-admin", "admin"))
    assert r.status_code == 200 and r.json()["data"]["status"] == "expired", r.text
