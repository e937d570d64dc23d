"""VNPay: the PHP-urlencode hash recipe, pipe checksums, GMT+7 dates, x100 amounts, response
codes, and round trips through the sandbox over HTTP.

No independent Python implementation is used: the only one on PyPI (django-vnpay) needs Django
and DRF; the vectors below are built by hand from GATEWAYS.md instead."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

import gateways.vnpay
from devstack.sandbox import vnpay as vnpay_sim
from gateways.base import GatewayError, InvalidSignature, PaymentOutcome, RefundState
from gateways.vnpay import VnpayGateway
from gateways.vnpay_wire import (
    QUERYDR_SIGNED,
    parse_vnpay_date,
    php_urlencode,
    vnpay_date,
    vnpay_hash_data,
    vnpay_order_info,
    vnpay_outcome,
    vnpay_pipe_hash,
    vnpay_secure_hash,
    vnpay_status_outcome,
)
from tests.gateways.harness import SandboxEnv, make_settings

SECRET, TMN = "PAYWINDOWSANDBOXVNPAYSECRET00001", "PAYWIN01"
JSON = {"Accept": "application/json"}


def hmac512(text: str) -> str:
    return hmac.new(SECRET.encode(), text.encode("utf-8"), hashlib.sha512).hexdigest()


def ipn(**overrides: str) -> dict[str, str]:
    params = {
        "vnp_Amount": "5000000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14226112",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan don hang 123",
        "vnp_PayDate": "20240101070000",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": TMN,
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": "123456789-1",
    }
    params.update(overrides)
    # The documented recipe, by hand: sorted keys, PHP urlencode (space -> +), HMAC-SHA512.
    raw = "&".join(f"{k}={v.replace(' ', '+')}" for k, v in sorted(params.items()))
    return {**params, "vnp_SecureHash": hmac512(raw)}


@pytest.fixture
def vnpay() -> VnpayGateway:
    return VnpayGateway(make_settings())


def test_php_urlencode_rules() -> None:
    assert php_urlencode("a b~c*d/é.-_") == "a+b%7Ec%2Ad%2F%C3%A9.-_"


def test_secure_hash_matches_documented_string() -> None:
    params = {
        "vnp_Version": "2.1.0",
        "vnp_Command": "pay",
        "vnp_TmnCode": TMN,
        "vnp_Amount": "1000000",
        "vnp_CurrCode": "VND",
        "vnp_TxnRef": "123-1",
        "vnp_OrderInfo": "Thanh toan don hang 123",
        "vnp_ReturnUrl": "http://shop.example/return?a=1",
        "vnp_CreateDate": "20240101120000",
        "vnp_SecureHashType": "HmacSHA512",
        "other": "ignored",
    }
    raw = (
        f"vnp_Amount=1000000&vnp_Command=pay&vnp_CreateDate=20240101120000&vnp_CurrCode=VND"
        f"&vnp_OrderInfo=Thanh+toan+don+hang+123&vnp_ReturnUrl=http%3A%2F%2Fshop.example%2Freturn%3Fa%3D1"
        f"&vnp_TmnCode={TMN}&vnp_TxnRef=123-1&vnp_Version=2.1.0"
    )
    assert vnpay_hash_data(params) == raw
    assert vnpay_secure_hash(params, SECRET) == hmac512(raw)


def test_querydr_pipe_checksum() -> None:
    body = {
        "vnp_RequestId": "r1",
        "vnp_Version": "2.1.0",
        "vnp_Command": "querydr",
        "vnp_TmnCode": TMN,
        "vnp_TxnRef": "123-1",
        "vnp_TransactionDate": "20240101120000",
        "vnp_CreateDate": "20240101121500",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_OrderInfo": "querydr 1231",
    }
    raw = f"r1|2.1.0|querydr|{TMN}|123-1|20240101120000|20240101121500|127.0.0.1|querydr 1231"
    assert vnpay_pipe_hash(body, QUERYDR_SIGNED, SECRET) == hmac512(raw)


@pytest.fixture
def new_york_tz() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ")
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_dates_are_gmt7_whatever_the_server_zone(new_york_tz: None) -> None:
    assert time.localtime().tm_gmtoff != 7 * 3600
    assert vnpay_date(datetime(2024, 1, 1, 0, 0, tzinfo=UTC)) == "20240101070000"
    assert vnpay_date(datetime(2024, 6, 30, 20, 30, 5, tzinfo=UTC)) == "20240701033005"
    assert parse_vnpay_date("20240101070000") == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        vnpay_date(datetime(2024, 1, 1))  # naive: ambiguous


def test_order_info_is_plain_ascii() -> None:
    assert vnpay_order_info("Thanh toán đơn hàng #123 & Đặt cọc!") == "Thanh toan don hang 123 Dat coc"
    assert vnpay_order_info("!!!", "fallback") == "fallback"


@pytest.mark.parametrize(
    ("code", "status", "outcome"),
    [
        ("00", "00", "success"),
        ("00", "01", "pending"),
        ("00", "02", "failed"),
        ("00", "05", "pending"),
        ("07", "07", "processing"),
        ("07", "00", "processing"),
        ("11", "02", "expired"),
        ("24", "02", "cancelled"),
        ("99", "02", "unknown"),
        ("42", "02", "unknown"),
    ]
    + [(c, "02", "failed") for c in ("09", "10", "12", "13", "51", "65", "75", "79")],
)
def test_response_code_table(code: str, status: str, outcome: str) -> None:
    assert vnpay_outcome(code, status) == PaymentOutcome(outcome)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("00", "success"),
        ("01", "pending"),
        ("02", "failed"),
        ("04", "processing"),
        ("05", "success"),
        ("06", "success"),
        ("07", "processing"),
        ("09", "success"),
        ("xx", "unknown"),
    ],
)
def test_querydr_status_table(status: str, outcome: str) -> None:
    assert vnpay_status_outcome(status) == PaymentOutcome(outcome)


def test_verify_ipn_converts_amount_after_the_hash(vnpay: VnpayGateway) -> None:
    result = vnpay.verify_notification(ipn())
    assert result.amount == 50_000 and result.outcome is PaymentOutcome.SUCCESS
    assert (result.gateway_order_id, result.transaction_id, result.result_code) == (
        "123456789-1",
        "14226112",
        "00/00",
    )
    assert result.raw["vnp_Amount"] == "5000000"  # the raw, hashed value is kept as sent
    # Signed over VND (not x100) the same message is a forgery.
    wrong = ipn(vnp_Amount="50000")
    wrong["vnp_Amount"] = "5000000"
    with pytest.raises(InvalidSignature):
        vnpay.verify_notification(wrong)
    with pytest.raises(InvalidSignature):
        vnpay.verify_notification(ipn(vnp_Amount="5000050"))  # not whole VND


def test_verify_accepts_uppercase_hash_and_ignores_foreign_params(vnpay: VnpayGateway) -> None:
    params = ipn(vnp_ResponseCode="24", vnp_TransactionStatus="02", vnp_TransactionNo="0")
    params["vnp_SecureHash"] = params["vnp_SecureHash"].upper()
    result = vnpay.verify_return({**params, "utm_source": "x"})
    assert result.outcome is PaymentOutcome.CANCELLED and result.transaction_id is None


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: p.update(vnp_Amount="100"), id="tampered-amount"),
        pytest.param(lambda p: p.update(vnp_ResponseCode="24"), id="tampered-code"),
        pytest.param(lambda p: p.pop("vnp_SecureHash"), id="missing-hash"),
        pytest.param(lambda p: p.update(vnp_SecureHash=""), id="empty-hash"),
        pytest.param(lambda p: p.pop("vnp_BankTranNo"), id="dropped-field"),
    ],
)
def test_forged_notifications_are_rejected(vnpay: VnpayGateway, mutate: Any) -> None:
    params = ipn()
    mutate(params)
    with pytest.raises(InvalidSignature):
        vnpay.verify_notification(params)


def test_other_merchant_and_missing_fields_are_rejected(vnpay: VnpayGateway) -> None:
    with pytest.raises(InvalidSignature):
        vnpay.verify_notification(ipn(vnp_TmnCode="OTHER001"))
    params = ipn()
    del params["vnp_TransactionStatus"]
    params["vnp_SecureHash"] = vnpay_secure_hash(params, SECRET)
    with pytest.raises(InvalidSignature):
        vnpay.verify_notification(params)


async def test_payment_url_is_signed_and_in_vnpay_terms(vnpay: VnpayGateway, sandbox_env: SandboxEnv) -> None:
    req = sandbox_env.link_request(vnpay, amount=123_000)
    link = await vnpay.create_link(req)
    query = urlsplit(link.payment_url).query
    unsigned, _, digest = query.rpartition("&vnp_SecureHash=")
    assert digest == hmac512(unsigned)
    params = dict(parse_qsl(query))
    assert params["vnp_Amount"] == "12300000" and "vnp_SecureHashType" not in params
    assert params["vnp_CreateDate"] == vnpay_date(req.created_at)
    assert params["vnp_ExpireDate"] == vnpay_date(req.expires_at)
    assert params["vnp_OrderInfo"].isascii() and "&" not in params["vnp_OrderInfo"]


# -- over HTTP, against the sandbox ------------------------------------------------------------


async def _open(http: httpx.AsyncClient, payment_url: str) -> str:
    """Follow vpcpay.html to the sandbox pay page, as a browser would."""
    opened = await http.get(payment_url)
    assert opened.status_code == 303, opened.text
    return opened.headers["location"]


async def test_round_trip_pay_query_refund(sandbox_env: SandboxEnv) -> None:
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay, amount=250_000)
    link = await vnpay.create_link(req)
    assert link.payment_url.startswith(f"{sandbox_env.base}/sandbox/vnpay/paymentv2/vpcpay.html?")
    async with httpx.AsyncClient() as http:
        pay_page = await _open(http, link.payment_url)
        assert pay_page == f"{sandbox_env.base}/sandbox/pay/vnpay/{req.gateway_order_id}"
        assert "250.000" in (await http.get(pay_page)).text
        assert (await vnpay.query(req.gateway_order_id, created_at=req.created_at)).outcome == "pending"
        acted = (await http.post(f"{pay_page}/pay", json={}, headers=JSON)).json()
    assert acted["result_code"] == "00/00"

    [note] = await sandbox_env.wait_notifications("vnpay", req.gateway_order_id)
    assert note["method"] == "GET"
    result = vnpay.verify_notification(note["query"])
    assert result.outcome is PaymentOutcome.SUCCESS and result.amount == 250_000
    returned = vnpay.verify_return(dict(parse_qsl(urlsplit(acted["return_url"]).query)))
    assert returned.outcome is PaymentOutcome.SUCCESS and returned.transaction_id == result.transaction_id

    queried = await vnpay.query(req.gateway_order_id, created_at=req.created_at)
    assert (queried.outcome, queried.amount, queried.transaction_id) == (
        PaymentOutcome.SUCCESS,
        250_000,
        result.transaction_id,
    )
    # VNPay finds the payment by its original vnp_CreateDate: another date finds nothing.
    elsewhere = await vnpay.query(req.gateway_order_id, created_at=req.created_at - timedelta(days=1))
    assert elsewhere.outcome is PaymentOutcome.NOT_FOUND

    assert result.transaction_id is not None
    kwargs: dict[str, Any] = {
        "gateway_order_id": req.gateway_order_id,
        "transaction_id": result.transaction_id,
        "amount": 250_000,
        "idempotency_key": f"refund:{req.gateway_order_id}",
        "description": "Hoàn tiền",
        "created_at": req.created_at,
    }
    # Accepted (00), then in progress (querydr 05/06): not refunded until querydr shows type 02.
    refund = await vnpay.refund(**kwargs)
    assert refund.state is RefundState.UNKNOWN and refund.message == "refund in progress at VNPay"
    await asyncio.sleep(vnpay_sim.VNPAY_REFUND_PROCESSING_SECONDS)
    done = await vnpay.refund(**kwargs)  # asks querydr first: done, so nothing is sent again
    assert done.state is RefundState.REFUNDED and done.result_code == "00/02/00" and done.refund_id
    second = await vnpay.refund(**{**kwargs, "idempotency_key": "another-refund"})
    assert second.state is RefundState.REFUNDED  # the payment is refunded, whoever asks
    asked = [r for r in sandbox_env.store.ledger.refunds if r["gatewayOrderId"] == req.gateway_order_id]
    assert [(r["accepted"], r["amount"]) for r in asked] == [(True, 250_000)]  # one request, one refund
    assert await vnpay.cancel(req.gateway_order_id, "window closed") is False


@pytest.mark.parametrize(
    ("action", "codes", "outcome"),
    [("fail", "51/02", "failed"), ("decline", "24/02", "cancelled"), ("cancel", "24/02", "cancelled")],
)
async def test_round_trip_other_actions(
    sandbox_env: SandboxEnv, action: str, codes: str, outcome: str
) -> None:
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay)
    link = await vnpay.create_link(req)
    async with httpx.AsyncClient() as http:
        acted = await http.post(f"{await _open(http, link.payment_url)}/{action}")
    assert acted.status_code == 303 and acted.headers["location"].startswith(req.return_url + "?")
    returned = vnpay.verify_return(dict(parse_qsl(urlsplit(acted.headers["location"]).query)))
    assert (returned.result_code, returned.outcome) == (codes, PaymentOutcome(outcome))
    [note] = await sandbox_env.wait_notifications("vnpay", req.gateway_order_id)
    assert vnpay.verify_notification(note["query"]).outcome == outcome
    queried = await vnpay.query(req.gateway_order_id, created_at=req.created_at)
    assert (queried.result_code, queried.outcome) == ("00/02", PaymentOutcome.FAILED)
    refund = await vnpay.refund(
        gateway_order_id=req.gateway_order_id,
        transaction_id="0",
        amount=50_000,
        idempotency_key=f"r-unpaid-{req.gateway_order_id}",
        description="x",
        created_at=req.created_at,
    )
    assert not refund.ok and refund.result_code == "95"


async def test_sandbox_refuses_tampered_urls_and_bad_checksums(sandbox_env: SandboxEnv) -> None:
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay, amount=10_000)
    link = await vnpay.create_link(req)
    async with httpx.AsyncClient() as http:
        tampered = await http.get(
            link.payment_url.replace("vnp_Amount=1000000", "vnp_Amount=100"), headers=JSON
        )
        assert tampered.status_code == 400 and tampered.json()["code"] == "97"
        html = await http.get(link.payment_url.replace("vnp_Amount=1000000", "vnp_Amount=100"))
        assert html.status_code == 400 and "97" in html.text
    forger = VnpayGateway(make_settings(sandbox_env.base, vnpay_hash_secret="not-the-secret"))
    with pytest.raises(GatewayError, match="97"):
        await forger.query(req.gateway_order_id, created_at=req.created_at)
    unknown = await vnpay.query("999999999-9", created_at=req.created_at)
    assert unknown.outcome is PaymentOutcome.NOT_FOUND


async def test_refund_needs_the_original_date(vnpay: VnpayGateway) -> None:
    with pytest.raises(ValueError):
        await vnpay.refund(
            gateway_order_id="1-1", transaction_id="1", amount=1, idempotency_key="k", description="d"
        )


async def test_querydr_answer_with_a_bad_checksum_is_refused(
    vnpay: VnpayGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = {
        "vnp_ResponseCode": "00",
        "vnp_TxnRef": "1-1",
        "vnp_Amount": "100000",
        "vnp_TransactionStatus": "00",
        "vnp_SecureHash": "0" * 128,
    }
    fake = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=answer)))
    monkeypatch.setattr(gateways.vnpay, "gateway_client", lambda name: fake)
    with pytest.raises(GatewayError, match="checksum"):
        await vnpay.query("1-1", created_at=datetime.now(UTC))
    del answer["vnp_SecureHash"]  # an unsigned success is not trusted either
    with pytest.raises(GatewayError, match="checksum"):
        await vnpay.query("1-1", created_at=datetime.now(UTC))
