"""Every adapter call ends inside one deadline (gateways/http.py: `within`, `call_budget`), the
stale-connection resend included, and a refund activity heartbeats while its call runs."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

import activities.payments
from activities.payments import _heartbeating
from gateways.base import GatewayError, RefundState
from gateways.http import CallDeadline, call_budget, gateway_client, within
from gateways.momo import MomoGateway
from tests.gateways.harness import make_settings

HANG_UP_AFTER = 0.4


class HangsUp:
    """Reads each request, waits HANG_UP_AFTER, then closes without a byte of answer: a gateway
    that dies after doing the work. The client resends once (RetryStaleConnection), and again
    nothing comes."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await asyncio.sleep(HANG_UP_AFTER)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def hangs_up() -> AsyncIterator[HangsUp]:
    gw = HangsUp()
    gw.server = await asyncio.start_server(gw.handle, "127.0.0.1", 0)
    yield gw
    gw.server.close()


async def test_without_a_deadline_the_resend_doubles_the_wait(hangs_up: HangsUp) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        await gateway_client("hangs-up-a").post(hangs_up.url, json={}, timeout=10)
    assert time.monotonic() - started >= 2 * HANG_UP_AFTER and hangs_up.requests == 2


async def test_one_deadline_bounds_the_whole_call_resend_included(hangs_up: HangsUp) -> None:
    started = time.monotonic()
    with pytest.raises(CallDeadline):
        async with within(0.6):
            await gateway_client("hangs-up-b").post(hangs_up.url, json={}, timeout=10)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 0.75 and hangs_up.requests == 2  # the resend went out, inside the deadline
    assert issubclass(CallDeadline, GatewayError)  # to every caller: no answer


async def test_an_adapter_call_is_bounded_by_its_deadline_and_a_refund_is_then_unknown(
    hangs_up: HangsUp,
) -> None:
    momo = MomoGateway(make_settings(momo_endpoint=f"{hangs_up.url}/momo"), timeout=10, deadline=0.6)
    started = time.monotonic()
    with pytest.raises(GatewayError):
        await momo.query("123-1", created_at=datetime.now(UTC))
    assert time.monotonic() - started < 0.75
    started = time.monotonic()
    refund = await momo.refund(
        gateway_order_id="123-1",
        transaction_id="42",
        amount=10_000,
        idempotency_key="rf-x-1",
        description="x",
    )
    assert refund.state is RefundState.UNKNOWN and time.monotonic() - started < 0.75  # never "refused"


async def test_call_budget_follows_the_activity_start_to_close() -> None:
    env = ActivityEnvironment()
    now = datetime.now(UTC)

    async def budget(default: float, started_ago: float, timeout: float | None = 60) -> float:
        env.info = dataclasses.replace(
            env.info,
            start_to_close_timeout=timedelta(seconds=timeout) if timeout else None,
            started_time=now - timedelta(seconds=started_ago),
        )
        return await env.run(_budget, default)

    assert call_budget(45) == 45  # outside an activity: the adapter's own deadline
    assert await budget(100, 0) == pytest.approx(45, abs=0.1)  # 3/4 of a 60 s start-to-close
    assert await budget(30, 0) == 30
    assert await budget(30, 50) == pytest.approx(7.5, abs=0.1)  # what is left of it, late in a try
    assert await budget(30, 59.9) == 1.0  # never below MIN_CALL_SECONDS
    assert await budget(30, 0, timeout=None) == 30


async def _budget(default: float) -> float:
    return call_budget(default)


async def test_a_refund_call_heartbeats_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activities.payments, "HEARTBEAT_EVERY_SECONDS", 0.05)
    beats: list[tuple] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    async def slow_call() -> str:
        await asyncio.sleep(0.4)
        return "done"

    async def refund_activity() -> str:
        return await _heartbeating(slow_call())

    assert await env.run(refund_activity) == "done"
    assert len(beats) >= 4
