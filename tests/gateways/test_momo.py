"""MoMo: signatures against the documented recipe, result codes, verification, and a round trip
through the sandbox over HTTP."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from gateways.base import GatewayError, InvalidSignature, PaymentOutcome, RefundState
from gateways.momo import (
    CREATE_SIGNED,
    NOTIFY_SIGNED,
    MomoGateway,
    momo_outcome,
    momo_safe_id,
    momo_signature,
    momo_text,
)
from tests.gateways.harness import SandboxEnv, make_settings

ACCESS, SECRET, PARTNER = "klm05TvNBzhg7h7j", "at67qH6mk8w5Y1nAyMoYKMWACiEi2bsa", "MOMOBKUN20180529"
JSON = {"Accept": "application/json"}


def hmac256(text: str) -> str:
    return hmac.new(SECRET.encode(), text.encode("utf-8"), hashlib.sha256).hexdigest()


def ipn(**overrides: Any) -> dict[str, Any]:
    """A MoMo IPN body signed by hand with the documented string."""
    body: dict[str, Any] = {
        "partnerCode": PARTNER,
        "orderId": "123456789-1",
        "requestId": "req-1",
        "amount": 50000,
        "orderInfo": "Thanh toán đơn hàng",
        "orderType": "momo_wallet",
        "transId": 4088878653,
        "resultCode": 0,
        "message": "Thành công.",
        "payType": "qr",
        "responseTime": 1721720663942,
        "extraData": "",
    }
    body.update(overrides)
    raw = (
        f"accessKey={ACCESS}&amount={body['amount']}&extraData={body['extraData']}&message={body['message']}"
        f"&orderId={body['orderId']}&orderInfo={body['orderInfo']}&orderType={body['orderType']}"
        f"&partnerCode={body['partnerCode']}&payType={body['payType']}&requestId={body['requestId']}"
        f"&responseTime={body['responseTime']}&resultCode={body['resultCode']}&transId={body['transId']}"
    )
    return {**body, "signature": hmac256(raw)}


@pytest.fixture
def momo() -> MomoGateway:
    return MomoGateway(make_settings())


def test_create_signature_matches_documented_string() -> None:
    values = {
        "accessKey": ACCESS,
        "amount": 50000,
        "extraData": "",
        "ipnUrl": "https://m.example/ipn",
        "orderId": "123456789-1",
        "orderInfo": "Thanh toán đơn hàng 123",
        "partnerCode": PARTNER,
        "redirectUrl": "https://m.example/return?x=1",
        "requestId": "req-1",
        "requestType": "captureWallet",
    }
    raw = (
        f"accessKey={ACCESS}&amount=50000&extraData=&ipnUrl=https://m.example/ipn&orderId=123456789-1"
        f"&orderInfo=Thanh toán đơn hàng 123&partnerCode={PARTNER}&redirectUrl=https://m.example/return?x=1"
        "&requestId=req-1&requestType=captureWallet"
    )
    assert momo_signature(SECRET, CREATE_SIGNED, values) == hmac256(raw)
    assert len(hmac256(raw)) == 64


def test_notification_fields_are_the_documented_ones() -> None:
    assert NOTIFY_SIGNED == tuple(sorted(NOTIFY_SIGNED))  # MoMo's strings are alphabetical
    assert "accessKey" in NOTIFY_SIGNED and "signature" not in NOTIFY_SIGNED


def test_order_info_keeps_ampersand_out() -> None:
    assert momo_text("Áo & quần  x2") == "Áo quần x2"
    assert momo_safe_id("refund-123.ab") == "refund-123.ab"
    assert len(momo_safe_id("refund:with spaces/and-slashes")) == 32


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(0, "success"), (9000, "success"), (1000, "pending")]
    + [(c, "processing") for c in (7000, 7002, 8000)]
    + [(c, "failed") for c in (1001, 1002, 1004, 1007, 1026)]
    + [(c, "cancelled") for c in (1003, 1006, 1017)]
    + [(1005, "expired")]
    + [(c, "failed") for c in (10, 11, 12, 13, 20, 21, 22, 42, 47, 98)]
    # Not verdicts (docs/GATEWAYS.md): duplicate ids, 99, and any code we do not know.
    + [(c, "unknown") for c in (40, 41, 43, 99, 123456)],
)
def test_result_code_table(code: int, outcome: str) -> None:
    assert momo_outcome(code) == PaymentOutcome(outcome)


def test_verify_notification_accepts_documented_signature(momo: MomoGateway) -> None:
    result = momo.verify_notification(ipn())
    assert (result.gateway, result.gateway_order_id, result.outcome) == ("momo", "123456789-1", "success")
    assert result.amount == 50000 and result.transaction_id == "4088878653" and result.result_code == "0"


def test_verify_return_accepts_string_query_params(momo: MomoGateway) -> None:
    params = {k: str(v) for k, v in ipn(resultCode=1006).items()}
    result = momo.verify_return(params)
    assert result.outcome is PaymentOutcome.CANCELLED and result.amount == 50000


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(amount=1000), id="tampered-amount"),
        pytest.param(lambda b: b.update(resultCode=1006), id="tampered-result"),
        pytest.param(lambda b: b.pop("signature"), id="missing-signature"),
        pytest.param(lambda b: b.update(signature=""), id="empty-signature"),
        pytest.param(lambda b: b.update(signature="é" * 64), id="non-ascii-signature"),
        pytest.param(lambda b: b.pop("payType"), id="missing-field"),
    ],
)
def test_forged_or_malformed_notifications_are_rejected(momo: MomoGateway, mutate: Any) -> None:
    body = ipn()
    mutate(body)
    with pytest.raises(InvalidSignature):
        momo.verify_notification(body)


def test_other_partner_and_non_numeric_fields_are_rejected(momo: MomoGateway) -> None:
    with pytest.raises(InvalidSignature):
        momo.verify_notification(ipn(partnerCode="SOMEONEELSE"))
    with pytest.raises(InvalidSignature):
        momo.verify_notification(ipn(amount="50k"))
    with pytest.raises(InvalidSignature):
        MomoGateway(make_settings(momo_secret_key="another-secret")).verify_notification(ipn())


# -- over HTTP, against the sandbox ------------------------------------------------------------


async def test_round_trip_pay(sandbox_env: SandboxEnv) -> None:
    momo = MomoGateway(sandbox_env.settings)
    req = sandbox_env.link_request(momo, amount=75_000)
    link = await momo.create_link(req)
    assert link.payment_url == f"{sandbox_env.base}/sandbox/pay/momo/{req.gateway_order_id}"
    assert link.raw["resultCode"] == 0

    async with httpx.AsyncClient() as http:
        page = await http.get(link.payment_url)
        assert page.status_code == 200 and "75.000" in page.text and "Pay" in page.text
        pending = await momo.query(req.gateway_order_id, created_at=req.created_at)
        assert pending.outcome is PaymentOutcome.PENDING and pending.result_code == "1000"
        opened = await http.post(f"{link.payment_url}/open", json={}, headers=JSON)
        assert opened.status_code == 200 and opened.json()["result_code"] == "7000"
        confirming = await momo.query(req.gateway_order_id, created_at=req.created_at)
        assert confirming.outcome is PaymentOutcome.PROCESSING and confirming.result_code == "7000"
        acted = await http.post(f"{link.payment_url}/pay", json={}, headers=JSON)
    assert acted.status_code == 200 and acted.json()["result_code"] == "0"

    [note] = await sandbox_env.wait_notifications("momo", req.gateway_order_id)
    assert note["method"] == "POST"
    result = momo.verify_notification(note["json"])
    assert result.outcome is PaymentOutcome.SUCCESS and result.amount == 75_000 and result.transaction_id

    returned = momo.verify_return(
        dict(parse_qsl(urlsplit(acted.json()["return_url"]).query, keep_blank_values=True))
    )
    assert returned.outcome is PaymentOutcome.SUCCESS and returned.transaction_id == result.transaction_id

    queried = await momo.query(req.gateway_order_id, created_at=req.created_at)
    assert (queried.outcome, queried.amount, queried.transaction_id) == (
        PaymentOutcome.SUCCESS,
        75_000,
        result.transaction_id,
    )

    assert result.transaction_id is not None
    refund_kwargs: dict[str, Any] = {
        "gateway_order_id": req.gateway_order_id,
        "transaction_id": result.transaction_id,
        "description": "Late payment & refund",
    }
    too_much = await momo.refund(
        **refund_kwargs, amount=80_000, idempotency_key=f"refund0-{req.gateway_order_id}"
    )
    assert (too_much.state, too_much.result_code) == (RefundState.REFUSED, "1081")  # a definite no
    key = f"refund-{req.gateway_order_id}"
    refund = await momo.refund(**refund_kwargs, amount=75_000, idempotency_key=key)
    again = await momo.refund(**refund_kwargs, amount=75_000, idempotency_key=key)
    assert refund.state is RefundState.REFUNDED and refund.refund_id
    assert (
        again.state is RefundState.REFUNDED and again.refund_id == refund.refund_id
    )  # found, not asked again
    # Another key finds the payment refunded in full: never a second refund of the same money.
    more = await momo.refund(
        **refund_kwargs, amount=75_000, idempotency_key=f"refund2-{req.gateway_order_id}"
    )
    assert more.state is RefundState.REFUNDED and "other ids" in more.message
    asked = [r for r in sandbox_env.store.ledger.refunds if r["gatewayOrderId"] == req.gateway_order_id]
    assert [(r["accepted"], r["code"]) for r in asked] == [(False, "1081"), (True, "0")]


@pytest.mark.parametrize(
    ("action", "code", "outcome"),
    [("fail", "1001", "failed"), ("decline", "1006", "cancelled"), ("cancel", "1003", "cancelled")],
)
async def test_round_trip_other_actions(
    sandbox_env: SandboxEnv, action: str, code: str, outcome: str
) -> None:
    momo = MomoGateway(sandbox_env.settings)
    req = sandbox_env.link_request(momo)
    link = await momo.create_link(req)
    async with httpx.AsyncClient() as http:
        # A plain form post (the HTML buttons) is redirected to the merchant's return URL.
        acted = await http.post(f"{link.payment_url}/{action}")
    assert acted.status_code == 303
    location = acted.headers["location"]
    assert location.startswith(req.return_url + "?")
    assert momo.verify_return(dict(parse_qsl(urlsplit(location).query))).outcome == outcome

    [note] = await sandbox_env.wait_notifications("momo", req.gateway_order_id)
    result = momo.verify_notification(note["json"])
    assert (result.result_code, result.outcome) == (code, PaymentOutcome(outcome))
    queried = await momo.query(req.gateway_order_id, created_at=req.created_at)
    assert (queried.result_code, queried.outcome) == (code, PaymentOutcome(outcome))


async def test_create_resent_after_a_lost_answer_moves_to_a_fresh_order_id(sandbox_env: SandboxEnv) -> None:
    """MoMo answers 41 to a create it already did and its query gives no payUrl back: the link nobody
    saw cannot be adopted, so the attempt moves on to `<orderId>-m1` (docs/GATEWAYS.md)."""
    momo = MomoGateway(sandbox_env.settings)
    req = sandbox_env.link_request(momo)
    first = await momo.create_link(req)
    again = await momo.create_link(req)
    assert first.gateway_order_id == req.gateway_order_id
    assert again.gateway_order_id == f"{req.gateway_order_id}-m1" and again.payment_url != first.payment_url
    codes = [
        c["code"] for c in sandbox_env.store.ledger.creates if c["gatewayOrderId"] == req.gateway_order_id
    ]
    assert codes == ["0", "41"]


async def test_sandbox_refuses_bad_signature_and_unknown_orders(sandbox_env: SandboxEnv) -> None:
    forger = MomoGateway(make_settings(sandbox_env.base, momo_secret_key="not-the-secret"))
    with pytest.raises(GatewayError, match="resultCode=11"):
        await forger.create_link(sandbox_env.link_request(forger))
    with pytest.raises(GatewayError, match="resultCode=11"):
        await forger.query("whatever-1", created_at=datetime.now(UTC))
    momo = MomoGateway(sandbox_env.settings)
    missing = await momo.query("999999999-9", created_at=datetime.now(UTC))
    assert missing.outcome is PaymentOutcome.NOT_FOUND
    assert await momo.cancel("999999999-9", "window closed") is False


async def test_transport_error_is_gateway_error() -> None:
    momo = MomoGateway(make_settings("http://127.0.0.1:9"), timeout=2)
    with pytest.raises(GatewayError):
        await momo.query("123-1", created_at=datetime.now(UTC))
