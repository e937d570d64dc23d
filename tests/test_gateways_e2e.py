"""Each gateway end to end over HTTP: order -> payment link -> the sandbox's hosted pay page ->
a signed notification back to our webhook -> the workflow -> Postgres. Plus the edges: failures and
retries, declines, lost, duplicated, forged and late notifications."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from devstack.app import create_dev_app
from domain.ids import late_workflow_id
from domain.messages import LatePayment
from gateways.payos import payos_signature
from gateways.vnpay import VnpayGateway
from gateways.vnpay_wire import vnpay_secure_hash
from tests.conftest import free_port, serve
from tests.helpers import click, open_pay_page, wait_for_status
from worker import running_worker
from workflows.late_payment import LatePaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def new_order(stack: Any, gateway: str, stock: int = 3, price: int = 64_000, **extra: Any) -> tuple:
    product = await stack.product(stock=stock, price=price)
    vid = product["variants"][0]["id"]
    headers = stack.auth(f"e2e-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, vid, 1, gateway=gateway, **extra)
    assert r.status_code == 201, r.text
    return r.json()["data"], headers, vid


async def deliveries(stack: Any, gateway: str, txn: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.base) as http:
        return (
            await http.get("/sandbox/deliveries", params={"gateway": gateway, "transaction_id": txn})
        ).json()


async def inbox_count(stack: Any, order_id: str) -> int:
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT count(*) FROM payment_notification WHERE order_id = :id"), {"id": order_id}
            )
        ).scalar_one()


@pytest.mark.parametrize("gateway", ["momo", "vnpay", "payos"])
async def test_shopper_pays_on_the_gateway_page_and_the_webhook_marks_the_order_paid(stack, gateway):
    order, headers, vid = await new_order(stack, gateway)
    attempt = order["attempts"][0]
    page = await open_pay_page(attempt["paymentUrl"])
    answer = await click(page, "pay")
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")
    assert detail["paymentStatus"] == "success" and detail["attempts"][0]["status"] == "success"
    assert detail["attempts"][0]["transactionId"]
    assert await stack.stock(vid) == 2
    sent = await deliveries(stack, gateway, attempt["gatewayOrderId"])
    assert sent and all(d["status_code"] in (200, 204) for d in sent), sent
    if gateway == "vnpay":
        assert json.loads(sent[0]["answer"])["RspCode"] == "00"
    # The browser comes back too: verified, and redirected to the frontend with the outcome.
    async with httpx.AsyncClient(timeout=10) as http:
        back = await http.get(answer["return_url"])
    assert back.status_code == 303
    assert (
        "outcome=success" in back.headers["location"] and str(order["orderCode"]) in back.headers["location"]
    )


async def test_failed_payment_then_retry_on_another_gateway_pays(stack):
    order, headers, _ = await new_order(stack, "momo")
    await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "fail")
    for _ in range(50):
        detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
        if detail["attempts"][0]["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert detail["status"] == "pending_payment" and detail["attempts"][0]["resultCode"] == "1001"
    retry = await stack.http.post(
        f"/orders/{order['orderId']}/retry-payment", json={"gateway": "payos"}, headers=headers
    )
    assert retry.status_code == 200, retry.text
    await click(await open_pay_page(retry.json()["data"]["paymentUrl"]), "pay")
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")
    assert [a["status"] for a in detail["attempts"]] == ["failed", "success"]


@pytest.mark.parametrize(("gateway", "code"), [("momo", "1006"), ("vnpay", "24")])
async def test_decline_at_the_gateway_cancels_the_order_and_restores_stock(stack, gateway, code):
    order, headers, vid = await new_order(stack, gateway)
    await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "decline")
    detail = await wait_for_status(stack, order["orderId"], headers, "cancelled")
    assert detail["attempts"][0]["resultCode"].split("/")[0] == code  # VNPay: ResponseCode/TransactionStatus
    assert detail["session"]["status"] == "cancelled"
    assert await stack.stock(vid) == 3


async def test_payos_cancel_is_confirmed_by_query_on_the_unsigned_browser_return(stack):
    order, headers, vid = await new_order(stack, "payos")
    answer = await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "cancel")
    async with httpx.AsyncClient(timeout=10) as http:
        back = await http.get(answer["return_url"])
    assert back.status_code == 303 and "outcome=cancelled" in back.headers["location"]
    await wait_for_status(stack, order["orderId"], headers, "cancelled")
    assert await stack.stock(vid) == 3


async def test_duplicated_and_reordered_notifications_change_nothing_more(stack):
    order, headers, vid = await new_order(stack, "momo")
    await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "pay", duplicate=3, reorder=True)
    await wait_for_status(stack, order["orderId"], headers, "paid")
    deadline = time.monotonic() + 10
    while len(await deliveries(stack, "momo", order["attempts"][0]["gatewayOrderId"])) < 5:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "paid" and detail["attempts"][0]["status"] == "success"
    assert await inbox_count(stack, order["orderId"]) == 2  # the success once, the stale 1006 once
    assert await stack.stock(vid) == 2


async def test_vnpay_ipn_answers_in_its_own_codes(stack):
    order, _, _ = await new_order(stack, "vnpay", price=50_000)
    page = await open_pay_page(order["attempts"][0]["paymentUrl"])
    answer = await click(page, "pay", drop=True)  # we post the IPN ourselves below
    ipn = dict(answer["notification"])
    vnpay = VnpayGateway(stack.settings)
    secret = stack.settings.vnpay_hash_secret

    def signed(params: dict[str, Any], key: str = secret) -> dict[str, Any]:
        body = {k: v for k, v in params.items() if k not in ("vnp_SecureHash", "vnp_SecureHashType")}
        return {**body, "vnp_SecureHash": vnpay_secure_hash(body, key)}

    async def send(params: dict[str, Any]) -> str:
        r = await stack.http.get("/webhooks/vnpay", params=params)
        assert r.status_code == 200
        return r.json()["RspCode"]

    assert vnpay.verify_notification(ipn).outcome.value == "success"
    assert await send(signed(ipn, "forged-secret")) == "97"
    assert await send({**ipn, "vnp_Amount": "100"}) == "97"  # tampered after signing
    assert await send(signed({**ipn, "vnp_Amount": "100"})) == "04"
    assert await send(signed({**ipn, "vnp_TxnRef": "999999999-0"})) == "01"
    assert await send(ipn) == "00"
    assert await send(ipn) == "02"


async def test_forged_payos_webhook_is_refused(stack):
    order, headers, _ = await new_order(stack, "payos")
    data = {
        "orderCode": int(order["attempts"][0]["gatewayOrderId"]),
        "amount": 64_000,
        "code": "00",
        "desc": "ok",
        "reference": "FT1",
        "transactionDateTime": "2026-11-23 10:00:00",
        "currency": "VND",
        "paymentLinkId": "x",
        "accountNumber": "1",
        "description": "x",
    }
    forged = {
        "code": "00",
        "desc": "success",
        "success": True,
        "data": data,
        "signature": payos_signature(data, "not-the-checksum-key"),
    }
    r = await stack.http.post("/webhooks/payos", json=forged)
    assert r.status_code == 400 and r.json()["error"] == "INVALID_SIGNATURE"
    await asyncio.sleep(0.3)
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "pending_payment"


async def test_lost_notification_is_found_when_the_window_closes(stack):
    order, headers, vid = await new_order(stack, "momo", orderType="flash")
    await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "pay", drop=True)
    await asyncio.sleep(1)
    assert (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"][
        "status"
    ] == ("pending_payment")
    detail = await wait_for_status(stack, order["orderId"], headers, "paid", timeout=20)
    assert detail["endReason"] == "paid_via_momo"
    assert await stack.stock(vid) == 2


async def test_late_payment_after_expiry_is_refunded_exactly_once(stack):
    order, headers, vid = await new_order(stack, "momo", orderType="flash")
    page = await open_pay_page(order["attempts"][0]["paymentUrl"])
    await wait_for_status(stack, order["orderId"], headers, "expired", timeout=20)
    assert await stack.stock(vid) == 3
    await click(page, "pay", duplicate=2)  # the money arrives after our window closed, three times
    gid = order["attempts"][0]["gatewayOrderId"]
    handle = stack.client.get_workflow_handle_for(LatePaymentWorkflow.run, late_workflow_id("momo", gid))
    deadline = time.monotonic() + 15
    while True:
        try:
            outcome = await handle.result()
            break
        except Exception:  # noqa: BLE001 - not started yet
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert outcome.state == "refunded"
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "expired" and detail["latePayment"] is True
    assert detail["attempts"][0]["status"] == "refunded" and detail["paymentStatus"] == "refunded"
    assert await stack.stock(vid) == 3
    listed = (
        await stack.http.get("/orders", params={"latePayment": "true"}, headers=stack.auth("ops", "admin"))
    ).json()
    assert order["orderId"] in {o["orderId"] for o in listed["data"]["items"]}
    runs = [w async for w in stack.client.list_workflows(f'WorkflowId = "{late_workflow_id("momo", gid)}"')]
    assert len(runs) == 1  # three notifications, one settlement


@pytest.mark.parametrize(("stock_left", "expected"), [(5, "accepted"), (0, "refund_required")])
async def test_accept_if_available_policy(stack, stock_left, expected):
    order, headers, vid = await new_order(stack, "momo", stock=1, orderType="flash")
    page = await open_pay_page(order["attempts"][0]["paymentUrl"])
    await wait_for_status(stack, order["orderId"], headers, "expired", timeout=20)
    if stock_left == 0:  # someone else bought the last unit meanwhile
        assert (await stack.order(stack.auth(), vid, 1)).status_code == 201
    answer = await click(page, "pay", drop=True)
    gid = order["attempts"][0]["gatewayOrderId"]
    late = LatePayment(
        order_id=order["orderId"],
        gateway="momo",
        gateway_order_id=gid,
        amount=64_000,
        result_code="0",
        transaction_id=str(answer["notification"]["transId"]),
        policy="accept_if_available",
    )
    outcome = await stack.client.execute_workflow(
        LatePaymentWorkflow.run,
        late,
        id=f"{late_workflow_id('momo', gid)}-policy",
        task_queue=stack.settings.temporal_task_queue,
    )
    if expected == "accepted":
        assert outcome.state == "accepted"
        detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
        assert detail["status"] == "paid" and detail["endReason"] == "late_payment_accepted"
        assert await stack.stock(vid) == 0
    else:
        assert outcome.state in ("refunded", "refund_required")
        detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
        assert detail["status"] == "expired"
        assert await stack.stock(vid) == 0


async def test_ipn_that_cannot_reach_temporal_is_answered_send_again(stack):
    """An IPN reaches an API that cannot tell Temporal: it keeps the verdict and answers "send it
    again" (MoMo 503, VNPay 99). For a late payment only that retry settles the money."""
    port = free_port()
    cut_off = stack.settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "api_port": port}
    )
    server, task = await serve(create_dev_app(cut_off), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as cut_off_api:
            # MoMo, paid after the window closed (MoMo links outlive it).
            order, headers, vid = await new_order(stack, "momo", orderType="flash")
            page = await open_pay_page(order["attempts"][0]["paymentUrl"])
            await wait_for_status(stack, order["orderId"], headers, "expired", timeout=20)
            ipn = (await click(page, "pay", drop=True))["notification"]
            r = await cut_off_api.post("/webhooks/momo", json=ipn)
            assert r.status_code == 503 and r.json()["error"] == "TEMPORAL_UNAVAILABLE", r.text
            assert r.headers["retry-after"]
            assert await undelivered(stack, order["orderId"]) == 1  # kept, not lost
            retried = await stack.http.post("/webhooks/momo", json=ipn)  # the gateway's retry
            assert retried.status_code == 204, retried.text
            gid = order["attempts"][0]["gatewayOrderId"]
            handle = stack.client.get_workflow_handle_for(
                LatePaymentWorkflow.run, late_workflow_id("momo", gid)
            )
            assert (await handle.result()).state == "refunded"
            assert await undelivered(stack, order["orderId"]) == 0  # the late path marks its row too
            assert await stack.stock(vid) == 3

            # VNPay, paid inside the window.
            order, headers, vid = await new_order(stack, "vnpay")
            ipn = (await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "pay", drop=True))[
                "notification"
            ]
            assert (await cut_off_api.get("/webhooks/vnpay", params=ipn)).json()["RspCode"] == "99"
            # Stored by the first try, so the retry reads "already confirmed", which VNPay takes as final.
            assert (await stack.http.get("/webhooks/vnpay", params=ipn)).json()["RspCode"] == "02"
            await wait_for_status(stack, order["orderId"], headers, "paid", timeout=20)
    finally:
        server.should_exit = True
        await task


async def undelivered(stack: Any, order_id: str) -> int:
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT count(*) FROM payment_notification WHERE order_id = :id AND delivered_at IS NULL"
                ),
                {"id": order_id},
            )
        ).scalar_one()


async def test_gateway_down_at_create_fails_the_order_with_502_and_gives_the_stock_back(stack):
    """No link can be made (MoMo unreachable for all three tries): the order ends `failed` with its
    stock back, and the create answers 502, on its first request and on every replay of its key."""
    port = free_port()
    down = stack.settings.model_copy(
        update={
            "api_port": port,
            "public_base_url": f"http://127.0.0.1:{port}",
            "temporal_task_queue": f"gateway-down-{uuid.uuid4().hex[:8]}",
            "momo_endpoint": f"http://127.0.0.1:{free_port()}/momo",
        }
    )
    server, task = await serve(create_dev_app(down), port)
    try:
        async with (
            running_worker(down, client=stack.client),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=60) as api,
        ):
            product = await stack.product(stock=3, price=64_000)
            vid = product["variants"][0]["id"]
            headers = {**stack.auth(f"down-{uuid.uuid4().hex[:6]}"), "Idempotency-Key": uuid.uuid4().hex}
            body = {
                "items": [{"variantId": vid, "quantity": 2}],
                "gateway": "momo",
                "receiver": {"name": "A", "phone": "0901234567", "address": "HCMC"},
            }
            for _ in range(2):  # the first request, then a replay of its key
                r = await api.post("/orders", json=body, headers=headers)
                assert r.status_code == 502 and r.json()["error"] == "PAYMENT_GATEWAY_ERROR", r.text
            assert await stack.stock(vid) == 3
            [listed] = (await api.get("/orders", headers=headers)).json()["data"]["items"]
            detail = (await api.get(f"/orders/{listed['orderId']}", headers=headers)).json()["data"]
            assert (detail["status"], detail["endReason"]) == ("failed", "payment_link_unavailable")
    finally:
        server.should_exit = True
        await task
