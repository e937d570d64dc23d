"""The Temporal worker: wires OrderWorkflow to its activities and runs until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.archive import ArchiveActivities
from activities.event_relay import EventRelay
from activities.notify import NotifyActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from gateways.http import close_gateway_clients
from gateways.registry import build_gateways
from infra.db import make_engine
from infra.schedules import ensure_archive_schedule
from infra.settings import Settings, get_settings
from infra.temporal import connect
from infra.tracing import configure_logging, flush_tracing, setup_tracing
from workflows.archive import ArchiveWorkflow
from workflows.late_payment import LatePaymentWorkflow
from workflows.order import OrderWorkflow
from workflows.refund import RefundWorkflow


@asynccontextmanager
async def running_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """Start a worker (tests pass their own client) and, when ORDER_EVENTS_URLS is set, the
    order-event relay beside it; stops both and the DB pool on exit."""
    client = client or await connect(settings)
    engine = make_engine(settings, pre_ping=False)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[OrderWorkflow, LatePaymentWorkflow, RefundWorkflow, ArchiveWorkflow],
        activities=all_activities(engine, settings, client),
        workflow_runner=SandboxedWorkflowRunner()
        if settings.workflow_sandbox
        else UnsandboxedWorkflowRunner(),
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    relay = None
    if settings.event_endpoints:
        relay = asyncio.create_task(EventRelay(engine, settings).run(), name="event-relay")
    try:
        async with worker:
            yield worker
    finally:
        if relay is not None:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
        await close_gateway_clients()
        await engine.dispose()


def all_activities(engine: AsyncEngine, settings: Settings, client: Client) -> list[Callable[..., Any]]:
    orders = OrderActivities(engine)
    payments = PaymentActivities(engine, build_gateways(settings), settings, client)
    notify = NotifyActivities(engine, settings)
    return [
        orders.create_order,
        orders.transition_order,
        orders.set_deadline,
        notify.send_reminder,
        notify.deliver_order_events,
        payments.create_payment_link,
        payments.record_attempt,
        payments.reconcile,
        payments.find_attempt,
        payments.flag_for_review,
        payments.confirm_attempts,
        payments.cancel_open_links,
        payments.request_late_settlement,
        payments.settle_late_payment,
        payments.refund_late_payment,
        payments.refund_payment,
        ArchiveActivities(engine).archive_ended_orders,
    ]


def sdk_runtime(settings: Settings) -> Runtime | None:
    """Temporal SDK metrics for Prometheus on WORKER_METRICS_ADDRESS; empty = off."""
    if not settings.worker_metrics_address:
        return None
    metrics = PrometheusConfig(bind_address=settings.worker_metrics_address)
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=metrics))
    except ValueError:  # address taken or malformed: serve orders without metrics rather than not at all
        logging.getLogger("worker").exception(
            "SDK metrics off: cannot serve them on %r", settings.worker_metrics_address
        )
        return None


async def main() -> None:
    configure_logging("worker")
    setup_tracing("paywindow-worker")  # before connect: the client carries the tracing interceptor
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = get_settings()
    client = await connect(settings, runtime=sdk_runtime(settings))
    try:
        await ensure_archive_schedule(
            client, settings
        )  # the daily clean-up is a Temporal Schedule, not a cron
    except Exception:  # orders matter more than the nightly archive: log it, keep polling
        logging.getLogger("worker").exception("could not create or update the paywindow-archive schedule")
    async with running_worker(settings, client):
        logging.getLogger("worker").info("worker polling task queue %r", get_settings().temporal_task_queue)
        await stop.wait()
        # Local activities retry while Postgres is away and would hold the shutdown open for ever.
        # Leaving mid-task is safe: the server hands the task to another worker after its timeout.
        threading.Timer(STOP_BOUND_S, _leave_now).start()


STOP_BOUND_S = 20.0


def _leave_now() -> None:
    logging.getLogger("worker").warning("still stopping after %.0f s: exiting now", STOP_BOUND_S)
    flush_tracing(timeout_s=2)
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    uvloop.run(main())  # libuv's loop: asyncio's selector and self-pipe were 29 % of a create's samples
    # Everything is closed by now. Skip interpreter finalization: the SDK's Rust threads can touch the
    # GIL while Python tears down and abort an exit that was clean (temporalio/sdk-python#300).
    flush_tracing()
    logging.shutdown()
    os._exit(0)
