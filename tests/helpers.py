"""Helpers tests share: signed gateway messages built from the documented recipe, the sandbox's pay
page as a shopper uses it, polling reads, and money and verdicts that wait for an operator."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from gateways.momo import NOTIFY_SIGNED, MomoGateway, momo_signature
from services.payment_intake import as_verdict, dedupe_key
from store import payments


def momo_ipn(
    momo: MomoGateway,
    order_id: str,
    request_id: str,
    amount: int,
    result_code: int,
    secret: str | None = None,
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


async def wait_for_status(
    stack: Any, order_id: str, headers: dict[str, str], status: str, timeout: float = 10
) -> dict:
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


# ---- the operators' desk: money and verdicts that wait for a person ---------------------------------


async def desk_order(stack: Any, gateway: str, price: int = 64_000) -> tuple[dict, dict[str, str]]:
    """A new shopper's pending order of one unit of a new product."""
    product = await stack.product(stock=5, price=price)
    headers = stack.auth(f"desk-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, product["variants"][0]["id"], 1, gateway=gateway)
    assert r.status_code == 201, r.text
    return r.json()["data"], headers


async def expire_now(stack: Any, order: dict) -> None:
    r = await stack.http.post(
        f"/admin/orders/{order['orderId']}/expire", headers=stack.auth("desk-admin", "admin")
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "expired", r.text


async def money_awaiting_refund(stack: Any, gateway: str) -> dict:
    """An order whose window closed before the shopper paid at the gateway: the money waits for a
    refund (`refund_required`, as the late settlement leaves it when the gateway did not refund).
    MoMo and VNPay hold the money in their sandbox; PayOS (no refund API) never needs it there."""
    order, _ = await desk_order(stack, gateway)
    attempt = order["attempts"][0]
    page = await open_pay_page(attempt["paymentUrl"]) if gateway != "payos" else None
    await expire_now(stack, order)
    tx = None
    if page is not None:
        sent = (await click(page, "pay", drop=True))["notification"]  # paid; the notification is lost
        tx = str(sent["transId"] if gateway == "momo" else sent["vnp_TransactionNo"])
    async with stack.engine.begin() as conn:
        await payments.require_refund(conn, order["orderId"], 0, "0", tx, attempt["gatewayOrderId"])
    return order


async def stored_not_delivered(stack: Any, order: dict) -> str:
    """Pay a MoMo order at the gateway with the notification lost, and keep the verified verdict as
    the webhook does before it signals (here the signal never goes out). Returns the inbox row's id."""
    attempt = order["attempts"][0]
    sent = (await click(await open_pay_page(attempt["paymentUrl"]), "pay", drop=True))["notification"]
    result = MomoGateway(stack.settings).verify_notification(sent)
    async with stack.engine.begin() as conn:
        await payments.store_verdict(
            conn, order["orderId"], as_verdict(result), dedupe_key(result), payments.raw(result.raw)
        )
        row = await conn.execute(
            text("SELECT id FROM payment_notification WHERE order_id = :o"), {"o": order["orderId"]}
        )
        return str(row.scalar_one())
