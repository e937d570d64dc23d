"""The sandbox's delivery knobs, expiry, pages and bookkeeping, over HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.sandbox.delivery import DeliveryKnobs
from gateways.base import PaymentOutcome
from gateways.momo import MomoGateway
from gateways.payos import PayOSGateway
from gateways.vnpay import VnpayGateway
from tests.gateways.harness import SandboxEnv

JSON = {"Accept": "application/json"}


async def _momo_link(env: SandboxEnv) -> tuple[MomoGateway, str, str]:
    momo = MomoGateway(env.settings)
    req = env.link_request(momo)
    link = await momo.create_link(req)
    return momo, req.gateway_order_id, link.payment_url


async def _act(url: str, action: str, **knobs: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{url}/{action}", json=knobs, headers=JSON)


async def _deliveries(env: SandboxEnv, txn_id: str, count: int = 0) -> list[dict[str, Any]]:
    """The delivery log for one transaction, waiting until it has `count` entries."""
    deadline = time.monotonic() + 5
    async with httpx.AsyncClient() as http:
        while True:
            r = await http.get(f"{env.base}/sandbox/deliveries", params={"transaction_id": txn_id})
            assert r.status_code == 200
            if len(r.json()) >= count or time.monotonic() > deadline:
                return r.json()
            await asyncio.sleep(0.02)


def test_knobs_parse() -> None:
    assert DeliveryKnobs.parse({}) == DeliveryKnobs()
    assert DeliveryKnobs.parse(
        {"duplicate": "2", "delay_ms": 10, "drop": "on", "reorder": True}
    ) == DeliveryKnobs(2, 10, True, True)
    with pytest.raises(ValueError):
        DeliveryKnobs.parse({"duplicate": -1})
    with pytest.raises(ValueError):
        DeliveryKnobs.parse({"delay_ms": "soon"})


async def test_duplicate_sends_identical_signed_copies(sandbox_env: SandboxEnv) -> None:
    momo, order_id, url = await _momo_link(sandbox_env)
    assert (await _act(url, "pay", duplicate=2)).json()["planned_deliveries"] == [
        "final",
        "duplicate",
        "duplicate",
    ]
    notes = await sandbox_env.wait_notifications("momo", order_id, count=3)
    assert len(notes) == 3 and notes[0]["json"] == notes[1]["json"] == notes[2]["json"]
    assert {momo.verify_notification(n["json"]).outcome for n in notes} == {PaymentOutcome.SUCCESS}
    log = await _deliveries(sandbox_env, order_id, count=3)
    assert [(d["kind"], d["status_code"]) for d in log] == [
        ("final", 204),
        ("duplicate", 204),
        ("duplicate", 204),
    ]


async def test_drop_sends_nothing_but_query_still_finds_the_payment(sandbox_env: SandboxEnv) -> None:
    momo, order_id, url = await _momo_link(sandbox_env)
    acted = await _act(url, "pay", drop=True)
    assert acted.json()["planned_deliveries"] == []
    await asyncio.sleep(0.3)
    assert sandbox_env.notifications("momo", order_id) == []
    [entry] = await _deliveries(sandbox_env, order_id)
    assert entry["dropped"] is True and entry["status_code"] is None
    reconciled = await momo.query(order_id, created_at=datetime.now(UTC))
    assert reconciled.outcome is PaymentOutcome.SUCCESS


async def test_reorder_delivers_a_stale_momo_notification_last(sandbox_env: SandboxEnv) -> None:
    momo, order_id, url = await _momo_link(sandbox_env)
    await _act(url, "pay", reorder=True)
    first, stale = await sandbox_env.wait_notifications("momo", order_id, count=2)
    assert momo.verify_notification(first["json"]).outcome is PaymentOutcome.SUCCESS
    late = momo.verify_notification(stale["json"])
    assert (late.result_code, late.outcome) == ("1006", PaymentOutcome.CANCELLED)
    assert stale["json"]["responseTime"] < first["json"]["responseTime"]


async def test_reorder_for_vnpay_sends_an_earlier_cancellation_after_success(sandbox_env: SandboxEnv) -> None:
    vnpay = VnpayGateway(sandbox_env.settings)
    req = sandbox_env.link_request(vnpay)
    link = await vnpay.create_link(req)
    async with httpx.AsyncClient() as http:
        pay_page = (await http.get(link.payment_url)).headers["location"]
    await _act(pay_page, "pay", reorder=True, duplicate=1)
    notes = await sandbox_env.wait_notifications("vnpay", req.gateway_order_id, count=3)
    outcomes = [vnpay.verify_notification(n["query"]).outcome for n in notes]
    assert outcomes == [PaymentOutcome.SUCCESS, PaymentOutcome.SUCCESS, PaymentOutcome.CANCELLED]
    log = await _deliveries(sandbox_env, req.gateway_order_id, count=3)
    assert [d["kind"] for d in log] == ["final", "duplicate", "stale"]
    assert all(d["status_code"] == 200 and '"RspCode":"00"' in d["answer"] for d in log)


async def test_delay_does_not_block_the_response(sandbox_env: SandboxEnv) -> None:
    _, order_id, url = await _momo_link(sandbox_env)
    started = time.monotonic()
    acted = await _act(url, "pay", delay_ms=400)
    assert acted.status_code == 200 and time.monotonic() - started < 0.35
    assert sandbox_env.notifications("momo", order_id) == []
    await sandbox_env.wait_notifications("momo", order_id)
    assert time.monotonic() - started >= 0.4


async def test_second_action_and_unknown_things_are_refused(sandbox_env: SandboxEnv) -> None:
    _, order_id, url = await _momo_link(sandbox_env)
    assert (await _act(url, "decline")).status_code == 200
    again = await _act(url, "pay")
    assert again.status_code == 409 and again.json()["state"] == "declined"
    assert (await _act(url, "refund")).status_code == 404
    assert (await _act(url, "pay", duplicate=99)).status_code == 422
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{sandbox_env.base}/sandbox/pay/momo/no-such-order")).status_code == 404
        assert (await http.get(f"{sandbox_env.base}/sandbox/pay/nope/{order_id}")).status_code == 404


async def test_expired_links_refuse_payment(sandbox_env: SandboxEnv) -> None:
    vnpay, payos_gw, momo = (
        VnpayGateway(sandbox_env.settings),
        PayOSGateway(sandbox_env.settings),
        MomoGateway(sandbox_env.settings),
    )
    vn_req = sandbox_env.link_request(vnpay, expires_in=timedelta(seconds=-1))
    vn_link = await vnpay.create_link(vn_req)
    pos_req = sandbox_env.link_request(payos_gw, expires_in=timedelta(seconds=-1))
    pos_link = await payos_gw.create_link(pos_req)
    momo_req = sandbox_env.link_request(momo)
    momo_link = await momo.create_link(momo_req)
    # MoMo's lifetime is the sandbox's own; move its clock instead of waiting 100 minutes.
    txn = sandbox_env.store.get("momo", momo_req.gateway_order_id)
    assert txn is not None
    txn.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    async with httpx.AsyncClient() as http:
        vn_page = (await http.get(vn_link.payment_url)).headers["location"]
        page = await http.get(vn_page)
        assert "expired" in page.text and "<button" not in page.text
        refused = {
            "vnpay": await http.post(f"{vn_page}/pay", headers=JSON),
            "payos": await http.post(f"{pos_link.payment_url}/pay", headers=JSON),
            "momo": await http.post(f"{momo_link.payment_url}/pay", headers=JSON),
        }
        html = await http.post(f"{momo_link.payment_url}/pay")
    assert {g: (r.status_code, r.json()["result_code"]) for g, r in refused.items()} == {
        "vnpay": (410, "11/02"),
        "payos": (410, "EXPIRED"),
        "momo": (410, "1005"),
    }
    assert html.status_code == 410 and "expired" in html.text
    assert (
        await payos_gw.query(pos_req.gateway_order_id, created_at=pos_req.created_at)
    ).outcome == "expired"
    assert (await momo.query(momo_req.gateway_order_id, created_at=momo_req.created_at)).outcome == "expired"
    assert await _deliveries(sandbox_env, momo_req.gateway_order_id) == []


async def test_pages_show_the_payment_and_list_transactions(sandbox_env: SandboxEnv) -> None:
    _, order_id, url = await _momo_link(sandbox_env)
    async with httpx.AsyncClient() as http:
        page = await http.get(url)
        index = await http.get(f"{sandbox_env.base}/sandbox/")
    assert page.headers["content-type"].startswith("text/html")
    for needle in ("50.000", "Thanh toán đơn hàng", "GMT+7", ">Pay<", ">Fail<", ">Decline<", ">Cancel<"):
        assert needle in page.text
    assert f'action="{url}/pay"' in page.text
    assert "<script" not in page.text and "<link" not in page.text  # nothing to fetch: works offline
    assert index.status_code == 200 and order_id in index.text and url in index.text
