"""The sandbox as strict as the real gateways (ids taken once, refunds in progress, PayOS transfers), its
fault switches and its ledger, over raw HTTP: what an adapter sees on the wire."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from devstack.sandbox import vnpay as vnpay_sim
from gateways.momo import CREATE_SIGNED, QUERY_SIGNED, REFUND_SIGNED, momo_signature
from gateways.payos import PayOSGateway
from gateways.vnpay import VnpayGateway
from tests.gateways.harness import SandboxEnv

JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
async def no_faults(sandbox_env: SandboxEnv) -> Any:
    yield
    sandbox_env.store.faults.clear()


async def _faults(env: SandboxEnv, *rules: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{env.base}/sandbox/faults", json={"rules": list(rules)})
        assert r.status_code == 200, r.text
        return r.json()


async def _ledger(env: SandboxEnv) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{env.base}/sandbox/ledger")).json()


def _momo_body(env: SandboxEnv, fields: tuple[str, ...], **values: Any) -> dict[str, Any]:
    s = env.settings
    body = {"partnerCode": s.momo_partner_code, "lang": "vi", **values}
    body["signature"] = momo_signature(s.momo_secret_key, fields, {**body, "accessKey": s.momo_access_key})
    return body


def _momo_create(env: SandboxEnv, order_id: str, request_id: str, amount: int = 50_000) -> dict[str, Any]:
    return _momo_body(
        env,
        CREATE_SIGNED,
        requestId=request_id,
        orderId=order_id,
        amount=amount,
        orderInfo="order",
        redirectUrl=f"{env.base}/back",
        ipnUrl=f"{env.base}/api/v1/webhooks/momo",
        requestType="captureWallet",
        extraData="",
    )


async def _momo_post(env: SandboxEnv, op: str, body: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    # A plain client: no resend on a dropped connection, so each call is exactly one request.
    async with httpx.AsyncClient(timeout=timeout) as http:
        r = await http.post(f"{env.base}/sandbox/momo/v2/gateway/api/{op}", json=body)
        return r.json()


async def _momo_paid(env: SandboxEnv, amount: int = 50_000) -> tuple[str, str]:
    """A paid MoMo payment: (orderId, transId)."""
    order_id = f"{env.order_code()}-1"
    created = await _momo_post(env, "create", _momo_create(env, order_id, f"req-{order_id}", amount))
    async with httpx.AsyncClient() as http:
        paid = await http.post(f"{created['payUrl']}/pay", json={"drop": True}, headers=JSON)
    assert paid.status_code == 200
    query = await _momo_post(
        env, "query", _momo_body(env, QUERY_SIGNED, requestId=uuid.uuid4().hex, orderId=order_id)
    )
    return order_id, str(query["transId"])


def _momo_refund(env: SandboxEnv, trans_id: str, refund_id: str, amount: int = 50_000) -> dict[str, Any]:
    return _momo_body(
        env,
        REFUND_SIGNED,
        orderId=refund_id,
        requestId=refund_id,
        amount=amount,
        transId=int(trans_id),
        description="refund",
    )


async def test_fault_plan_is_set_shown_counted_and_cleared(sandbox_env: SandboxEnv) -> None:
    shown = await _faults(
        sandbox_env, {"gateway": "momo", "op": "query", "fault": "error_code", "code": 99, "times": 2}
    )
    assert shown["rules"][0]["remaining"] == 2
    async with httpx.AsyncClient() as http:
        bad = await http.post(f"{sandbox_env.base}/sandbox/faults", json={"rules": [{"fault": "explode"}]})
        assert bad.status_code == 422
        assert (await http.get(f"{sandbox_env.base}/sandbox/faults")).json()["rules"][0]["remaining"] == 2
        body = _momo_body(sandbox_env, QUERY_SIGNED, requestId="q1", orderId="nowhere-1")
        assert (await _momo_post(sandbox_env, "query", body))["resultCode"] == 99
        assert (await http.get(f"{sandbox_env.base}/sandbox/faults")).json()["rules"][0]["remaining"] == 1
        assert (await http.delete(f"{sandbox_env.base}/sandbox/faults")).json() == {"rules": []}
    assert (await _momo_post(sandbox_env, "query", body))["resultCode"] == 42
    queries = [q for q in (await _ledger(sandbox_env))["queries"] if q["gatewayOrderId"] == "nowhere-1"]
    assert [(q["code"], q["faulted"]) for q in queries] == [("99", True), ("42", False)]


async def test_seeded_rate_fires_the_same_calls_every_run(sandbox_env: SandboxEnv) -> None:
    fired = []
    for _ in range(2):
        await _faults(
            sandbox_env, {"gateway": "*", "op": "query", "fault": "http_500", "rate": 0.5, "seed": 7}
        )
        codes = []
        for n in range(12):
            async with httpx.AsyncClient() as http:
                body = _momo_body(sandbox_env, QUERY_SIGNED, requestId=f"r{n}", orderId="nowhere-2")
                r = await http.post(f"{sandbox_env.base}/sandbox/momo/v2/gateway/api/query", json=body)
                codes.append(r.status_code)
        fired.append(codes)
    assert fired[0] == fired[1] and 500 in fired[0] and 200 in fired[0]


async def test_momo_takes_each_order_id_and_request_id_once(sandbox_env: SandboxEnv) -> None:
    order_id = f"{sandbox_env.order_code()}-1"
    body = _momo_create(sandbox_env, order_id, f"req-{order_id}")
    assert (await _momo_post(sandbox_env, "create", body))["resultCode"] == 0
    assert (await _momo_post(sandbox_env, "create", body))["resultCode"] == 41  # the very same resend
    other = _momo_create(sandbox_env, f"{sandbox_env.order_code()}-1", f"req-{order_id}")
    assert (await _momo_post(sandbox_env, "create", other))["resultCode"] == 40
    creates = [c for c in (await _ledger(sandbox_env))["creates"] if c["gatewayOrderId"] == order_id]
    assert [(c["ok"], c["code"]) for c in creates] == [(True, "0"), (False, "41")]


async def test_momo_refund_answer_lost_after_the_work_then_the_resend_gets_41(
    sandbox_env: SandboxEnv,
) -> None:
    order_id, trans_id = await _momo_paid(sandbox_env)
    refund_id = f"rf-{order_id}"
    await _faults(sandbox_env, {"gateway": "momo", "op": "refund", "fault": "lose_answer", "times": 1})
    with pytest.raises(httpx.RemoteProtocolError):  # "server disconnected without sending a response"
        await _momo_post(sandbox_env, "refund", _momo_refund(sandbox_env, trans_id, refund_id))
    again = await _momo_post(sandbox_env, "refund", _momo_refund(sandbox_env, trans_id, refund_id))
    assert again["resultCode"] == 41
    query = await _momo_post(
        sandbox_env,
        "query",
        _momo_body(sandbox_env, QUERY_SIGNED, requestId=uuid.uuid4().hex, orderId=order_id),
    )
    assert [(r["orderId"], r["amount"], r["resultCode"]) for r in query["refundTrans"]] == [
        (refund_id, 50_000, 0)
    ]
    refunds = [r for r in (await _ledger(sandbox_env))["refunds"] if r["refundOrderId"] == refund_id]
    assert [(r["accepted"], r["code"], r["duplicate"]) for r in refunds] == [
        (True, "0", False),
        (False, "41", True),
    ]
    assert refunds[0]["gatewayOrderId"] == order_id and refunds[0]["amount"] == 50_000


async def test_slow_answers_after_the_work_and_error_code_does_no_work(sandbox_env: SandboxEnv) -> None:
    await _faults(
        sandbox_env,
        {"gateway": "momo", "op": "create", "fault": "slow", "delaySeconds": 1.0, "times": 1},
        {"gateway": "momo", "op": "create", "fault": "error_code", "code": 99, "times": 1},
    )
    slow_id, refused_id = f"{sandbox_env.order_code()}-1", f"{sandbox_env.order_code()}-1"
    with pytest.raises(httpx.ReadTimeout):
        await _momo_post(
            sandbox_env, "create", _momo_create(sandbox_env, slow_id, f"req-{slow_id}"), timeout=0.3
        )
    assert sandbox_env.store.get("momo", slow_id) is not None  # done, though nobody heard
    refused = await _momo_post(
        sandbox_env, "create", _momo_create(sandbox_env, refused_id, f"req-{refused_id}")
    )
    assert refused["resultCode"] == 99 and sandbox_env.store.get("momo", refused_id) is None
    await asyncio.sleep(0.8)  # let the slow answer go out before the server moves on


async def test_vnpay_refund_in_progress_answers_94_and_querydr_shows_it(
    sandbox_env: SandboxEnv, monkeypatch
) -> None:
    monkeypatch.setattr(vnpay_sim, "VNPAY_REFUND_PROCESSING_SECONDS", 0.6)
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay, amount=80_000)
    link = await vnpay.create_link(req)
    async with httpx.AsyncClient() as http:
        opened = await http.get(link.payment_url, headers=JSON)
        await http.post(f"{opened.json()['pay_url']}/pay", json={"drop": True}, headers=JSON)
    paid = await vnpay.query(req.gateway_order_id, created_at=req.created_at)
    body = vnpay._api_body("refund", req.gateway_order_id, req.created_at)
    refund_body = {
        **body,
        "vnp_TransactionType": "02",
        "vnp_Amount": "8000000",
        "vnp_TransactionNo": paid.transaction_id,
        "vnp_CreateBy": "t",
    }
    from gateways.vnpay_wire import REFUND_ANSWER_SIGNED, REFUND_SIGNED, vnpay_pipe_hash

    async def send(request_id: str) -> dict[str, Any]:
        signed = {**refund_body, "vnp_RequestId": request_id}
        signed["vnp_SecureHash"] = vnpay_pipe_hash(
            signed, REFUND_SIGNED, sandbox_env.settings.vnpay_hash_secret
        )
        return await vnpay._post(signed, REFUND_ANSWER_SIGNED)

    first_id = uuid.uuid4().hex
    assert (await send(first_id))["vnp_ResponseCode"] == "00"
    assert (await send(uuid.uuid4().hex))["vnp_ResponseCode"] == "94"  # in progress
    assert (await send(first_id))["vnp_ResponseCode"] == "94"  # the same request again
    during = await vnpay.query(req.gateway_order_id, created_at=req.created_at)
    assert during.raw["vnp_TransactionStatus"] in ("05", "06") and during.raw["vnp_TransactionType"] == "01"
    await asyncio.sleep(0.7)
    done = await vnpay.query(req.gateway_order_id, created_at=req.created_at)
    assert done.raw["vnp_TransactionType"] == "02"
    refunds = [
        r for r in (await _ledger(sandbox_env))["refunds"] if r["gatewayOrderId"] == req.gateway_order_id
    ]
    assert [(r["accepted"], r["code"], r["duplicate"]) for r in refunds] == [
        (True, "00", False),
        (False, "94", True),
        (False, "94", True),
    ]


async def test_payos_link_takes_several_transfers_in_any_state(sandbox_env: SandboxEnv) -> None:
    payos = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(payos, amount=100_000)
    await payos.create_link(req)
    code = req.gateway_order_id

    async def transfer(amount: int) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(
                f"{sandbox_env.base}/sandbox/payos/{code}/transfer", json={"amount": amount}
            )

    assert (await transfer(30_000)).status_code == 200
    first = await payos.query(code, created_at=req.created_at)
    assert (first.result_code, first.amount, first.raw["amountRemaining"]) == ("UNDERPAID", 30_000, 70_000)
    await transfer(70_000)
    await transfer(5_000)  # after PAID: a bank transfer cannot be refused
    link = (await payos.query(code, created_at=req.created_at)).raw
    assert (link["status"], link["amountPaid"]) == ("PAID", 105_000)
    assert [t["amount"] for t in link["transactions"]] == [30_000, 70_000, 5_000]
    assert len({t["reference"] for t in link["transactions"]}) == 3
    webhooks = await sandbox_env.wait_notifications("payos", code, count=3)
    assert [w["json"]["data"]["amount"] for w in webhooks] == [30_000, 70_000, 5_000]
    transfers = [t for t in (await _ledger(sandbox_env))["transfers"] if t["gatewayOrderId"] == code]
    assert [t["amount"] for t in transfers] == [30_000, 70_000, 5_000]


async def test_payos_create_with_an_existing_order_code_answers_231(sandbox_env: SandboxEnv) -> None:
    payos = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(payos)
    await payos.create_link(req)
    sdk_body = {
        "orderCode": int(req.gateway_order_id),
        "amount": req.amount,
        "description": "x",
        "cancelUrl": req.return_url,
        "returnUrl": req.return_url,
    }
    from gateways.payos import payos_payment_request_signature

    sdk_body["signature"] = payos_payment_request_signature(sdk_body, sandbox_env.settings.payos_checksum_key)
    s = sandbox_env.settings
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{sandbox_env.base}/sandbox/payos/v2/payment-requests",
            json=sdk_body,
            headers={"x-client-id": s.payos_client_id, "x-api-key": s.payos_api_key},
        )
    assert r.json()["code"] == "231"
    creates = [
        c for c in (await _ledger(sandbox_env))["creates"] if c["gatewayOrderId"] == req.gateway_order_id
    ]
    assert [(c["ok"], c["code"]) for c in creates] == [(True, "00"), (False, "231")]
