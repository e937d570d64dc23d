"""The gateways as harsh as the real ones, end to end: the sandbox's fault switches (answers lost
after the work, answers slower than our timeout, error codes) against the API, the worker, Temporal
and Postgres; the sandbox's own ledger says what money really moved (docs/GATEWAYS.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

from domain.ids import late_workflow_id
from domain.messages import LatePayment
from store import payments
from tests.conftest import own_stack
from tests.helpers import click, open_pay_page, wait_for_status
from workflows.late_payment import LatePaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(pg_url: str, dev_env: Any) -> AsyncIterator[Any]:
    """A stack of its own: its sandbox's faults and ledger are seen by these tests only. One attempt
    per order, so that the first attempt is the last."""
    async with own_stack(pg_url, dev_env, order_session_max_attempts=1) as s:
        yield s


@pytest.fixture(autouse=True)
async def no_faults_after(stack: Any) -> AsyncIterator[None]:
    yield
    async with httpx.AsyncClient() as http:
        await http.delete(f"{stack.base}/sandbox/faults")


async def faults(stack: Any, *rules: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{stack.base}/sandbox/faults", json={"rules": list(rules)})
    assert r.status_code == 200, r.text


async def ledger(stack: Any, kind: str, gateway_order_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        entries = (await http.get(f"{stack.base}/sandbox/ledger")).json()[kind]
    return [e for e in entries if e["gatewayOrderId"] == gateway_order_id]


async def new_order(stack: Any, gateway: str, **extra: Any) -> tuple[dict[str, Any], dict[str, str], str]:
    product = await stack.product(stock=3, price=64_000)
    vid = product["variants"][0]["id"]
    headers = stack.auth(f"faults-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, vid, 1, gateway=gateway, **extra)
    assert r.status_code == 201, r.text
    return r.json()["data"], headers, vid


async def late_outcome(stack: Any, gateway: str, gid: str, timeout: float = 40) -> Any:
    handle = stack.client.get_workflow_handle_for(LatePaymentWorkflow.run, late_workflow_id(gateway, gid))
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.wait_for(handle.result(), max(0.1, deadline - time.monotonic()))
        except Exception:  # noqa: BLE001 - not started yet
            assert time.monotonic() < deadline, "the late settlement did not end"
            await asyncio.sleep(0.2)


async def paid_after_cancel(stack: Any, gateway: str) -> tuple[dict[str, Any], dict[str, str], str]:
    """An order cancelled by its shopper, whose link (MoMo's and VNPay's lapse, never cancelled) is
    then paid: late money the order's settlement must refund."""
    order, headers, _ = await new_order(stack, gateway)
    page = await open_pay_page(order["attempts"][0]["paymentUrl"])
    r = await stack.http.post(
        f"/orders/{order['orderId']}/cancel", json={"reason": "changed my mind"}, headers=headers
    )
    assert r.status_code == 200, r.text
    await wait_for_status(stack, order["orderId"], headers, "cancelled")
    return order, headers, page


@pytest.mark.parametrize(("gateway", "accepted"), [("momo", "0"), ("vnpay", "00")])
async def test_refund_answer_lost_after_the_work_is_found_by_asking_and_refunded_once(
    stack: Any, gateway: str, accepted: str
) -> None:
    """Before: the HTTP client resent the dropped refund, the gateway answered 41 (MoMo) / 94 (VNPay),
    that was read as "refused", and the desk invited a second refund by bank. Now the refund is never
    resent blindly: the adapter asks the gateway, which shows the refund done."""
    order, headers, page = await paid_after_cancel(stack, gateway)
    gid = order["attempts"][0]["gatewayOrderId"]
    await faults(stack, {"gateway": gateway, "op": "refund", "fault": "lose_answer", "times": 1})
    await click(page, "pay")
    outcome = await late_outcome(stack, gateway, gid)
    assert outcome.state == "refunded", outcome
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert detail["attempts"][0]["status"] == "refunded"
    refunds = await ledger(stack, "refunds", gid)
    # One request reached the gateway: its answer was lost, and nothing was sent a second time.
    assert [(r["accepted"], r["code"], r["duplicate"], r["faulted"]) for r in refunds] == [
        (True, accepted, False, True)
    ]
    assert sum(r["amount"] for r in refunds if r["accepted"]) == 64_000


async def test_refund_slower_than_the_call_deadline_is_not_unreachable_and_ends_refunded_once(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the call could outlive its activity; the workflow ended "unreachable, refund by hand"
    while the refund landed. Now the call ends inside its budget, the outcome is unknown, and the
    next ask finds the refund done."""
    from gateways import http as gateway_http

    monkeypatch.setattr(gateway_http, "CALL_SHARE", 0.05)  # 60 s start-to-close -> a 3 s call
    order, _, page = await paid_after_cancel(stack, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    await faults(stack, {"gateway": "momo", "op": "refund", "fault": "slow", "delaySeconds": 6, "times": 1})
    started = time.monotonic()
    await click(page, "pay")
    outcome = await late_outcome(stack, "momo", gid)
    assert outcome.state == "refunded", outcome
    assert time.monotonic() - started < 6  # the slow answer was not waited for
    refunds = await ledger(stack, "refunds", gid)
    assert [(r["accepted"], r["amount"]) for r in refunds] == [(True, 64_000)]  # asked once, found by query


async def test_momo_create_answer_lost_then_41_the_order_gets_a_link_all_the_same(stack: Any) -> None:
    """MoMo's query gives no payUrl back, so the link made by the lost send cannot be adopted: the
    attempt moves to `<orderId>-m1`, and the order is paid through it."""
    await faults(stack, {"gateway": "momo", "op": "create", "fault": "lose_answer", "times": 1})
    order, headers, vid = await new_order(stack, "momo")
    attempt = order["attempts"][0]
    assert attempt["gatewayOrderId"].endswith("-m1") and attempt["paymentUrl"]
    base = attempt["gatewayOrderId"].removesuffix("-m1")
    assert [(c["ok"], c["code"]) for c in await ledger(stack, "creates", base)] == [
        (True, "0"),
        (False, "41"),
    ]
    await click(await open_pay_page(attempt["paymentUrl"]), "pay")
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")
    assert detail["attempts"][0]["status"] == "success" and await stack.stock(vid) == 2


async def test_payos_create_answer_lost_then_231_the_link_is_adopted(stack: Any) -> None:
    await faults(stack, {"gateway": "payos", "op": "create", "fault": "lose_answer", "times": 1})
    order, headers, vid = await new_order(stack, "payos")
    attempt = order["attempts"][0]
    creates = await ledger(stack, "creates", attempt["gatewayOrderId"])
    assert [(c["ok"], c["code"]) for c in creates] == [(True, "00"), (False, "231")]  # the same link, adopted
    await click(await open_pay_page(attempt["paymentUrl"]), "pay")
    detail = await wait_for_status(stack, order["orderId"], headers, "paid")
    assert detail["attempts"][0]["status"] == "success" and await stack.stock(vid) == 2


@pytest.mark.parametrize("code", [99, 7777])  # "unknown error", and a code nobody documented
async def test_momo_query_without_a_verdict_at_the_deadline_never_fails_the_order(
    stack: Any, code: int
) -> None:
    """The last attempt was paid, its notification lost, and MoMo's query answers `code` when the
    window closes. Before: SYSTEM_ERROR, an attempt failure, so the order failed and its stock went
    back while the payment had gone through. Now it is no answer: the window closes as for a silent
    gateway, and once MoMo answers again the money is found and settled, once."""
    order, headers, _ = await new_order(stack, "momo", orderType="flash")
    gid = order["attempts"][0]["gatewayOrderId"]
    await faults(stack, {"gateway": "momo", "op": "query", "fault": "error_code", "code": code})
    await click(await open_pay_page(order["attempts"][0]["paymentUrl"]), "pay", drop=True)
    detail = await wait_for_status(stack, order["orderId"], headers, "expired", timeout=30)
    assert detail["attempts"][0]["status"] not in ("failed", "system_error"), detail["attempts"][0]
    asked = await ledger(stack, "queries", gid)
    assert asked and all(q["faulted"] and q["code"] == str(code) for q in asked)
    async with httpx.AsyncClient() as http:
        await http.delete(f"{stack.base}/sandbox/faults")  # MoMo answers again
    outcome = await late_outcome(stack, "momo", gid, timeout=60)
    assert outcome.state == "refunded", outcome  # the default policy: late money goes back, once
    assert [r["amount"] for r in await ledger(stack, "refunds", gid) if r["accepted"]] == [64_000]


async def momo_money_awaiting_refund(stack: Any) -> tuple[dict[str, Any], str]:
    """A MoMo payment the gateway took after the order expired, waiting for a refund: (order, paymentId)."""
    order, _, _ = await new_order(stack, "momo")
    page = await open_pay_page(order["attempts"][0]["paymentUrl"])
    r = await stack.http.post(f"/admin/orders/{order['orderId']}/expire", headers=stack.auth("ops", "admin"))
    assert r.status_code == 200, r.text
    sent = (await click(page, "pay", drop=True))["notification"]  # taken; the notification is lost
    gid = order["attempts"][0]["gatewayOrderId"]
    async with stack.engine.begin() as conn:
        await payments.require_refund(conn, order["orderId"], 0, "0", str(sent["transId"]), gid)
        pid = (
            await conn.execute(text("SELECT id FROM payment WHERE gateway_order_id = :g"), {"g": gid})
        ).scalar_one()
    return order, str(pid)


async def test_desk_refund_whose_answer_is_lost_is_refunded_once(stack: Any) -> None:
    order, pid = await momo_money_awaiting_refund(stack)
    gid = order["attempts"][0]["gatewayOrderId"]
    await faults(stack, {"gateway": "momo", "op": "refund", "fault": "lose_answer", "times": 1})
    r = await stack.http.post(
        f"/admin/payments/{pid}/refund", json={"note": "back"}, headers=stack.auth("ops", "admin")
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
    refunds = await ledger(stack, "refunds", gid)
    assert [(r["accepted"], r["amount"]) for r in refunds] == [(True, 64_000)]  # asked once, never resent


async def test_a_refund_returns_the_amount_received_not_the_price(stack: Any) -> None:
    """The gateway reported 50,000 received on a 64,000 attempt: the desk's refund (which asks for the
    attempt's price once the payment is refund_required) sends back 50,000."""
    order, pid = await momo_money_awaiting_refund(stack)
    async with stack.engine.begin() as conn:
        await conn.execute(text("UPDATE payment SET received_amount = 50000 WHERE id = :p"), {"p": pid})
    r = await stack.http.post(
        f"/admin/payments/{pid}/refund", json={"note": "back"}, headers=stack.auth("ops", "admin")
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text
    refunds = await ledger(stack, "refunds", order["attempts"][0]["gatewayOrderId"])
    assert [(r["accepted"], r["amount"]) for r in refunds] == [(True, 50_000)]


# ---- the late refund keeps the desk's contract (store/payments.py, "a gateway refund asked") ----------


async def attempt_row(stack: Any, gid: str) -> Any:
    async with stack.engine.connect() as conn:
        query = text(
            "SELECT id, status, refund_asked_at, refund_note FROM payment"
            " WHERE gateway_order_id = :g AND surplus_of IS NULL"
        )
        return (await conn.execute(query, {"g": gid})).one()


async def desk_mark_refunded(stack: Any, pid: Any, reference: str) -> httpx.Response:
    return await stack.http.post(
        f"/admin/payments/{pid}/mark-refunded",
        json={"reference": reference},
        headers=stack.auth("ops", "admin"),
    )


async def test_a_late_refund_definitely_refused_is_handed_to_a_person(stack: Any) -> None:
    """MoMo refuses the late refund (1080): nothing went back, so the flag the refund set before its
    call is cleared and a person may return the money by hand."""
    order, _, page = await paid_after_cancel(stack, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    await faults(stack, {"gateway": "momo", "op": "refund", "fault": "error_code", "code": 1080})
    await click(page, "pay")
    outcome = await late_outcome(stack, "momo", gid)
    assert outcome.state == "refund_required", outcome
    row = await attempt_row(stack, gid)
    assert (row.status, row.refund_asked_at) == (
        "refund_required",
        None,
    ) and "refused 1080" in row.refund_note
    assert [r for r in await ledger(stack, "refunds", gid) if r["accepted"]] == []  # nothing went back
    r = await desk_mark_refunded(stack, row.id, "VCB-1080")
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text


async def test_a_late_refund_whose_answer_is_lost_is_never_returned_by_hand(stack: Any) -> None:
    """MoMo refunds, the answer is lost, and its query answers 99 from then on: the late refund's
    outcome is unknown. Its settlement stopped (terminated), mark-refunded is refused with
    REFUND_OUTCOME_UNKNOWN until the gateway shows the refund; the money goes back once."""
    order, _, page = await paid_after_cancel(stack, "momo")
    gid = order["attempts"][0]["gatewayOrderId"]
    await faults(
        stack,
        {"gateway": "momo", "op": "refund", "fault": "lose_answer", "times": 1},
        {"gateway": "momo", "op": "query", "fault": "slow", "delaySeconds": 0, "times": 1},  # the look first
        {"gateway": "momo", "op": "query", "fault": "error_code", "code": 99},  # every look after it
    )
    await click(page, "pay")
    for _ in range(100):
        row = await attempt_row(stack, gid)
        if row.refund_note and "asking the gateway" in row.refund_note:
            break
        await asyncio.sleep(0.2)
    assert row.status == "refund_required" and row.refund_asked_at is not None, row
    assert [r["accepted"] for r in await ledger(stack, "refunds", gid) if not r["duplicate"]] == [True]
    await stack.client.get_workflow_handle(late_workflow_id("momo", gid)).terminate("nobody asks any more")

    r = await desk_mark_refunded(stack, row.id, "VCB-TWICE")
    assert r.status_code == 409 and r.json()["error"] == "REFUND_OUTCOME_UNKNOWN", r.text
    async with httpx.AsyncClient() as http:
        await http.delete(f"{stack.base}/sandbox/faults")  # MoMo's query answers again
    r = await stack.http.post(
        f"/admin/payments/{row.id}/refund", json={"note": "ask again"}, headers=stack.auth("ops", "admin")
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "refunded", r.text  # found, not resent
    r = await desk_mark_refunded(stack, row.id, "VCB-TWICE")
    assert r.status_code == 409 and r.json()["error"] == "NOT_REFUNDABLE", r.text
    accepted = [r["amount"] for r in await ledger(stack, "refunds", gid) if r["accepted"]]
    assert accepted == [64_000]


async def test_a_late_refund_returns_the_amount_received(stack: Any) -> None:
    """The late path sends payments.refund_amount(row) too: what the gateway reported received."""
    order, pid = await momo_money_awaiting_refund(stack)
    gid = order["attempts"][0]["gatewayOrderId"]
    async with stack.engine.begin() as conn:
        tx = (
            await conn.execute(
                text("UPDATE payment SET received_amount = 50000 WHERE id = :p RETURNING transaction_id"),
                {"p": pid},
            )
        ).scalar_one()
    late = LatePayment(
        order_id=order["orderId"],
        gateway="momo",
        gateway_order_id=gid,
        amount=64_000,
        result_code="0",
        transaction_id=tx,
    )
    outcome = await stack.client.execute_workflow(
        LatePaymentWorkflow.run,
        late,
        id=late_workflow_id("momo", gid),
        task_queue=stack.settings.temporal_task_queue,
    )
    assert outcome.state == "refunded", outcome
    assert [(r["accepted"], r["amount"]) for r in await ledger(stack, "refunds", gid)] == [(True, 50_000)]
