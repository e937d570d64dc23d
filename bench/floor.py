"""The engine's floor: a workflow with OrderWorkflow's Temporal shape and no-op bodies, run beside
ours in the same bench, on the same dev server, driven by the same load generator.

What it does for one order, step for step what OrderWorkflow does (workflows/order.py):
  API      update-with-start (USE_EXISTING, REJECT_DUPLICATE), CustomerId / Gateway on the start
           request, waits for the `created` update
  create   a local activity (ours: the snapshot, the reservation), then OrderStatus / OrderCode /
           GrandTotal / PaymentDeadline upserted, a local activity (ours: the payment link), `created`
           answered
  window   a timer to the deadline, woken by a signal (ours: a gateway's verdict)
  deadline a local activity (ours: the reconciliation), a local activity (ours: the guarded
           transition), OrderStatus upserted, the workflow completes
What it leaves out is what the floor is for: Postgres, the gateways, validation, JWTs, pricing.
So `ours / floor` is what our own work costs on top of Temporal's.

Processes (bench/run.py starts them with the stack): `python -m bench.floor` is the floor's worker on
its own task queue, `uvicorn bench.floor:app_factory --factory` its API; both take the stack's
settings (TEMPORAL_ADDRESS, ORDER_TYPE_DURATIONS, MAX_CACHED_WORKFLOWS, the data converter), so the
two differ only in the work they do.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import uvloop
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import (
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from devstack.processes import free_port
from devstack.stack import Stack
from domain.search import CUSTOMER_ID, GATEWAY, GRAND_TOTAL, ORDER_CODE, ORDER_STATUS, PAYMENT_DEADLINE
from infra.settings import Settings, get_settings
from infra.temporal import connect

TASK_QUEUE = "paywindow-floor"
WORKFLOW_TYPE = "FloorWorkflow"
STEP_TIMEOUT = timedelta(seconds=10)
STEP_RETRY = RetryPolicy(maximum_attempts=3)


@dataclass
class FloorInput:
    order_id: str
    customer_id: str
    gateway: str
    duration_minutes: float


@dataclass
class FloorCreation:
    order_id: str
    order_code: int
    expires_at: datetime


@activity.defn(name="floor_step")
async def floor_step(n: int) -> int:
    return n


@workflow.defn(name=WORKFLOW_TYPE)
class FloorWorkflow:
    @workflow.init
    def __init__(self, inp: FloorInput) -> None:
        self.deadline = workflow.now() + timedelta(minutes=inp.duration_minutes)
        self.creation: FloorCreation | None = None
        self.inbox: list[str] = []
        self.done = False

    @workflow.run
    async def run(self, inp: FloorInput) -> str:
        code = await self._step(1)
        workflow.upsert_search_attributes(
            [
                ORDER_CODE.value_set(code),
                GRAND_TOTAL.value_set(50_000),
                PAYMENT_DEADLINE.value_set(self.deadline),
            ]
        )
        await self._step(2)
        self.creation = FloorCreation(inp.order_id, code, self.deadline)
        while not self.done:
            try:
                await workflow.wait_condition(
                    lambda: bool(self.inbox), timeout=self.deadline - workflow.now()
                )
                self.inbox.clear()
            except TimeoutError:
                await self._step(3)
                await self._step(4)
                workflow.upsert_search_attributes([ORDER_STATUS.value_set("expired")])
                self.done = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "expired"

    async def _step(self, n: int) -> int:
        return await workflow.execute_local_activity(
            floor_step, n, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )

    @workflow.signal
    def payment_result(self, result: str) -> None:
        self.inbox.append(result)

    @workflow.update
    async def created(self) -> FloorCreation:
        await workflow.wait_condition(lambda: self.creation is not None)
        assert self.creation is not None
        return self.creation


# ---- the floor's API: POST /api/v1/orders answered like ours, for the same load generator ------


def app_factory() -> FastAPI:
    settings = get_settings()
    state: dict[str, Client] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["client"] = await connect(settings)
        yield

    app = FastAPI(title="Paywindow floor", lifespan=lifespan)

    @app.post("/api/v1/orders")
    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        order_id = str(uuid.uuid4())
        inp = FloorInput(
            order_id, "bench-shopper", body["gateway"], settings.window_minutes(body["orderType"])
        )
        start = WithStartWorkflowOperation(
            FloorWorkflow.run,
            inp,
            id=f"floor-{order_id}",
            task_queue=TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(CUSTOMER_ID, inp.customer_id), SearchAttributePair(GATEWAY, inp.gateway)]
            ),
        )
        made = await state["client"].execute_update_with_start_workflow(
            FloorWorkflow.created, start_workflow_operation=start
        )
        data = {
            "orderId": made.order_id,
            "orderCode": made.order_code,
            "attempts": [{"gatewayOrderId": f"{made.order_code}-0"}],
            "session": {"expiresAt": made.expires_at.isoformat()},
        }
        return JSONResponse({"data": data}, status_code=201)

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


# ---- what the bench reads back: when the floor's orders of a storm ended --------------------------


def _due_between(first: datetime, last: datetime, status: str, workflow_type: str = WORKFLOW_TYPE) -> str:
    return (
        f'WorkflowType = "{workflow_type}" AND ExecutionStatus = "{status}" '
        f'AND PaymentDeadline >= "{first.isoformat()}" AND PaymentDeadline <= "{last.isoformat()}"'
    )


async def wait_storm_drained(
    client: Client,
    first: datetime,
    last: datetime,
    cap_s: float,
    on_poll: Any = lambda _: None,
    workflow_type: str = WORKFLOW_TYPE,
) -> tuple[int, list[datetime]]:
    """Wait (up to `cap_s`) for the orders (the floor's, or `workflow_type`'s) due between `first`
    and `last` to complete; then (still running, the completed ones' close times) from the server's
    visibility store, the one clock both sides of the storm ratio are read on."""
    end = time.monotonic() + cap_s
    while True:
        running = (await client.count_workflows(_due_between(first, last, "Running", workflow_type))).count
        on_poll(running)
        if running == 0 or time.monotonic() >= end:
            break
        await asyncio.sleep(0.2)
    query = _due_between(first, last, "Completed", workflow_type)
    closed = [wf.close_time async for wf in client.list_workflows(query)]
    return running, [t for t in closed if t is not None]


async def history_sizes(
    client: Client, first: datetime, last: datetime, n: int = 10
) -> list[tuple[int, int]]:
    """(history events, workflow tasks) of up to `n` of those completed floor orders."""
    out = []
    async for wf in client.list_workflows(_due_between(first, last, "Completed"), limit=n):
        events = (await client.get_workflow_handle(wf.id).fetch_history()).events
        tasks = sum(1 for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
        out.append((len(events), tasks))
    return out


def start_floor(stack: Stack) -> str:
    """The floor's workers and API beside a started stack, with its settings (as many processes as
    ours); returns the API's URL."""
    env, port = stack.child_env(), free_port()
    for i in range(1, stack.n_workers + 1):
        stack.start_process(
            "floor-worker" if i == 1 else f"floor-worker{i}", [sys.executable, "-m", "bench.floor"], env
        )
    stack.start_uvicorn("floor-api", "bench.floor:app_factory", port, env, stack.api_procs)
    return f"http://{stack.api_host}:{port}"


# ---- the floor's worker -----------------------------------------------------------------------------


def floor_worker(client: Client, settings: Settings) -> Worker:
    """Tuned as our worker is (worker.py): same cache, same runner."""
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[FloorWorkflow],
        activities=[floor_step],
        workflow_runner=SandboxedWorkflowRunner()
        if settings.workflow_sandbox
        else UnsandboxedWorkflowRunner(),
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=5),
    )


async def main() -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with floor_worker(await connect(settings), settings):
        await stop.wait()


if __name__ == "__main__":
    uvloop.run(main())  # as worker.py: the floor runs on the same loop as ours
    os._exit(0)  # as worker.py: skip finalization (temporalio/sdk-python#300)
