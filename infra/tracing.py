"""Tracing (OpenTelemetry): one trace per order action, from the HTTP request through Temporal to
the gateways, and the trace id in every log line.

Off unless the environment asks for it, and then nothing is instrumented at all (no provider, no
exporter, no Temporal interceptor, no HTTP wrapper): the creates/s the benchmark measures pay
nothing. On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
spans go to that collector over OTLP/HTTP; `OTEL_TRACES_EXPORTER=console` prints them instead
(`otlp,console` does both, `none` turns tracing off). The SDK reads the rest of its `OTEL_*`
variables itself (sampler, batch sizes, headers, `OTEL_SERVICE_NAME`).

Each process calls `setup_tracing` once (api.app.app_factory, worker.main); the Temporal client
gets its interceptor in infra/temporal.py, the FastAPI app its middleware in api.app, outbound HTTP
its client spans in gateways/http.py, all from the provider kept here (tests install their own
with `use_provider`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import opentelemetry.context
import temporalio.client
import temporalio.worker
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def exporters_from_env(env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters asked for: OTEL_TRACES_EXPORTER when set, else `otlp` when an endpoint is."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    asked = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not asked:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    return [name for name in (part.strip() for part in asked.split(",")) if name and name != "none"]


def setup_tracing(service: str) -> TracerProvider | None:
    """Once per process: a tracer provider with the exporters the environment asks for, or None
    (tracing off). `service`: paywindow-api / paywindow-worker, unless OTEL_SERVICE_NAME says."""
    if _provider is not None:
        return _provider
    exporters: list[SpanExporter] = []
    for name in exporters_from_env():
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            log.warning("OTEL_TRACES_EXPORTER %r is not one of otlp, console, none: ignored", name)
    if not exporters:
        return None
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(named))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # exports off the request path
    trace.set_tracer_provider(provider)  # for any library that asks the global API
    use_provider(provider)
    return provider


def use_provider(provider: TracerProvider | None) -> None:
    """Trace with `provider` from now on (None: stop). Only clients, apps and HTTP clients made
    afterwards are traced; tests install an in-memory exporter's provider this way."""
    global _provider
    _provider = provider


def active_provider() -> TracerProvider | None:
    return _provider


def flush_tracing(timeout_s: float = 5.0) -> None:
    """Export what is still buffered, for at most `timeout_s` (a collector that is away must not
    hold the exit up): the worker leaves through os._exit, which runs no atexit hook."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


# ---- Temporal ----------------------------------------------------------------------------------


def temporal_interceptors() -> list[temporalio.client.Interceptor]:
    """For Client.connect: the client's calls, and the workers built on that client."""
    if _provider is None:
        return []
    return [OrderTracing(_provider.get_tracer(__name__))]


class OrderTracing(TracingInterceptor):
    """The SDK's tracing interceptor (client calls, workflow steps as zero-length spans, activities
    as real ones), with each signal and update handled in the trace of the request that sent it."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span-making extern function
        return MessageTracing


class MessageTracing(TracingWorkflowInboundInterceptor):
    """The SDK parents every signal and update handler on the workflow's start and only links the
    sender: a payment's webhook, a retry, a cancel would all land in the create's trace. Here a
    message that carries a trace continues it (its handler's span, and the activities the handler
    runs: a retry's new link), linked to the workflow's run. The run itself stays in the trace of
    the request that started it, so a verdict the run loop applies from the inbox (the transition
    to paid) and the deadline's close are in the create's trace."""

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        with self._handling(input.headers, f"HandleSignal:{input.signal}"):
            await self.next.handle_signal(input)

    def handle_update_validator(self, input: temporalio.worker.HandleUpdateInput) -> None:
        with self._handling(input.headers, f"ValidateUpdate:{input.update}"):
            self.next.handle_update_validator(input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        with self._handling(input.headers, f"HandleUpdate:{input.update}"):
            return await self.next.handle_update_handler(input)

    @contextmanager
    def _handling(self, headers: Mapping[str, Payload], name: str) -> Iterator[None]:
        """Run the handler in its sender's trace (in the run's when the message carries none, as a
        CLI's signal), its span linked to the run's."""
        header = headers.get(self.header_key)
        sender = self.payload_converter.from_payloads([header])[0] if header else None
        run = self._load_workflow_context_carrier()
        carrier = sender or run
        context = self.text_map_propagator.extract(carrier, Context()) if carrier else Context()
        with _attached(self._set_on_context(context)):
            self._completed_span(
                name, link_context_carrier=run if sender else None, kind=trace.SpanKind.SERVER
            )
            yield


@contextmanager
def _attached(context: Context) -> Iterator[None]:
    token = opentelemetry.context.attach(context)
    try:
        yield
    finally:
        # A handler abandoned by an evicted workflow is finalized in another context, where the
        # token is not valid (and there is nothing to detach).
        if opentelemetry.context.get_current() is context:
            opentelemetry.context.detach(token)


# ---- outbound HTTP and log lines ----------------------------------------------------------------


def trace_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client span per request, and the trace passed on in `traceparent` (the sandbox, a
    receiver of ours, continues it); the client untouched while tracing is off."""
    if _provider is not None:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)
    return client


class TraceIds(logging.Filter):
    """`trace_id` on every record: the current trace's id, or `-` outside one."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        return True


def log_format(process: str) -> str:
    return f"%(asctime)s {process} %(levelname)s %(name)s trace_id=%(trace_id)s: %(message)s"


def configure_logging(process: str) -> None:
    """INFO to stderr, each line with its trace id (a filter on the handler, so records from every
    logger get one)."""
    logging.basicConfig(level=logging.INFO, format=log_format(process))
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIds())
