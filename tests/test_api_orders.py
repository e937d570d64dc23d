"""End to end over HTTP: API -> Temporal dev server -> worker -> Postgres (and the sandbox)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from gateways.momo import MomoGateway
from tests.helpers import momo_ipn, wait_for_status

pytestmark = [
    __import__("pytest").mark.asyncio(loop_scope="session"),
]


async def test_create_order_freezes_snapshot_reserves_stock_and_starts_workflow(stack):
    product = await stack.product(stock=10, price=45_000)
    variant = product["variants"][0]
    r = await stack.order(stack.auth("alice"), variant["id"], quantity=3)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert data["status"] == "pending_payment"
    assert 100_000_000 <= data["orderCode"] <= 999_999_999
    assert data["subtotalAmount"] == 135_000 and data["grandTotal"] == 135_000
    assert data["currencyCode"] == "VND"
    assert data["items"][0]["unitPrice"] == 45_000 and data["items"][0]["variantSku"] == variant["sku"]
    assert data["session"]["status"] == "active" and data["session"]["durationMinutes"] == 15
    assert data["payment"]["gateway"] == "momo" and data["payment"]["paymentUrl"].startswith("http")
    assert data["attempts"][0]["attemptNo"] == 0 and data["attempts"][0]["gatewayOrderId"]
    assert await stack.stock(variant["id"]) == 7
    # The 201 is built from the workflow's answer, not read back: it must say what Postgres holds.
    stored = (await stack.http.get(f"/orders/{data['orderId']}", headers=stack.auth("alice"))).json()["data"]
    for clock in ("remainingSeconds", "remainingMinutes", "minutesElapsed"):
        stored["session"].pop(clock), data["session"].pop(clock)
    assert data == stored

    desc = await stack.client.get_workflow_handle(f"order-{data['orderId']}").describe()
    attrs = {k.name: v for k, v in desc.typed_search_attributes}
    assert attrs["OrderStatus"] == "pending_payment"
    assert attrs["OrderCode"] == data["orderCode"]
    assert attrs["CustomerId"] == "alice"
    assert attrs["GrandTotal"] == 135_000
    assert attrs["Gateway"] == "momo"


async def test_out_of_stock_leaves_nothing_behind(stack):
    product = await stack.product(stock=2)
    vid = product["variants"][0]["id"]
    shopper = f"oos-{uuid.uuid4().hex[:8]}"
    r = await stack.order(stack.auth(shopper), vid, quantity=3)
    assert r.status_code == 409 and r.json()["error"] == "OUT_OF_STOCK"
    assert await stack.stock(vid) == 2
    async with stack.engine.connect() as conn:
        n = (
            await conn.execute(text("SELECT count(*) FROM order_item WHERE variant_id = :v"), {"v": vid})
        ).scalar_one()
    assert n == 0
    # Its workflow carries what the API sent with the start, but no OrderStatus: a refused cart is
    # not an order, and must not show up under OrderStatus="pending_payment" in the Temporal UI.
    for _ in range(50):
        found = [wf async for wf in stack.client.list_workflows(f'CustomerId = "{shopper}"')]
        if found:
            break
        await asyncio.sleep(0.1)
    assert len(found) == 1
    attrs = {
        k.name: v
        for k, v in (await stack.client.get_workflow_handle(found[0].id).describe()).typed_search_attributes
    }
    assert attrs.get("Gateway") == "momo" and "OrderStatus" not in attrs


async def test_bad_input_gets_clear_4xx_and_no_stock_change(stack):
    product = await stack.product(stock=5)
    vid = product["variants"][0]["id"]
    headers = stack.auth()
    r = await stack.order(headers, str(uuid.uuid4()))
    assert r.status_code == 404 and r.json()["error"] == "VARIANT_NOT_FOUND"
    for bad in (
        {"items": [], "gateway": "momo"},
        {"items": [{"variantId": vid, "quantity": 0}], "gateway": "momo"},
        {"items": [{"variantId": vid, "quantity": 1.5}], "gateway": "momo"},
        {"items": [{"variantId": "not-a-uuid", "quantity": 1}], "gateway": "momo"},
        {"items": [{"variantId": vid, "quantity": 1}], "gateway": "paypal"},
    ):
        body = {"receiver": {"name": "A", "phone": "0901234567", "address": "x"}, **bad}
        r = await stack.http.post("/orders", json=body, headers=headers)
        assert r.status_code == 422, (bad, r.text)
        assert r.json() == {"success": False, "message": r.json()["message"], "error": "VALIDATION_ERROR"}
    r = await stack.order(headers, vid, orderType="platinum")
    assert r.status_code == 422 and r.json()["error"] == "INVALID_ORDER_TYPE"
    r = await stack.http.post(
        "/orders", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert r.status_code == 422
    assert await stack.stock(vid) == 5


async def test_idempotency_key_returns_the_same_order(stack):
    product = await stack.product(stock=5)
    vid = product["variants"][0]["id"]
    headers = {**stack.auth("idem-user"), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first, second = await asyncio.gather(stack.order(headers, vid, 2), stack.order(headers, vid, 2))
    assert {first.status_code, second.status_code} <= {200, 201}
    assert first.json()["data"]["orderId"] == second.json()["data"]["orderId"]
    third = await stack.order(headers, vid, 2)
    assert third.status_code == 200 and third.json()["data"]["orderId"] == first.json()["data"]["orderId"]
    assert await stack.stock(vid) == 3
    other_body = await stack.order(headers, vid, 1)
    assert other_body.status_code == 422 and other_body.json()["error"] == "IDEMPOTENCY_KEY_REUSED"
    assert await stack.stock(vid) == 3


async def test_concurrent_creates_with_one_key_and_two_bodies_make_one_order(stack):
    """Both requests find no order yet and both reach the workflow: the one whose body started it
    gets its 201, the other 422, never a second 201 for a cart it did not send."""
    product = await stack.product(stock=10)
    vid = product["variants"][0]["id"]
    reserved = 0
    for _ in range(3):
        headers = {**stack.auth("idem-racer"), "Idempotency-Key": f"k-{uuid.uuid4()}"}
        answers = await asyncio.gather(stack.order(headers, vid, 1), stack.order(headers, vid, 2))
        assert sorted(r.status_code for r in answers) == [201, 422], [r.text for r in answers]
        made, refused = sorted(answers, key=lambda r: r.status_code)
        assert refused.json()["error"] == "IDEMPOTENCY_KEY_REUSED"
        # The 201 describes the cart its own request sent.
        sent = 1 if made is answers[0] else 2
        assert made.json()["data"]["items"][0]["quantity"] == sent
        reserved += sent
    assert await stack.stock(vid) == 10 - reserved


async def test_detail_by_id_and_code_is_private_to_its_customer(stack):
    product = await stack.product()
    r = await stack.order(stack.auth("bob"), product["variants"][0]["id"])
    order = r.json()["data"]
    for ref in (order["orderId"], str(order["orderCode"])):
        mine = await stack.http.get(f"/orders/{ref}", headers=stack.auth("bob"))
        assert mine.status_code == 200 and mine.json()["data"]["orderCode"] == order["orderCode"]
        theirs = await stack.http.get(f"/orders/{ref}", headers=stack.auth("mallory"))
        assert theirs.status_code == 404 and theirs.json()["error"] == "ORDER_NOT_FOUND"
        admin = await stack.http.get(f"/orders/{ref}", headers=stack.auth("root", "admin"))
        assert admin.status_code == 200
    for verb in ("retry-payment", "cancel"):
        r = await stack.http.post(f"/orders/{order['orderId']}/{verb}", headers=stack.auth("mallory"))
        assert r.status_code == 404
    assert (await stack.http.get("/orders/12345", headers=stack.auth("bob"))).status_code == 404


async def test_session_has_every_field_of_seeds_000_and_002(stack):
    product = await stack.product()
    r = await stack.order(stack.auth("carol"), product["variants"][0]["id"])
    oid = r.json()["data"]["orderId"]
    s = (await stack.http.get(f"/orders/{oid}/session", headers=stack.auth("carol"))).json()["data"]
    for key in (
        "sessionId",
        "orderId",
        "status",
        "expiresAt",
        "startedAt",
        "remainingSeconds",
        "remainingMinutes",
        "minutesElapsed",
        "timeoutMinutes",
        "isExpired",
        "paymentAttempts",
        "maxPaymentAttempts",
        "canRetry",
    ):
        assert key in s, key
    assert s["status"] == "active" and s["isExpired"] is False and s["canRetry"] is True
    assert 14 * 60 < s["remainingSeconds"] <= 15 * 60
    assert s["paymentAttempts"] == 0 and s["maxPaymentAttempts"] == 3 and s["timeoutMinutes"] == 15


async def test_retry_three_times_then_refused_and_gateway_can_switch(stack):
    product = await stack.product()
    headers = stack.auth("dave")
    oid = (await stack.order(headers, product["variants"][0]["id"])).json()["data"]["orderId"]
    urls = set()
    for n, gateway in enumerate(("vnpay", "payos", "momo"), start=1):
        r = await stack.http.post(f"/orders/{oid}/retry-payment", json={"gateway": gateway}, headers=headers)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert (
            data["paymentAttempts"] == n and data["remainingAttempts"] == 3 - n and data["gateway"] == gateway
        )
        urls.add(data["paymentUrl"])
    assert len(urls) == 3
    r = await stack.http.post(f"/orders/{oid}/retry-payment", headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "MAX_ATTEMPTS_REACHED"
    detail = (await stack.http.get(f"/orders/{oid}", headers=headers)).json()["data"]
    assert [a["gateway"] for a in detail["attempts"]] == ["momo", "vnpay", "payos", "momo"]
    assert len({a["gatewayOrderId"] for a in detail["attempts"]}) == 4
    assert detail["session"]["paymentAttempts"] == 3 and detail["session"]["canRetry"] is False


async def test_cancel_restores_stock_once(stack):
    product = await stack.product(stock=4)
    vid = product["variants"][0]["id"]
    headers = stack.auth("erin")
    oid = (await stack.order(headers, vid, 3)).json()["data"]["orderId"]
    assert await stack.stock(vid) == 1
    r = await stack.http.post(f"/orders/{oid}/cancel", json={"reason": "changed my mind"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "cancelled" and r.json()["data"]["session"]["status"] == "cancelled"
    assert await stack.stock(vid) == 4
    again = await stack.http.post(f"/orders/{oid}/cancel", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "ORDER_NOT_PENDING"
    retry = await stack.http.post(f"/orders/{oid}/retry-payment", headers=headers)
    assert retry.status_code == 400 and retry.json()["error"] == "SESSION_NOT_ACTIVE"
    assert await stack.stock(vid) == 4


async def test_window_closes_order_expires_and_stock_returns(stack):
    product = await stack.product(stock=3)
    vid = product["variants"][0]["id"]
    headers = stack.auth("frank")
    r = await stack.order(headers, vid, 2, orderType="flash")  # a 3-second window
    assert r.status_code == 201, r.text
    oid = r.json()["data"]["orderId"]
    assert r.json()["data"]["session"]["durationMinutes"] == 0.05
    assert await stack.stock(vid) == 1
    detail = await wait_for_status(stack, oid, headers, "expired", timeout=20)
    assert detail["session"]["status"] == "expired" and detail["session"]["isExpired"] is True
    assert detail["endReason"] == "payment_window_closed"
    assert detail["attempts"][0]["status"] == "expired"
    assert await stack.stock(vid) == 3
    retry = await stack.http.post(f"/orders/{oid}/retry-payment", headers=headers)
    assert retry.status_code == 400 and retry.json()["error"] == "SESSION_EXPIRED"
    async with stack.engine.connect() as conn:
        reminders = (
            await conn.execute(text("SELECT count(*) FROM notification WHERE order_id = :id"), {"id": oid})
        ).scalar_one()
    assert reminders == 1
    desc = await stack.client.get_workflow_handle(f"order-{oid}").describe()
    assert {k.name: v for k, v in desc.typed_search_attributes}["OrderStatus"] == "expired"


async def test_momo_ipn_pays_the_order_and_duplicates_change_nothing(stack):
    product = await stack.product(stock=5, price=120_000)
    vid = product["variants"][0]["id"]
    headers = stack.auth("gina")
    order = (await stack.order(headers, vid, 1)).json()["data"]
    attempt = order["attempts"][0]
    momo = MomoGateway(stack.settings)
    forged = momo_ipn(
        momo, attempt["gatewayOrderId"], attempt["requestId"], 120_000, 0, secret="wrong-secret"
    )
    r = await stack.http.post("/webhooks/momo", json=forged)
    assert r.status_code == 400 and r.json()["error"] == "INVALID_SIGNATURE"
    cheap = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 1_000, 0)
    r = await stack.http.post("/webhooks/momo", json=cheap)
    assert r.status_code == 400 and r.json()["error"] == "AMOUNT_MISMATCH"
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "pending_payment"

    ipn = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 120_000, 0)
    for _ in range(3):
        r = await stack.http.post("/webhooks/momo", json=ipn)
        assert r.status_code == 204, r.text
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")
    assert detail["paymentStatus"] == "success" and detail["session"]["status"] == "completed"
    late_fail = momo_ipn(momo, attempt["gatewayOrderId"], attempt["requestId"], 120_000, 1006)
    assert (await stack.http.post("/webhooks/momo", json=late_fail)).status_code == 204
    # Negative check: a bounded observation window (0.5 s, ten times what the workflow takes to
    # apply a signal here) in which the late failure must not reopen or downgrade the paid order.
    await asyncio.sleep(0.5)
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["status"] == "paid"
    assert await stack.stock(vid) == 4
    cancel = await stack.http.post(f"/orders/{order['orderId']}/cancel", headers=headers)
    assert cancel.status_code == 409 and cancel.json()["error"] == "PAYMENT_ALREADY_PROCESSED"


async def test_admin_can_extend_and_expire(stack):
    product = await stack.product(stock=2)
    vid = product["variants"][0]["id"]
    headers = stack.auth("hank")
    admin = stack.auth("ops", "admin")
    oid = (await stack.order(headers, vid)).json()["data"]["orderId"]
    before = (await stack.http.get(f"/orders/{oid}/session", headers=headers)).json()["data"]
    r = await stack.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 10}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["timeoutMinutes"] == before["timeoutMinutes"] + 10
    assert (
        await stack.http.post(f"/admin/orders/{oid}/extend", json={"minutes": 5}, headers=headers)
    ).status_code == 403
    r = await stack.http.post(f"/admin/orders/{oid}/expire", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["status"] == "expired"
    assert await stack.stock(vid) == 2
    r = await stack.http.post(f"/admin/orders/{oid}/expire", headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "ORDER_NOT_PENDING"


async def test_listing_is_paginated_filtered_and_scoped(stack):
    product = await stack.product(stock=20)
    vid = product["variants"][0]["id"]
    me = f"lister-{uuid.uuid4().hex[:6]}"
    ids = [(await stack.order(stack.auth(me), vid)).json()["data"]["orderId"] for _ in range(5)]
    await stack.http.post(f"/orders/{ids[0]}/cancel", headers=stack.auth(me))
    await stack.order(stack.auth("someone-else"), vid)
    page1 = (await stack.http.get("/orders", params={"page": 1, "size": 2}, headers=stack.auth(me))).json()[
        "data"
    ]
    assert page1["total"] == 5 and page1["page"] == 1 and page1["size"] == 2 and len(page1["items"]) == 2
    page3 = (await stack.http.get("/orders", params={"page": 3, "size": 2}, headers=stack.auth(me))).json()[
        "data"
    ]
    assert len(page3["items"]) == 1
    seen = {o["orderId"] for o in page1["items"] + page3["items"]}
    assert seen <= set(ids) and all(o["customerId"] == me for o in page1["items"])
    admin = stack.auth("ops", "admin")
    cancelled = (
        await stack.http.get("/orders", params={"customerId": me, "status": "cancelled"}, headers=admin)
    ).json()["data"]
    assert cancelled["total"] == 1 and cancelled["items"][0]["orderId"] == ids[0]
    r = await stack.http.get("/orders", params={"customerId": "someone-else"}, headers=stack.auth(me))
    assert r.status_code == 403
    assert (await stack.http.get("/orders", params={"size": 500}, headers=stack.auth(me))).status_code == 422


async def test_twelve_buyers_for_five_units_make_exactly_five_orders(stack):
    product = await stack.product(stock=5)
    vid = product["variants"][0]["id"]
    results = await asyncio.gather(*(stack.order(stack.auth(f"buyer-{i}"), vid) for i in range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 5 and codes.count(409) == 7, codes
    assert all(r.json()["error"] == "OUT_OF_STOCK" for r in results if r.status_code == 409)
    assert await stack.stock(vid) == 0


async def test_auth_is_required_and_checked(stack):
    assert (await stack.http.get("/orders")).status_code == 401
    bad = {"Authorization": "Bearer not.a.jwt"}
    assert (await stack.http.get("/orders", headers=bad)).json()["error"] == "INVALID_TOKEN"
    from api.auth import issue_token

    wrong = issue_token("x" * 40, "eve", "admin")
    assert (await stack.http.get("/orders", headers={"Authorization": f"Bearer {wrong}"})).status_code == 401
    body = {"name": "X", "variants": [{"sku": "X-1", "name": "x", "price": 1, "stockQuantity": 1}]}
    r = await stack.http.post("/admin/products", json=body, headers=stack.auth("eve"))
    assert r.status_code == 403 and r.json()["error"] == "FORBIDDEN"


async def test_catalog_and_health(stack):
    products = (await stack.http.get("/products")).json()["data"]
    assert isinstance(products, list)
    r = await stack.http.post(
        "/admin/products",
        json={
            "name": "Float price",
            "variants": [{"sku": "F-1", "name": "x", "price": 10.5, "stockQuantity": 1}],
        },
        headers=stack.auth("ops", "admin"),
    )
    assert r.status_code == 422
    async with __import__("httpx").AsyncClient(base_url=stack.base) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"postgres": "ok", "temporal": "ok", "worker": "ok"}


async def test_idempotent_retry_of_a_refused_order_gets_the_same_refusal(stack):
    headers = {**stack.auth("idem-refused"), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    missing = str(uuid.uuid4())
    first = await stack.order(headers, missing)
    second = await stack.order(headers, missing)
    assert first.status_code == second.status_code == 404
    assert first.json()["error"] == second.json()["error"] == "VARIANT_NOT_FOUND"


async def test_amount_outside_the_gateway_range_is_refused_before_anything_is_written(stack):
    product = await stack.product(stock=5, price=500)  # 500 VND: below every gateway's minimum
    vid = product["variants"][0]["id"]
    r = await stack.order(stack.auth(), vid, 1)
    assert r.status_code == 422 and r.json()["error"] == "AMOUNT_OUT_OF_RANGE"
    assert await stack.stock(vid) == 5
    product = await stack.product(stock=5, price=3_000)  # fine for MoMo, below VNPay's 5,000
    headers = stack.auth("amounts")
    oid = (await stack.order(headers, product["variants"][0]["id"])).json()["data"]["orderId"]
    r = await stack.http.post(f"/orders/{oid}/retry-payment", json={"gateway": "vnpay"}, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "AMOUNT_OUT_OF_RANGE"
    session = (await stack.http.get(f"/orders/{oid}/session", headers=headers)).json()["data"]
    assert session["paymentAttempts"] == 0
