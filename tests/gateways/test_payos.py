"""PayOS: signatures cross-checked with the official `payos` SDK, statuses, webhook verification,
and the adapter and the SDK itself against the sandbox over HTTP."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import payos
import pytest
from payos._crypto import CryptoProvider

from gateways.base import GatewayError, InvalidSignature, PaymentOutcome
from gateways.payos import (
    PayOSGateway,
    PayOSRefused,
    payos_description,
    payos_outcome,
    payos_payment_request_signature,
    payos_signature,
    payos_signed_string,
)
from tests.gateways.harness import SandboxEnv, make_settings

KEY = "paywindow-sandbox-checksum-key-0001"
JSON = {"Accept": "application/json"}


def webhook_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "orderCode": 12345678901,
        "amount": 50000,
        "description": "CSV7E8K2 Don 123",
        "accountNumber": "12345678",
        "reference": "FT24001ABCD",
        "transactionDateTime": "2024-01-01 07:00:00",
        "currency": "VND",
        "paymentLinkId": "124c33293c43417ab7879e14c8d9eb18",
        "code": "00",
        "desc": "success",
        "counterAccountBankId": "",
        "counterAccountBankName": "",
        "counterAccountName": None,
        "counterAccountNumber": None,
        "virtualAccountName": "",
        "virtualAccountNumber": "",
    }
    data.update(overrides)
    return data


def webhook(data: dict[str, Any] | None = None) -> dict[str, Any]:
    data = data or webhook_data()
    return {
        "code": "00",
        "desc": "success",
        "success": True,
        "data": data,
        "signature": payos_signature(data, KEY),
    }


@pytest.fixture
def gateway() -> PayOSGateway:
    return PayOSGateway(make_settings())


def test_data_signature_matches_recipe_and_sdk() -> None:
    data = {
        "b": 2,
        "a": "x y",
        "n": None,
        "s": "null",
        "u": "undefined",
        "t": True,
        "items": [{"price": 1, "name": "Áo"}],
    }
    raw = 'a=x y&b=2&items=[{"name":"Áo","price":1}]&n=&s=&t=true&u='
    assert payos_signed_string(data) == raw
    expected = hmac.new(KEY.encode(), raw.encode("utf-8"), hashlib.sha256).hexdigest()
    assert payos_signature(data, KEY) == expected
    assert CryptoProvider().create_signature_from_object(data, KEY) == expected
    full = webhook_data()
    assert payos_signature(full, KEY) == CryptoProvider().create_signature_from_object(full, KEY)


def test_payment_request_signature_matches_recipe_and_sdk() -> None:
    body = {
        "orderCode": 12345678901,
        "amount": 50000,
        "description": "Don 123",
        "cancelUrl": "https://s/c",
        "returnUrl": "https://s/r",
        "items": [],
        "expiredAt": 1700000000,
    }
    raw = "amount=50000&cancelUrl=https://s/c&description=Don 123&orderCode=12345678901&returnUrl=https://s/r"
    expected = hmac.new(KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
    assert payos_payment_request_signature(body, KEY) == expected
    assert CryptoProvider().create_signature_of_payment_request(body, KEY) == expected


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("PAID", "success"),
        ("PENDING", "pending"),
        ("PROCESSING", "processing"),
        ("CANCELLED", "cancelled"),
        ("EXPIRED", "expired"),
        ("FAILED", "failed"),
        ("UNDERPAID", "underpaid"),
        ("WHAT", "unknown"),
    ],
)
def test_status_table(status: str, outcome: str) -> None:
    assert payos_outcome(status) == PaymentOutcome(outcome)


def test_order_code_and_description(gateway: PayOSGateway) -> None:
    assert gateway.make_gateway_order_id(123456789, 1) == "12345678901"
    assert gateway.make_gateway_order_id(123456789, 99) == "12345678999"
    with pytest.raises(ValueError):
        gateway.make_gateway_order_id(123456789, 100)
    assert payos_description("Thanh toán đơn #1") == "Thanh toa"
    assert payos_description("!!!") == "Paywindow"


async def test_webhook_verification_agrees_with_sdk(gateway: PayOSGateway) -> None:
    body = webhook()
    result = gateway.verify_notification(body)
    assert (result.gateway_order_id, result.outcome, result.amount) == ("12345678901", "success", 50000)
    assert result.transaction_id == "FT24001ABCD"
    sdk = payos.AsyncPayOS("id", "key", KEY)
    assert (await sdk.webhooks.verify(body)).amount == 50000
    await sdk.aclose()


async def test_webhook_with_a_new_field_still_verifies(gateway: PayOSGateway) -> None:
    body = webhook(webhook_data(brandNewField="x"))
    assert gateway.verify_notification(body).outcome is PaymentOutcome.SUCCESS
    sdk = payos.AsyncPayOS("id", "key", KEY)
    with pytest.raises(payos.WebhookError):  # why we verify the raw dict ourselves
        await sdk.webhooks.verify(body)
    await sdk.aclose()


def test_webhook_without_a_transfer_code_is_not_a_success(gateway: PayOSGateway) -> None:
    result = gateway.verify_notification(webhook(webhook_data(code="01", desc="fail")))
    assert result.outcome is PaymentOutcome.PENDING


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b["data"].update(amount=1), id="tampered-amount"),
        pytest.param(lambda b: b["data"].update(orderCode=1), id="tampered-order"),
        pytest.param(lambda b: b.pop("signature"), id="missing-signature"),
        pytest.param(lambda b: b.update(signature=None), id="null-signature"),
        pytest.param(lambda b: b.update(data="not-an-object"), id="bad-data"),
        pytest.param(lambda b: b["data"].pop("reference"), id="dropped-field"),
    ],
)
def test_forged_webhooks_are_rejected(gateway: PayOSGateway, mutate: Any) -> None:
    body = webhook()
    mutate(body)
    with pytest.raises(InvalidSignature):
        gateway.verify_notification(body)


def test_signed_but_malformed_webhook_is_rejected(gateway: PayOSGateway) -> None:
    with pytest.raises(InvalidSignature):
        gateway.verify_notification(webhook(webhook_data(amount="50k")))


def test_unsigned_return_is_only_a_hint(gateway: PayOSGateway) -> None:
    result = gateway.verify_return(
        {"code": "00", "id": "x", "cancel": "false", "status": "PAID", "orderCode": "12"}
    )
    assert result.outcome is PaymentOutcome.PENDING and result.result_code == "PAID"
    with pytest.raises(InvalidSignature):
        gateway.verify_return({"status": "PAID"})


async def test_refund_is_unsupported(gateway: PayOSGateway) -> None:
    refund = await gateway.refund(
        gateway_order_id="1", transaction_id="FT1", amount=1, idempotency_key="k", description="d"
    )
    assert (refund.ok, refund.result_code) == (False, "UNSUPPORTED")


# -- over HTTP, against the sandbox ------------------------------------------------------------


async def test_round_trip_pay(sandbox_env: SandboxEnv) -> None:
    gateway = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(gateway, amount=120_000)
    link = await gateway.create_link(req)
    assert link.payment_url == f"{sandbox_env.base}/sandbox/pay/payos/{req.gateway_order_id}"
    assert link.raw["status"] == "PENDING" and link.raw["orderCode"] == int(req.gateway_order_id)
    assert (await gateway.query(req.gateway_order_id, created_at=req.created_at)).outcome == "pending"
    async with httpx.AsyncClient() as http:
        acted = (await http.post(f"{link.payment_url}/pay", json={}, headers=JSON)).json()
    assert acted["result_code"] == "PAID"
    returned = dict(parse_qsl(urlsplit(acted["return_url"]).query))
    assert returned | {"id": ""} == {
        "code": "00",
        "id": "",
        "cancel": "false",
        "status": "PAID",
        "orderCode": req.gateway_order_id,
    }

    [note] = await sandbox_env.wait_notifications("payos", req.gateway_order_id)
    result = gateway.verify_notification(note["json"])
    assert (result.outcome, result.amount) == (PaymentOutcome.SUCCESS, 120_000)
    sdk = payos.AsyncPayOS("id", "key", sandbox_env.settings.payos_checksum_key)
    assert (await sdk.webhooks.verify(note["json"])).order_code == int(req.gateway_order_id)
    await sdk.aclose()

    queried = await gateway.query(req.gateway_order_id, created_at=req.created_at)
    assert (queried.outcome, queried.amount, queried.transaction_id) == (
        PaymentOutcome.SUCCESS,
        120_000,
        result.transaction_id,
    )
    assert await gateway.cancel(req.gateway_order_id, "window closed") is False  # already paid


@pytest.mark.parametrize(
    ("action", "status", "outcome"),
    [
        ("fail", "FAILED", "failed"),
        ("decline", "CANCELLED", "cancelled"),
        ("cancel", "CANCELLED", "cancelled"),
    ],
)
async def test_round_trip_other_actions(
    sandbox_env: SandboxEnv, action: str, status: str, outcome: str
) -> None:
    gateway = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(gateway)
    link = await gateway.create_link(req)
    async with httpx.AsyncClient() as http:
        acted = await http.post(f"{link.payment_url}/{action}")
        assert acted.status_code == 303
        params = dict(parse_qsl(urlsplit(acted.headers["location"]).query))
        assert (params["status"], params["cancel"]) == (status, "true" if status == "CANCELLED" else "false")
        queried = await gateway.query(req.gateway_order_id, created_at=req.created_at)
        assert (queried.result_code, queried.outcome) == (status, PaymentOutcome(outcome))
        deliveries = (
            await http.get(
                f"{sandbox_env.base}/sandbox/deliveries", params={"transaction_id": req.gateway_order_id}
            )
        ).json()
    assert deliveries == []  # a PayOS webhook reports a received transfer, nothing else


async def test_cancel_then_pay_is_refused(sandbox_env: SandboxEnv) -> None:
    gateway = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(gateway)
    link = await gateway.create_link(req)
    assert await gateway.cancel(req.gateway_order_id, "Hết thời gian") is True
    assert await gateway.cancel(req.gateway_order_id, "again") is True  # idempotent
    queried = await gateway.query(req.gateway_order_id, created_at=req.created_at)
    assert (
        queried.outcome is PaymentOutcome.CANCELLED and queried.raw["cancellationReason"] == "Hết thời gian"
    )
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{link.payment_url}/pay", headers=JSON)
    assert refused.status_code == 409 and refused.json()["state"] == "cancelled"


async def test_official_sdk_against_the_sandbox(sandbox_env: SandboxEnv) -> None:
    from payos.types import CreatePaymentLinkRequest, ItemData

    s = sandbox_env.settings
    order_code = int(f"{sandbox_env.order_code()}01")
    async with payos.AsyncPayOS(
        s.payos_client_id, s.payos_api_key, s.payos_checksum_key, base_url=f"{s.payos_base_url}/"
    ) as sdk:
        created = await sdk.payment_requests.create(
            CreatePaymentLinkRequest(
                order_code=order_code,
                amount=30_000,
                description="SDK test",
                cancel_url="https://m/c",
                return_url="https://m/r",
                items=[ItemData(name="Áo thun", quantity=1, price=30_000)],
            )
        )
        assert created.checkout_url.startswith(f"{sandbox_env.base}/sandbox/pay/payos/")
        by_id = await sdk.payment_requests.get(created.payment_link_id)
        assert (by_id.order_code, by_id.status) == (order_code, "PENDING")
        cancelled = await sdk.payment_requests.cancel(order_code, "changed my mind")
        assert cancelled.status == "CANCELLED" and cancelled.cancellation_reason == "changed my mind"
        with pytest.raises(payos.APIError) as exists:
            await sdk.payment_requests.create(
                CreatePaymentLinkRequest(
                    order_code=order_code,
                    amount=1,
                    description="dup",
                    cancel_url="https://m/c",
                    return_url="https://m/r",
                )
            )
        assert exists.value.error_code == "231"
    async with payos.AsyncPayOS(
        "wrong", "wrong", s.payos_checksum_key, base_url=f"{s.payos_base_url}/"
    ) as sdk:
        with pytest.raises(payos.UnauthorizedError):
            await sdk.payment_requests.get(order_code)


async def test_adapter_errors(sandbox_env: SandboxEnv) -> None:
    gateway = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(gateway)
    await gateway.create_link(req)
    # The same attempt again, as a retry whose first answer was lost: PayOS says 231, the link is
    # looked up and adopted (its checkout page derived from its paymentLinkId).
    again = await gateway.create_link(req)
    assert again.gateway_order_id == req.gateway_order_id
    async with httpx.AsyncClient() as http:
        page = await http.get(again.payment_url)
    assert page.status_code == 200 and req.gateway_order_id in page.text
    # Taken by a link nobody can pay any more (cancelled): the attempt moves to the next orderCode.
    assert await gateway.cancel(req.gateway_order_id, "gone")
    moved = await gateway.create_link(req)
    assert int(moved.gateway_order_id) == int(req.gateway_order_id) + 10
    # An orderCode outside the movable slots (attempt >= 10) cannot move: no answer to give.
    fixed = replace(req, gateway_order_id=str(int(req.gateway_order_id) + 94))
    await gateway.create_link(fixed)
    assert (await gateway.create_link(fixed)).gateway_order_id == fixed.gateway_order_id  # adopted
    await gateway.cancel(fixed.gateway_order_id, "gone")
    with pytest.raises(GatewayError, match="cannot move on"):
        await gateway.create_link(fixed)
    assert (await gateway.query("99999999999", created_at=req.created_at)).outcome is PaymentOutcome.NOT_FOUND
    wrong_key = PayOSGateway(make_settings(sandbox_env.base, payos_api_key="nope"))
    with pytest.raises(GatewayError):
        await wrong_key.query(req.gateway_order_id, created_at=req.created_at)
    wrong_checksum = PayOSGateway(make_settings(sandbox_env.base, payos_checksum_key="nope"))
    with pytest.raises(PayOSRefused) as bad_signature:
        await wrong_checksum.create_link(sandbox_env.link_request(wrong_checksum))
    assert bad_signature.value.code == "20"
    with pytest.raises(GatewayError):  # the answer's signature does not verify either
        await wrong_checksum.query(req.gateway_order_id, created_at=req.created_at)
