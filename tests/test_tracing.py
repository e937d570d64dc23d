"""Tracing: one create is one trace (the API's request, the update-with-start, the workflow, its
local activities, the gateway call); a webhook's signal is handled in the webhook's trace; log lines
carry the trace id. On an API + worker + task queue of their own, with an in-memory exporter, so
tracing is on only here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devstack.app import create_dev_app
from domain.messages import PaymentResult
from gateways.http import close_gateway_clients
from gateways.momo import MomoGateway
from infra import tracing
from infra.temporal import connect
from tests.conftest import Stack, free_port, make_settings, serve
from tests.helpers import momo_ipn, wait_for_status
from worker import running_worker
from workflows.order import OrderWorkflow

on_the_session_loop = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def traced(pg_url: str, stack: Any) -> AsyncIterator[tuple[Stack, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Gateway clients are shared per event loop: one an earlier test made is untraced. Closed here,
    # they are made again, traced (and again untraced after), whatever ran before this module.
    await close_gateway_clients()
    tracing.use_provider(provider)  # before the app and the client are made: both pick it up
    try:
        port = free_port()
        settings = make_settings(
            pg_url,
            port,
            temporal_address=stack.settings.temporal_address,
            temporal_task_queue="orders-traced",
            rate_limit_per_minute=0,
        )
        server, task = await serve(create_dev_app(settings), port)
        client = await connect(settings)
        async with running_worker(settings, client=client):
            s = Stack(settings, client, stack.engine)
            yield s, exporter
            await s.http.aclose()
        server.should_exit = True
        await task
    finally:
        tracing.use_provider(None)
        await close_gateway_clients()


async def spans_until(
    exporter: InMemorySpanExporter, done: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    """A server span ends after its response has left: wait for the ones a test needs."""
    deadline = time.monotonic() + 10
    while True:
        spans = list(exporter.get_finished_spans())
        if done(spans) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.05)


def named(spans: list[ReadableSpan], name: str, workflow_id: str | None = None) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.name == name
        and (workflow_id is None or (s.attributes or {}).get("temporalWorkflowID") == workflow_id)
    ]
    assert len(found) == 1, (name, workflow_id, sorted(s.name for s in spans))
    return found[0]


async def placed(s: Stack, customer: str, price: int) -> tuple[dict[str, str], dict[str, Any], str]:
    """A new order's (headers, body, workflow id)."""
    product = await s.product(stock=3, price=price)
    headers = s.auth(customer)
    order = (await s.order(headers, product["variants"][0]["id"])).json()["data"]
    return headers, order, f"order-{order['orderId']}"


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def server_span(spans: list[ReadableSpan], method: str, route: str) -> ReadableSpan:
    found = [
        s for s in spans if s.kind is SpanKind.SERVER and s.name == f"{method} {route}" and s.parent is None
    ]
    assert found, (method, route, sorted(s.name for s in spans))
    return found[-1]


@on_the_session_loop
async def test_one_create_is_one_trace(traced):
    s, exporter = traced
    product = await s.product(stock=3, price=40_000)
    exporter.clear()
    r = await s.order(s.auth("traced"), product["variants"][0]["id"])
    assert r.status_code == 201, r.text
    wid = f"order-{r.json()['data']['orderId']}"
    spans = await spans_until(exporter, lambda got: any(x.name == "POST /api/v1/orders" for x in got))

    request = server_span(spans, "POST", "/api/v1/orders")
    start = named(spans, "StartUpdateWithStartWorkflow:OrderWorkflow")
    run = named(spans, "RunWorkflow:OrderWorkflow", wid)
    created = named(spans, "HandleUpdate:created", wid)
    steps = {
        step: (named(spans, f"StartActivity:{step}", wid), named(spans, f"RunActivity:{step}", wid))
        for step in ("create_order", "create_payment_link")
    }
    link = steps["create_payment_link"][1]
    gateway = [x for x in spans if x.kind is SpanKind.CLIENT and parent_of(x) == link.context.span_id]
    assert len(gateway) == 1, sorted(x.name for x in spans)
    assert str((gateway[0].attributes or {}).get("http.url", "")).endswith(
        "/sandbox/momo/v2/gateway/api/create"
    )

    everything = [request, start, run, created, *(x for pair in steps.values() for x in pair), gateway[0]]
    assert {x.context.trace_id for x in everything} == {request.context.trace_id}
    # Who is whose child: the request holds the update-with-start, which holds the workflow's steps.
    assert parent_of(start) == request.context.span_id
    for child in (run, created, steps["create_order"][0], steps["create_payment_link"][0]):
        assert parent_of(child) == start.context.span_id, child.name
    for scheduled, ran in steps.values():
        assert parent_of(ran) == scheduled.context.span_id, ran.name
        assert ran.end_time - ran.start_time > 0  # activities are real spans; workflow steps are instants
    # The sandbox behind the gateway call continued the trace (traceparent went out with it).
    assert any(x.kind is SpanKind.SERVER and parent_of(x) == gateway[0].context.span_id for x in spans)


@on_the_session_loop
async def test_a_webhook_signal_is_handled_in_the_webhooks_trace(traced, stack):
    s, exporter = traced
    headers, order, wid = await placed(s, "traced-payer", 60_000)
    spans = await spans_until(exporter, lambda got: any(x.name == "POST /api/v1/orders" for x in got))
    create_trace = named(spans, "RunWorkflow:OrderWorkflow", wid).context.trace_id
    attempt = order["attempts"][0]

    # A signal that carries no trace (the CLI's, a client without tracing) is handled in the run's.
    exporter.clear()
    pending = PaymentResult(
        gateway="momo",
        gateway_order_id=attempt["gatewayOrderId"],
        outcome="pending",
        result_code="1000",
        amount=60_000,
    )
    await stack.client.get_workflow_handle(wid).signal(OrderWorkflow.payment_result, pending)
    spans = await spans_until(exporter, lambda got: any(x.name == "HandleSignal:payment_result" for x in got))
    untraced = named(spans, "HandleSignal:payment_result", wid)
    assert untraced.context.trace_id == create_trace and not untraced.links
    exporter.clear()

    ipn = momo_ipn(MomoGateway(s.settings), attempt["gatewayOrderId"], attempt["requestId"], 60_000, 0)
    assert (await s.http.post("/webhooks/momo", json=ipn)).status_code == 204
    await wait_for_status(s, order["orderId"], headers, "paid")
    spans = await spans_until(
        exporter,
        lambda got: (
            any(x.name == "POST /api/v1/webhooks/momo" for x in got)
            and any(x.name == "HandleSignal:payment_result" for x in got)
        ),
    )

    webhook = server_span(spans, "POST", "/api/v1/webhooks/momo")
    signal = named(spans, "SignalWorkflow:payment_result")
    handled = named(spans, "HandleSignal:payment_result", wid)
    assert signal.context.trace_id == handled.context.trace_id == webhook.context.trace_id != create_trace
    assert parent_of(handled) == signal.context.span_id
    # ... and linked to the order's run, which applies the verdict in the create's trace.
    assert [link.context.trace_id for link in handled.links] == [create_trace]
    assert named(spans, "RunActivity:transition_order", wid).context.trace_id == create_trace


@on_the_session_loop
async def test_a_retry_makes_its_link_in_its_own_trace(traced):
    s, exporter = traced
    headers, order, wid = await placed(s, "traced-retrier", 70_000)
    exporter.clear()
    r = await s.http.post(
        f"/orders/{order['orderId']}/retry-payment", json={"gateway": "payos"}, headers=headers
    )
    assert r.status_code == 200, r.text
    spans = await spans_until(exporter, lambda got: any(x.name.endswith("/retry-payment") for x in got))

    request = server_span(spans, "POST", "/api/v1/orders/{ref}/retry-payment")
    update = named(spans, "StartWorkflowUpdate:retry_payment")
    handled = named(spans, "HandleUpdate:retry_payment", wid)
    ran = named(spans, "RunActivity:create_payment_link", wid)
    calls = [x for x in spans if x.kind is SpanKind.CLIENT and parent_of(x) == ran.context.span_id]
    assert {x.context.trace_id for x in (update, handled, ran, *calls)} == {request.context.trace_id}
    assert parent_of(handled) == update.context.span_id and len(calls) == 1


@on_the_session_loop
async def test_a_stream_token_stays_out_of_the_spans(traced):
    s, exporter = traced
    exporter.clear()
    r = await s.http.get("/orders/nope/events", params={"token": "secret-stream-token", "x": "1"})
    assert r.status_code == 401
    spans = await spans_until(exporter, lambda got: any(x.kind is SpanKind.SERVER for x in got))
    request = server_span(spans, "GET", "/api/v1/orders/{ref}/events")
    attributes = " ".join(str(v) for v in (request.attributes or {}).values())
    assert "token=[redacted]" in attributes and "secret-stream-token" not in attributes, attributes


@on_the_session_loop
async def test_a_client_secret_stays_out_of_the_spans(traced):
    s, exporter = traced
    exporter.clear()
    r = await s.http.get(
        "/orders/nope/events", params={"clientSecret": "pwcs_secret-client-secret", "x": "1"}
    )
    assert r.status_code == 401
    spans = await spans_until(exporter, lambda got: any(x.kind is SpanKind.SERVER for x in got))
    request = server_span(spans, "GET", "/api/v1/orders/{ref}/events")
    attributes = " ".join(str(v) for v in (request.attributes or {}).values())
    assert "clientSecret=[redacted]" in attributes and "secret-client-secret" not in attributes, attributes


def test_log_lines_carry_the_trace_id() -> None:
    record = logging.LogRecord("api", logging.INFO, __file__, 1, "hello", None, None)
    handler = logging.StreamHandler()
    handler.addFilter(tracing.TraceIds())
    handler.setFormatter(logging.Formatter(tracing.log_format("api")))
    assert handler.filter(record)
    assert handler.format(record).endswith("api INFO api trace_id=-: hello")

    with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
        handler.filter(record)
        expected = format(span.get_span_context().trace_id, "032x")
    assert handler.format(record).endswith(f"api INFO api trace_id={expected}: hello")
    assert len(expected) == 32 and expected != "0" * 32


def test_tracing_is_off_unless_the_environment_asks() -> None:
    assert tracing.exporters_from_env({}) == []
    assert tracing.exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert (
        tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == []
    )
    assert tracing.exporters_from_env({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}) == []
