"""Each adapter's table of answers that are verdicts and answers that are not (docs/GATEWAYS.md),
driven through the sandbox's `error_code` / `http_500` switches: the gateway answers that code and
does nothing, and the adapter must never read "no verdict" as a refusal or a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateways.base import GatewayError, PaymentOutcome, RefundState
from gateways.momo import MomoGateway
from gateways.payos import PayOSGateway
from gateways.vnpay import VnpayGateway
from tests.gateways.harness import SandboxEnv

JSON = {"Accept": "application/json"}


@pytest.fixture(autouse=True)
async def no_faults_after(sandbox_env: SandboxEnv) -> AsyncIterator[None]:
    yield
    sandbox_env.store.faults.clear()


def switch(env: SandboxEnv, gateway: str, op: str, code: Any) -> None:
    fault = {"fault": "http_500"} if code == 500 else {"fault": "error_code", "code": code}
    env.store.faults.replace({"rules": [{"gateway": gateway, "op": op, **fault}]})


async def _pay(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(follow_redirects=True) as http:
        opened = await http.get(url, headers=JSON)
        pay_url = opened.json()["pay_url"] if "vpcpay" in url else url
        return (await http.post(f"{pay_url}/pay", json={"drop": True}, headers=JSON)).json()


async def _paid_momo(env: SandboxEnv) -> tuple[MomoGateway, str, str]:
    momo = MomoGateway(env.settings)
    req = env.link_request(momo)
    link = await momo.create_link(req)
    await _pay(link.payment_url)
    paid = await momo.query(req.gateway_order_id, created_at=req.created_at)
    assert paid.transaction_id
    return momo, req.gateway_order_id, paid.transaction_id


@pytest.mark.parametrize(
    ("code", "state"),
    [(c, RefundState.REFUSED) for c in (11, 13, 20, 22, 1080, 1081)]
    + [(c, RefundState.UNKNOWN) for c in (40, 41, 43, 99, 7777, 500)],
)
async def test_momo_refund_answers(sandbox_env: SandboxEnv, code: int, state: RefundState) -> None:
    momo, gid, trans_id = await _paid_momo(sandbox_env)
    switch(sandbox_env, "momo", "refund", code)
    result = await momo.refund(
        gateway_order_id=gid,
        transaction_id=trans_id,
        amount=50_000,
        idempotency_key=f"rf-{gid}",
        description="x",
    )
    assert result.state is state, result
    assert result.result_code == ("no answer" if code == 500 else str(code))


@pytest.mark.parametrize(("code", "outcome"), [(99, PaymentOutcome.UNKNOWN), (7777, PaymentOutcome.UNKNOWN)])
async def test_momo_query_answers_that_are_not_verdicts(
    sandbox_env: SandboxEnv, code: int, outcome: Any
) -> None:
    momo, gid, _ = await _paid_momo(sandbox_env)
    switch(sandbox_env, "momo", "query", code)
    assert (await momo.query(gid, created_at=datetime.now(UTC))).outcome is outcome
    switch(sandbox_env, "momo", "query", 500)
    with pytest.raises(GatewayError):  # no answer at all
        await momo.query(gid, created_at=datetime.now(UTC))


async def test_momo_refund_whose_query_fails_is_unknown_and_is_never_sent(sandbox_env: SandboxEnv) -> None:
    """Ask before concluding: when the refunds cannot be looked up, nothing is sent."""
    momo, gid, trans_id = await _paid_momo(sandbox_env)
    switch(sandbox_env, "momo", "query", 99)
    result = await momo.refund(
        gateway_order_id=gid,
        transaction_id=trans_id,
        amount=50_000,
        idempotency_key=f"rf-{gid}",
        description="x",
    )
    assert result.state is RefundState.UNKNOWN
    assert not [r for r in sandbox_env.store.ledger.refunds if r["gatewayOrderId"] == gid]


@pytest.mark.parametrize(
    ("code", "state"),
    [(c, RefundState.REFUSED) for c in ("02", "03", "91", "95", "97")]
    + [(c, RefundState.UNKNOWN) for c in ("94", "99", "XX", 500)],
)
async def test_vnpay_refund_answers(sandbox_env: SandboxEnv, code: Any, state: RefundState) -> None:
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay)
    link = await vnpay.create_link(req)
    await _pay(link.payment_url)
    paid = await vnpay.query(req.gateway_order_id, created_at=req.created_at)
    switch(sandbox_env, "vnpay", "refund", code)
    result = await vnpay.refund(
        gateway_order_id=req.gateway_order_id,
        transaction_id=paid.transaction_id or "",
        amount=50_000,
        idempotency_key=f"rf-{req.gateway_order_id}",
        description="x",
        created_at=req.created_at,
    )
    assert result.state is state, result


@pytest.mark.parametrize("code", ["99", "94", 500])
async def test_vnpay_querydr_that_fails_is_no_answer(sandbox_env: SandboxEnv, code: Any) -> None:
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay)
    await vnpay.create_link(req)
    switch(sandbox_env, "vnpay", "query", code)
    with pytest.raises(GatewayError):
        await vnpay.query(req.gateway_order_id, created_at=req.created_at)


@pytest.mark.parametrize("code", ["20", 500])
async def test_payos_get_that_fails_is_no_answer(sandbox_env: SandboxEnv, code: Any) -> None:
    payos = PayOSGateway(sandbox_env.settings)
    req = sandbox_env.link_request(payos)
    await payos.create_link(req)
    switch(sandbox_env, "payos", "query", code)
    with pytest.raises(GatewayError):
        await payos.query(req.gateway_order_id, created_at=req.created_at)


async def test_payos_refund_is_a_definite_no(sandbox_env: SandboxEnv) -> None:
    result = await PayOSGateway(sandbox_env.settings).refund(
        gateway_order_id="1", transaction_id="FT1", amount=1, idempotency_key="k", description="x"
    )
    assert (result.state, result.result_code) == (RefundState.REFUSED, "UNSUPPORTED")
