"""What operators use: GET /metrics, GET /admin/stats, the archive schedule, the worker's Temporal SDK
metrics, and the Grafana dashboard / Prometheus config that read them.

These run on a database of their own (created in the session's embedded Postgres) with their own API
and worker (own task queue) on the shared Temporal dev server. /metrics and /admin/stats aggregate
every order, and the rest of the suite leaves windows open that close whenever their timers fire, so
exact numbers need a database nobody else writes to. Everything else is the real stack: Postgres,
Temporal, OrderWorkflow, the API over HTTP and the gateway sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from fastapi import FastAPI, Request, Response
from sqlalchemy import text
from temporalio import activity
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy, ScheduleRange
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.archive import ArchiveActivities
from domain.messages import ArchiveInput, ArchiveResult
from infra.schedules import ARCHIVE_SCHEDULE_ID, ensure_archive_schedule
from store.stats import EXPIRY_LAG_BUCKETS, TIME_TO_PAY_BUCKETS
from tests.conftest import Stack, free_port, own_stack, serve
from tests.helpers import wait_for_status
from workflows.archive import ArchiveWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parent.parent
HCMC = ZoneInfo("Asia/Ho_Chi_Minh")
ADMIN = "ops-admin"


def sdk_runtime(address: str) -> Runtime:
    """The worker's Temporal SDK metrics, built as worker.py's main() builds them."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


# ---- the Prometheus text format, read strictly --------------------------------------------------------

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,?)')
Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Scrape:
    types: dict[str, str]
    samples: dict[Key, float]

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; a series that does not exist yet is 0 (label sets appear on first use)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def parse_exposition(body: str) -> Scrape:
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[Key, float] = {}
    for line in body.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"{name} declared twice"
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = NAME.match(line)
        assert m, line
        name, rest, labels = m.group(0), line[m.end() :], {}
        if rest.startswith("{"):
            pos = 1
            while rest[pos] != "}":
                lm = LABEL.match(rest, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm[1]] = lm[2].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
                pos = lm.end()
            rest = rest[pos + 1 :]
        assert rest.startswith(" "), line
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no # TYPE before it"
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(rest.strip())
    assert helps >= set(types), "every family has a # HELP"
    return Scrape(types, samples)


def check_histogram(scrape: Scrape, name: str, bounds: tuple[float, ...]) -> None:
    buckets = {dict(labels)["le"]: v for labels, v in scrape.series(f"{name}_bucket").items()}
    assert set(buckets) == {*(repr(float(b)) for b in bounds), "+Inf"}
    values = [buckets[repr(float(b))] for b in bounds] + [buckets["+Inf"]]
    assert values == sorted(values), f"{name} buckets are cumulative"
    assert buckets["+Inf"] == scrape.value(f"{name}_count")


# ---- the operators' stack -----------------------------------------------------------------------------


def receiver() -> tuple[FastAPI, list[dict[str, Any]]]:
    """Takes reminders and order events as a shop's systems would (production configuration)."""
    app, received = FastAPI(), []

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(status_code=204)

    return app, received


@pytest.fixture(scope="module")
async def ops(pg_url: str, dev_env: Any) -> AsyncIterator[Stack]:
    """API + sandbox + worker on their own database and task queue (conftest.own_stack), with
    reminders and order events going to a receiver as in production."""
    hook_app, _ = receiver()
    hook_port = free_port()
    hook_server, hook_task = await serve(hook_app, hook_port)
    hook = f"http://127.0.0.1:{hook_port}/hook"
    async with own_stack(
        pg_url,
        dev_env,
        temporal_task_queue=f"ops-orders-{uuid.uuid4().hex[:6]}",
        reminder_webhook_url=hook,
        order_events_urls=hook,
    ) as stack:
        yield stack
    hook_server.should_exit = True
    await hook_task


@pytest.fixture(scope="module")
async def sdk_client(dev_env: Any) -> AsyncIterator[tuple[Client, str]]:
    """A client on a runtime exporting Temporal SDK metrics, exactly as the worker makes its own."""
    address = f"127.0.0.1:{free_port()}"
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=sdk_runtime(address),
    )
    yield client, f"http://{address}/metrics"


@pytest.fixture(scope="module")
async def archive_queue(ops: Stack, sdk_client: tuple[Client, str]) -> AsyncIterator[str]:
    """A worker for ArchiveWorkflow (what worker.py will register), on its own task queue."""
    queue = f"ops-archive-{uuid.uuid4().hex[:6]}"
    archive = ArchiveActivities(ops.engine)
    async with Worker(
        sdk_client[0],
        task_queue=queue,
        workflows=[ArchiveWorkflow],
        activities=[archive.archive_ended_orders],
    ):
        yield queue


async def scrape(stack: Stack) -> tuple[httpx.Response, Scrape]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        r = await http.get("/metrics")  # no Authorization header
    assert r.status_code == 200, r.text
    return r, parse_exposition(r.text)


async def pay_page(payment_url: str) -> str:
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as http:
        r = await http.get(payment_url)
    assert r.status_code == 200 and "/sandbox/pay/" in str(r.url), (r.status_code, r.url)
    return str(r.url)


async def click(page: str, action: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{page}/{action}", json={}, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text


async def until(stack: Stack, order_id: str, headers: dict[str, str], done: Any, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        detail = (await stack.http.get(f"/orders/{order_id}", headers=headers)).json()["data"]
        if done(detail):
            return detail
        assert time.monotonic() < deadline, detail
        await asyncio.sleep(0.1)


async def new_order(stack: Stack, gateway: str, **extra: Any) -> tuple[dict, dict[str, str]]:
    product = await stack.product(stock=5, price=64_000)
    headers = stack.auth(f"ops-{uuid.uuid4().hex[:6]}")
    r = await stack.order(headers, product["variants"][0]["id"], 1, gateway=gateway, **extra)
    assert r.status_code == 201, r.text
    return r.json()["data"], headers


# ---- one afternoon of orders --------------------------------------------------------------------------


@dataclass
class Afternoon:
    start: datetime
    end: datetime
    before: Scrape
    after: Scrape
    orders: dict[str, dict]  # name -> final detail


@pytest.fixture(scope="module")
async def afternoon(ops: Stack) -> Afternoon:
    """Five orders, each ending a different way: paid; cancelled by the shopper with a reason;
    expired by an admin; failed at MoMo, retried on VNPay, then cancelled; expired by its own timer,
    then paid late and refunded."""
    _, before = await scrape(ops)
    start = datetime.now(UTC) - timedelta(seconds=1)
    admin = ops.auth(ADMIN, "admin")

    late, late_headers = await new_order(ops, "momo", orderType="flash")  # its 3 s start now
    late_page = await pay_page(late["attempts"][0]["paymentUrl"])

    paid, paid_headers = await new_order(ops, "momo")
    await click(await pay_page(paid["attempts"][0]["paymentUrl"]), "pay")
    await wait_for_status(ops, paid["orderId"], paid_headers, "paid")

    cancelled, cancelled_headers = await new_order(ops, "vnpay")
    r = await ops.http.post(
        f"/orders/{cancelled['orderId']}/cancel",
        json={"reason": "đổi ý: mua ở chỗ khác"},
        headers=cancelled_headers,
    )
    assert r.status_code == 200, r.text

    expired, expired_headers = await new_order(ops, "payos")
    r = await ops.http.post(f"/admin/orders/{expired['orderId']}/expire", headers=admin)
    assert r.status_code == 200, r.text

    retried, retried_headers = await new_order(ops, "momo")
    await click(await pay_page(retried["attempts"][0]["paymentUrl"]), "fail")
    await until(ops, retried["orderId"], retried_headers, lambda d: d["attempts"][0]["status"] == "failed")
    r = await ops.http.post(
        f"/orders/{retried['orderId']}/retry-payment", json={"gateway": "vnpay"}, headers=retried_headers
    )
    assert r.status_code == 200, r.text
    r = await ops.http.post(f"/orders/{retried['orderId']}/cancel", json={}, headers=retried_headers)
    assert r.status_code == 200, r.text

    await wait_for_status(ops, late["orderId"], late_headers, "expired", timeout=20)
    await click(late_page, "pay")  # the money arrives after the window closed
    await until(ops, late["orderId"], late_headers, lambda d: d["attempts"][0]["status"] == "refunded")

    orders = {}
    for name, order, headers in (
        ("paid", paid, paid_headers),
        ("cancelled", cancelled, cancelled_headers),
        ("expired", expired, expired_headers),
        ("retried", retried, retried_headers),
        ("late", late, late_headers),
    ):
        orders[name] = (await ops.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    _, after = await scrape(ops)
    return Afternoon(start, datetime.now(UTC) + timedelta(seconds=1), before, after, orders)


def seconds_between(detail: dict, since: str, until_: str) -> float:
    return (datetime.fromisoformat(detail[until_]) - datetime.fromisoformat(since)).total_seconds()


# ---- GET /metrics ---------------------------------------------------------------------------------------


async def test_metrics_count_exactly_what_happened(ops: Stack, afternoon: Afternoon) -> None:
    before, after = afternoon.before, afternoon.after

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert {
        s: delta("paywindow_orders", status=s)
        for s in ("pending_payment", "paid", "cancelled", "expired", "failed")
    } == {
        "pending_payment": 0,
        "paid": 1,
        "cancelled": 2,
        "expired": 2,
        "failed": 0,
    }
    assert after.value("paywindow_orders", status="failed") == 0  # every status is present, zeros included
    assert delta("paywindow_orders_ended_total", status="paid", reason="paid_via_momo") == 1
    assert delta("paywindow_orders_ended_total", status="cancelled", reason="cancelled_by_customer") == 2
    assert delta("paywindow_orders_ended_total", status="expired", reason="payment_window_closed") == 2
    reasons = {dict(labels)["reason"] for labels in after.series("paywindow_orders_ended_total")}
    assert not [r for r in reasons if "mua" in r or ":" in r], reasons  # the shopper's words stay out

    notifications = {
        (dict(k)["gateway"], dict(k)["outcome"]): v - before.series("paywindow_notifications_total").get(k, 0)
        for k, v in after.series("paywindow_notifications_total").items()
    }
    assert {k: v for k, v in notifications.items() if v} == {("momo", "success"): 2, ("momo", "failed"): 1}

    attempts = {
        (dict(k)["gateway"], dict(k)["status"]): v
        - before.series("paywindow_payment_attempts_total").get(k, 0)
        for k, v in after.series("paywindow_payment_attempts_total").items()
    }
    assert {k: v for k, v in attempts.items() if v} == {
        ("momo", "success"): 1,
        ("momo", "failed"): 1,
        ("momo", "refunded"): 1,
        ("vnpay", "cancelled"): 2,
        ("payos", "expired"): 1,
    }
    assert delta("paywindow_retries_total") == 1
    async with ops.engine.connect() as conn:  # what the HELP promises: the sessions' own count
        sessions = (await conn.execute(text("SELECT sum(payment_attempts) FROM order_session"))).scalar_one()
    assert after.value("paywindow_retries_total") == sessions
    assert delta("paywindow_refunds_total", status="refunded") == 1
    assert delta("paywindow_refunds_total", status="refund_required") == 0
    assert delta("paywindow_late_payments_total") == 1

    check_histogram(after, "paywindow_time_to_pay_seconds", TIME_TO_PAY_BUCKETS)
    check_histogram(after, "paywindow_expiry_lag_seconds", EXPIRY_LAG_BUCKETS)
    paid = afternoon.orders["paid"]
    time_to_pay = seconds_between(paid, paid["createdAt"], "endedAt")
    assert delta("paywindow_time_to_pay_seconds_count") == 1
    assert delta("paywindow_time_to_pay_seconds_sum") == pytest.approx(time_to_pay, abs=1e-3)
    first = next(b for b in TIME_TO_PAY_BUCKETS if time_to_pay <= b)
    assert delta("paywindow_time_to_pay_seconds_bucket", le=repr(first)) == 1
    lags = [
        seconds_between(afternoon.orders[n], afternoon.orders[n]["session"]["expiresAt"], "endedAt")
        for n in ("expired", "late")
    ]
    assert delta("paywindow_expiry_lag_seconds_count") == 2
    assert delta("paywindow_expiry_lag_seconds_sum") == pytest.approx(sum(lags), abs=1e-3)
    for bound in EXPIRY_LAG_BUCKETS:
        assert delta("paywindow_expiry_lag_seconds_bucket", le=repr(bound)) == sum(
            lag <= bound for lag in lags
        )
    # The admin's expire closes the window at once; the MoMo order's own timer closes it on time
    # (nobody was confirming its link, so nothing holds the window).
    assert lags[0] < 1 and 0 <= lags[1] < 3, lags

    types = after.types
    assert types["paywindow_orders"] == "gauge" and types["paywindow_orders_ended_total"] == "counter"
    assert types["paywindow_time_to_pay_seconds"] == types["paywindow_expiry_lag_seconds"] == "histogram"


async def test_undelivered_notifications_are_a_gauge_operators_can_alert_on(
    ops: Stack, afternoon: Afternoon
) -> None:
    """A verdict stored while Temporal was unreachable and still not handed on minutes later waits for
    the gateway's retry: /metrics counts it, and only it (fresh or delivered rows do not count)."""
    order_id = afternoon.orders["paid"]["orderId"]
    _, before = await scrape(ops)
    rows = {"old": timedelta(minutes=10), "fresh": timedelta(seconds=5)}
    async with ops.engine.begin() as conn:
        for name, age in rows.items():
            await conn.execute(
                text(
                    "INSERT INTO payment_notification (id, order_id, gateway, gateway_order_id, dedupe_key, outcome, "
                    "result_code, amount, payload, received_at) VALUES (:id, :order, 'vnpay', 'x', :key, 'success', "
                    "'00', 1, '{}', now() - CAST(:age AS interval))"
                ),
                {
                    "id": uuid.uuid4(),
                    "order": order_id,
                    "key": f"undelivered-{name}-{uuid.uuid4().hex}",
                    "age": age,
                },
            )
    try:
        _, after = await scrape(ops)
        assert after.types["paywindow_notifications_undelivered"] == "gauge"
        delta = after.value("paywindow_notifications_undelivered", gateway="vnpay") - before.value(
            "paywindow_notifications_undelivered", gateway="vnpay"
        )
        assert delta == 1
    finally:
        async with ops.engine.begin() as conn:
            await conn.execute(text("DELETE FROM payment_notification WHERE dedupe_key LIKE 'undelivered-%'"))


async def test_metrics_is_plain_prometheus_text_outside_the_api(ops: Stack) -> None:
    response, _ = await scrape(ops)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.text.endswith("\n")
    schema = (await ops.http.get(f"{ops.base}/openapi.json")).json()
    assert "/metrics" not in schema["paths"] and "/api/v1/admin/stats" in schema["paths"]
    assert (await ops.http.get("/metrics")).status_code == 404  # top level only, not under /api/v1


async def test_metrics_survive_the_archive(ops: Stack, afternoon: Afternoon, archive_queue: str) -> None:
    """Archiving hides orders from listings, never from the counters."""
    async with ops.engine.begin() as conn:
        await conn.execute(
            text("""UPDATE "order" SET ended_at = ended_at - interval '400 days' WHERE id = :id"""),
            {"id": afternoon.orders["retried"]["orderId"]},
        )
    _, before = await scrape(ops)
    result = await ops.client.execute_workflow(
        ArchiveWorkflow.run,
        ArchiveInput(older_than_days=30),
        id=f"ops-archive-{uuid.uuid4().hex[:6]}",
        task_queue=archive_queue,
    )
    assert result.archived >= 1
    _, after = await scrape(ops)
    for name in ("paywindow_orders", "paywindow_orders_ended_total", "paywindow_payment_attempts_total"):
        assert after.series(name) == before.series(name), name
    assert after.value("paywindow_retries_total") == before.value("paywindow_retries_total")


# ---- GET /admin/stats -------------------------------------------------------------------------------------


async def test_admin_stats_describe_the_afternoon(ops: Stack, afternoon: Afternoon) -> None:
    r = await ops.http.get(
        "/admin/stats",
        params={"from": afternoon.start.isoformat(), "to": afternoon.end.isoformat()},
        headers=ops.auth(ADMIN, "admin"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    s = body["data"]
    assert s["timezone"] == "Asia/Ho_Chi_Minh"
    assert datetime.fromisoformat(s["from"]) == afternoon.start and s["from"].endswith("+07:00")
    assert s["totalOrders"] == 5 and s["endedOrders"] == 5
    assert s["countsByStatus"] == {"pending_payment": 0, "paid": 1, "cancelled": 2, "expired": 2, "failed": 0}
    assert {(e["status"], e["reason"]): e["count"] for e in s["endReasons"]} == {
        ("paid", "paid_via_momo"): 1,
        ("cancelled", "cancelled_by_customer"): 2,
        ("expired", "payment_window_closed"): 2,
    }
    assert s["expirationRate"] == pytest.approx(2 / 5)
    assert s["paidVsExpired"] == {"paid": 1, "expired": 2, "ratio": 0.5, "paidShare": pytest.approx(1 / 3)}
    # The admin-expired PayOS order: its one link was still open. The late MoMo one was paid (late).
    assert s["abandonment"] == {"abandoned": 1, "rate": pytest.approx(1 / 5)}
    paid = afternoon.orders["paid"]
    time_to_pay = seconds_between(paid, paid["createdAt"], "endedAt")
    assert s["timeToPay"]["paidOrders"] == 1
    assert s["timeToPay"]["medianSeconds"] == pytest.approx(time_to_pay, abs=1e-3)
    assert s["timeToPay"]["p90Seconds"] == pytest.approx(time_to_pay, abs=1e-3)
    assert {g["gateway"]: (g["attempts"], g["byStatus"]) for g in s["gateways"]} == {
        "momo": (3, {"failed": 1, "refunded": 1, "success": 1}),
        "payos": (1, {"expired": 1}),
        "vnpay": (2, {"cancelled": 2}),
    }
    assert s["retries"] == {"used": 1, "ordersWithRetries": 1, "paidAfterRetry": 0}

    hours = s["expirationByHour"]
    assert [h["hour"] for h in hours] == list(range(24))
    expected = {h: {"ended": 0, "expired": 0} for h in range(24)}
    for detail in afternoon.orders.values():
        hour = datetime.fromisoformat(detail["createdAt"]).astimezone(HCMC).hour
        expected[hour]["ended"] += 1
        expected[hour]["expired"] += detail["status"] == "expired"
    for h in hours:
        assert (h["ended"], h["expired"]) == (expected[h["hour"]]["ended"], expected[h["hour"]]["expired"])
        assert h["expirationRate"] == (pytest.approx(h["expired"] / h["ended"]) if h["ended"] else None)


async def test_admin_stats_default_to_the_last_seven_days(ops: Stack, afternoon: Afternoon) -> None:
    r = await ops.http.get("/admin/stats", headers=ops.auth(ADMIN, "admin"))
    assert r.status_code == 200, r.text
    s = r.json()["data"]
    span = datetime.fromisoformat(s["to"]) - datetime.fromisoformat(s["from"])
    assert span == timedelta(days=7)
    assert abs(datetime.fromisoformat(s["to"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert s["countsByStatus"]["paid"] >= 1
    # Times without an offset are Vietnamese wall-clock time; a day three days before the afternoon
    # has nothing (the archive test in this module backdates orders by 1, 40, 41 and 45 days, and the
    # tests run in any order).
    day = afternoon.start.astimezone(HCMC).date() - timedelta(days=3)
    r = await ops.http.get(
        "/admin/stats",
        params={"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
        headers=ops.auth(ADMIN, "admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["from"] == f"{day.isoformat()}T00:00:00+07:00"
    assert r.json()["data"]["totalOrders"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "before"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "before"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z"}, "366 days"),
        ({"from": "yesterday"}, "from"),
        ({"to": "9999-12-31T23:00:00Z"}, "out of range"),  # the year 10000 in Ho Chi Minh City
        ({"to": "0001-01-03T00:00:00Z"}, "out of range"),  # its default `from` is before year 1
    ],
)
async def test_admin_stats_refuse_a_bad_range(ops: Stack, params: dict, message: str) -> None:
    r = await ops.http.get("/admin/stats", params=params, headers=ops.auth(ADMIN, "admin"))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "VALIDATION_ERROR" and message in r.json()["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},  # exactly 366 days
        {"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"},  # ancient, still a range
    ],
)
async def test_admin_stats_accept_any_range_up_to_366_days(ops: Stack, params: dict) -> None:
    r = await ops.http.get("/admin/stats", params=params, headers=ops.auth(ADMIN, "admin"))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["totalOrders"] == 0


async def test_admin_stats_are_for_admins(ops: Stack) -> None:
    r = await ops.http.get("/admin/stats", headers=ops.auth("a-shopper"))
    assert r.status_code == 403 and r.json()["error"] == "FORBIDDEN"
    r = await ops.http.get("/admin/stats")
    assert r.status_code == 401 and r.json()["error"] == "UNAUTHORIZED"


# ---- the archive ----------------------------------------------------------------------------------------


async def test_archive_hides_orders_that_ended_over_30_days_ago(ops: Stack, archive_queue: str) -> None:
    customer = f"ops-archive-{uuid.uuid4().hex[:6]}"
    headers = ops.auth(customer)
    product = await ops.product(stock=10)
    ids: dict[str, str] = {}
    for name in ("old", "older", "old_refund_pending", "recent"):
        r = await ops.order(headers, product["variants"][0]["id"], 1, gateway="vnpay")
        assert r.status_code == 201, r.text
        ids[name] = r.json()["data"]["orderId"]
        r = await ops.http.post(f"/orders/{ids[name]}/cancel", json={}, headers=headers)
        assert r.status_code == 200, r.text
    async with ops.engine.begin() as conn:
        for name, days in (("old", 40), ("older", 41), ("old_refund_pending", 45), ("recent", 1)):
            await conn.execute(
                text(
                    """UPDATE "order" SET ended_at = now() - make_interval(days => :d),
                       created_at = now() - make_interval(days => :d, hours => 1) WHERE id = :id"""
                ),
                {"d": days, "id": ids[name]},
            )
        # A late payment that still waits for a refund (PayOS has none: an operator must act).
        await conn.execute(
            text("UPDATE payment SET status = 'refund_required' WHERE order_id = :id"),
            {"id": ids["old_refund_pending"]},
        )

    def listed() -> Any:
        return ops.http.get("/orders", params={"size": 100}, headers=headers)

    assert {o["orderId"] for o in (await listed()).json()["data"]["items"]} == set(ids.values())

    result = await ops.client.execute_workflow(
        ArchiveWorkflow.run,
        ArchiveInput(older_than_days=30, batch_size=1),
        id=f"ops-archive-{uuid.uuid4().hex[:6]}",
        task_queue=archive_queue,
    )
    assert isinstance(result, ArchiveResult)
    assert (result.archived, result.batches, result.held_for_refund) == (2, 2, 1)
    assert abs(result.cutoff - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=1)
    async with ops.engine.connect() as conn:
        archived = dict(
            (
                await conn.execute(
                    text('SELECT id::text, archived FROM "order" WHERE customer_id = :c'), {"c": customer}
                )
            ).all()
        )
    assert archived == {
        ids["old"]: True,
        ids["older"]: True,
        ids["old_refund_pending"]: False,
        ids["recent"]: False,
    }
    page = (await listed()).json()["data"]
    assert {o["orderId"] for o in page["items"]} == {ids["old_refund_pending"], ids["recent"]} and page[
        "total"
    ] == 2
    admin_page = (
        await ops.http.get("/orders", params={"customerId": customer}, headers=ops.auth(ADMIN, "admin"))
    ).json()["data"]
    assert admin_page["total"] == 2
    # Still there for the one who asks by id (support, refunds), and counted by the stats.
    assert (await ops.http.get(f"/orders/{ids['old']}", headers=headers)).status_code == 200

    again = await ops.client.execute_workflow(
        ArchiveWorkflow.run,
        ArchiveInput(older_than_days=30, batch_size=1),
        id=f"ops-archive-{uuid.uuid4().hex[:6]}",
        task_queue=archive_queue,
    )
    assert (again.archived, again.batches, again.held_for_refund) == (0, 0, 1)


async def test_archive_schedule_is_created_once_and_kept_current(
    ops: Stack, sdk_client: tuple[Client, str], archive_queue: str
) -> None:
    client = sdk_client[0]
    settings = ops.settings.model_copy(update={"temporal_task_queue": archive_queue})
    try:
        await ensure_archive_schedule(client, settings)
        handle = await ensure_archive_schedule(client, settings)  # a second worker starting: no error
        described = await handle.describe()
        schedule = described.schedule
        assert described.id == ARCHIVE_SCHEDULE_ID == "paywindow-archive"
        assert schedule.spec.time_zone_name == "Asia/Ho_Chi_Minh"
        [calendar] = schedule.spec.calendars
        assert (tuple(calendar.hour), tuple(calendar.minute), tuple(calendar.second)) == (
            (ScheduleRange(2),),
            (ScheduleRange(0),),
            (ScheduleRange(0),),
        )
        assert not schedule.spec.cron_expressions and not schedule.spec.intervals
        assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert schedule.policy.catchup_window == timedelta(days=1)
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.id, action.task_queue) == (
            "ArchiveWorkflow",
            "paywindow-archive",
            archive_queue,
        )
        [arg] = await client.data_converter.decode(action.args, [ArchiveInput])
        assert arg == ArchiveInput(older_than_days=30, batch_size=1000)
        for at in described.info.next_action_times[:3]:
            local = at.astimezone(HCMC)
            assert (local.hour, local.minute, local.second) == (2, 0, 0)
        assert not schedule.state.paused

        # An operator pauses it; a deploy changes ARCHIVE_AFTER_DAYS: the new value, still paused.
        await handle.pause(note="paused by an operator")
        changed = settings.model_copy(update={"archive_after_days": 45})
        await ensure_archive_schedule(client, changed)
        described = await handle.describe()
        assert described.schedule.state.paused and described.schedule.state.note == "paused by an operator"
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        [arg] = await client.data_converter.decode(action.args, [ArchiveInput])
        assert arg.older_than_days == 45

        # What the schedule starts really runs: trigger it and read the run's result.
        await handle.trigger()
        deadline = time.monotonic() + 20
        while not (described := await handle.describe()).info.recent_actions:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        started = described.info.recent_actions[-1].action
        run = client.get_workflow_handle_for(ArchiveWorkflow.run, started.workflow_id)
        result = await run.result()
        assert isinstance(result, ArchiveResult)
        assert abs(result.cutoff - (datetime.now(UTC) - timedelta(days=45))) < timedelta(minutes=1)
    finally:
        await client.get_schedule_handle(ARCHIVE_SCHEDULE_ID).delete()


# ---- the worker's Temporal SDK metrics ------------------------------------------------------------------


@pytest.fixture(scope="module")
async def sdk_scrape(ops: Stack, sdk_client: tuple[Client, str]) -> str:
    """Run an archive whose first try hits a database blip, so the failure metrics exist too."""
    client, url = sdk_client
    archive = ArchiveActivities(ops.engine)

    @activity.defn(name="archive_ended_orders")
    async def flaky_archive(inp: ArchiveInput) -> ArchiveResult:
        if activity.info().attempt == 1:
            raise ConnectionError("database blip")
        return await archive.archive_ended_orders(inp)

    queue = f"ops-sdk-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[ArchiveWorkflow], activities=[flaky_archive]):
        result = await client.execute_workflow(
            ArchiveWorkflow.run, ArchiveInput(), id=f"ops-sdk-{uuid.uuid4().hex[:6]}", task_queue=queue
        )
        assert isinstance(result, ArchiveResult)
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(url)
    assert r.status_code == 200
    return r.text


async def test_worker_runtime_exports_temporal_sdk_metrics(sdk_scrape: str) -> None:
    scraped = parse_exposition(sdk_scrape)
    for name, kind in {
        "temporal_workflow_task_schedule_to_start_latency": "histogram",
        "temporal_activity_schedule_to_start_latency": "histogram",
        "temporal_activity_execution_latency": "histogram",
        "temporal_activity_execution_failed": "counter",
        "temporal_workflow_completed": "counter",
        "temporal_worker_task_slots_available": "gauge",
    }.items():
        assert scraped.types.get(name) == kind, name
    failed = scraped.series("temporal_activity_execution_failed")
    assert any(
        dict(k).get("activity_type") == "archive_ended_orders" and v >= 1 for k, v in failed.items()
    ), failed
    # Durations are integer milliseconds by default (the dashboard's unit).
    bounds = {
        dict(k)["le"] for k in scraped.series("temporal_workflow_task_schedule_to_start_latency_bucket")
    }
    assert "100" in bounds and "1000" in bounds


async def test_the_worker_process_exports_sdk_metrics_and_ensures_the_schedule(ops: Stack) -> None:
    """`python worker.py` as deployed: SDK metrics on WORKER_METRICS_ADDRESS, the archive schedule
    created at start (aimed at this worker's own task queue here), ArchiveWorkflow registered, and
    a graceful stop on SIGTERM."""
    address, queue = f"127.0.0.1:{free_port()}", f"ops-proc-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": str(ops.settings.database_url),
        "TEMPORAL_ADDRESS": str(ops.settings.temporal_address),
        "TEMPORAL_TASK_QUEUE": queue,
        "WORKER_METRICS_ADDRESS": address,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    log: list[str] = []
    polling = asyncio.Event()

    async def drain() -> None:  # keep the pipe empty, watch for the worker being up
        assert proc.stderr is not None
        async for line in proc.stderr:
            log.append(line.decode(errors="replace"))
            if "worker polling task queue" in log[-1]:
                polling.set()

    reader = asyncio.create_task(drain())
    schedule = ops.client.get_schedule_handle(ARCHIVE_SCHEDULE_ID)
    try:
        await asyncio.wait_for(polling.wait(), 60)
        action = (await schedule.describe()).schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("ArchiveWorkflow", queue)
        await schedule.trigger()
        deadline = time.monotonic() + 20
        while not (described := await schedule.describe()).info.recent_actions:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        run = ops.client.get_workflow_handle_for(
            ArchiveWorkflow.run, described.info.recent_actions[-1].action.workflow_id
        )
        assert isinstance(await run.result(), ArchiveResult)
        async with httpx.AsyncClient(timeout=10) as http:
            scraped = parse_exposition((await http.get(f"http://{address}/metrics")).text)
        completed = scraped.series("temporal_workflow_completed")
        assert any(dict(k).get("workflow_type") == "ArchiveWorkflow" and v >= 1 for k, v in completed.items())
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        await reader
        await schedule.delete()
    output = "".join(log)
    assert "Beginning worker shutdown" in output, output[-3000:]
    # A clean exit; or the Temporal SDK's known abort while Python finalizes, after the graceful
    # shutdown above completed (temporalio/sdk-python#300; worker.py can skip finalization).
    assert proc.returncode == 0 or "PyGILState_Release" in output, (proc.returncode, output[-3000:])


# ---- dashboard and scrape config ------------------------------------------------------------------------


async def test_dashboard_queries_only_metrics_that_exist(afternoon: Afternoon, sdk_scrape: str) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/paywindow.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs and "placeholder" not in json.dumps(dashboard).lower()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exported = set(afternoon.after.types) | set(parse_exposition(sdk_scrape).types)
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"\b((?:paywindow|temporal)_[a-z0-9_]+)", expr)
    }
    assert used - exported == set(), f"dashboard queries unknown metrics: {used - exported}"
    # Every family this work exports has a panel.
    assert {n for n in afternoon.after.types} - used == set()
    # Window histograms are snapshots, never rate()d; replicas answer alike, so never sum()med raw.
    for expr in exprs:
        if "paywindow_time_to_pay_seconds" in expr or "paywindow_expiry_lag_seconds" in expr:
            assert "rate(" not in expr and "increase(" not in expr, expr
        if "paywindow_" in expr:
            assert not re.search(
                r"\bsum\s*(by\s*\([^)]*\))?\s*\(\s*(rate|increase)?\(?\s*paywindow_", expr
            ), expr


async def test_prometheus_scrapes_the_api_and_the_worker() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["paywindow-api"].get("metrics_path", "/metrics") == "/metrics"
    assert jobs["paywindow-api"]["static_configs"][0]["targets"] == ["api:8000"]
    # Every worker replica (compose runs WORKER_REPLICAS of them) is a target of its own.
    [worker] = jobs["paywindow-worker"]["dns_sd_configs"]
    assert (worker["names"], worker["type"], worker["port"]) == (["worker"], "A", 9464)
    assert jobs["temporal"]["static_configs"][0]["targets"] == ["temporal:9091"]
