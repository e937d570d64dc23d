"""Property test: any interleaving of payment results (duplicated, wrong-amount, for any attempt),
retries, cancels, extends and the passing of time does what a small model of the rules predicts,
step by step, and keeps every invariant. Runs on the time-skipping server with the real activities,
so each example is a real order in Postgres.

The model (`Rules`) is the rules as README and docs/ARCHITECTURE.md state them, written apart from
the workflow: a success of the order's total pays a pending order, of another amount sends the
attempt to review; a cancel at the gateway cancels; a failure on the last allowed attempt fails the
order; the same verdict twice is applied once; a retry is allowed while the window is open and
fewer than three retries were made; the window closes at the deadline (links unpaid: never in
flight); an ended order's workflow completes and refuses everything after. Every step's answer
(accepted, or refused with which error) and the state after it are predicted; no error is swallowed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.messages import CancelRequest, ExtendRequest, PaymentResult, RetryRequest
from tests.test_workflow_timeskip import start
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRICE, QTY, STOCK = 30_000, 2, 5
WINDOW_MIN, MAX_RETRIES = 15, 3  # start()'s order: a 15-minute window, three retries
TERMINAL = ("paid", "cancelled", "expired", "failed")

actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("result"),
            st.integers(0, 3),  # which attempt (if it exists)
            st.sampled_from(["success", "failed", "cancelled", "expired", "processing", "system_error"]),
            st.booleans(),  # right amount?
        ),
        st.tuples(st.just("retry"), st.sampled_from(["momo", "vnpay", "payos"])),
        st.tuples(st.just("cancel")),
        st.tuples(st.just("extend"), st.sampled_from([-10, -3, 2, 10])),
        st.tuples(st.just("wait"), st.sampled_from([1, 4, 9, 16])),
    ),
    max_size=8,
)


@dataclass
class Rules:
    """What the order should be after each step, from the stated rules alone."""

    status: str = "pending_payment"
    attempts: list[str] = field(default_factory=lambda: ["pending"])
    clock: float = 0.0  # minutes since the start
    deadline: float = WINDOW_MIN
    seen: set[tuple[int, str, bool]] = field(default_factory=set)
    completed: bool = False  # the workflow has finished: signals and updates find it gone

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def end(self, status: str) -> None:
        self.status = status

    def result(self, i: int, outcome: str, right: bool) -> str:
        """A signed verdict for attempt i: 'ok' (taken, maybe a no-op) or 'gone'."""
        if self.completed:
            return "gone"
        if (i, outcome, right) in self.seen:
            return "ok"  # the same verdict again: applied once
        self.seen.add((i, outcome, right))
        current = self.attempts[i]
        if self.ended or current == "success":
            return "ok"  # never reopened (money is settled as a late payment apart)
        if outcome == "success" and not right:
            self.attempts[i] = "needs_review"  # money that cannot pay is kept for a person
        elif outcome == "success":
            self.attempts[i] = "success"
            self.end("paid")
        elif outcome == "cancelled":
            self.attempts[i] = "cancelled"
            self.end("cancelled")
        elif outcome in ("failed", "system_error", "expired"):
            self.attempts[i] = outcome
            last_chance = i == len(self.attempts) - 1 and len(self.attempts) - 1 >= MAX_RETRIES
            if last_chance and outcome != "expired":
                self.end("failed")
        return "ok"  # processing: nothing final

    def retry(self) -> str:
        if self.completed:
            return "gone"
        if len(self.attempts) - 1 >= MAX_RETRIES:
            return "MAX_ATTEMPTS_REACHED"
        self.attempts.append("pending")
        return "ok"

    def cancel(self) -> str:
        if self.completed:
            return "gone"
        self.end("cancelled")
        return "ok"

    def extend(self, minutes: float) -> str:
        if self.completed:
            return "gone"
        self.deadline = max(self.clock, self.deadline + minutes)
        self._close_if_due()
        return "ok"

    def wait(self, minutes: float) -> str:
        self.clock += minutes
        self._close_if_due()
        return "ok"

    def _close_if_due(self) -> None:
        if not self.ended and self.clock >= self.deadline:
            self.end("expired")  # the sandbox's links are unpaid: nothing in flight, no grace


async def answer(call: Any) -> str:
    """'ok', a refusal's error type, or 'gone' (the workflow has completed). Anything else raises."""
    try:
        await call
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        while cause is not None and not isinstance(cause, ApplicationError):
            cause = cause.cause
        assert isinstance(cause, ApplicationError), err
        return str(cause.type)
    except RPCError as err:
        # A completed workflow: "workflow execution already completed" (dev server), "Completed
        # workflow" or "update <id> not found" (time-skipping server). The model says when to expect it.
        if err.status == RPCStatusCode.NOT_FOUND:
            return "gone"
        raise
    return "ok"


async def settle(handle: Any, rules: Rules, timeout: float = 15) -> None:
    """Wait (bounded) until the workflow shows what the model predicts; once the order has ended,
    until its workflow has completed."""
    give_up = time.monotonic() + timeout
    while True:
        view = await handle.query(OrderWorkflow.session)
        now = (view.order_status, [a.status for a in view.attempts])
        if view.order_status == rules.status and (rules.ended or now[1] == rules.attempts):
            break
        assert time.monotonic() < give_up, (
            f"workflow shows {now}, the rules say {(rules.status, rules.attempts)}"
        )
        await asyncio.sleep(0.05)
    if rules.ended and not rules.completed:
        await asyncio.wait_for(handle.result(), timeout)
        rules.completed = True


async def run_step(ts: Any, handle: Any, rules: Rules, step: tuple) -> None:
    kind = step[0]
    view = await handle.query(OrderWorkflow.session)
    if kind == "result":
        _, i, outcome, right = step
        if i >= len(rules.attempts):
            return  # no such attempt yet: nothing to send
        attempt = view.attempts[i]
        amount = PRICE * QTY if right else 1_000
        result = PaymentResult(
            attempt.gateway, attempt.gateway_order_id, outcome, "x", amount, str(4_100_000_000 + i)
        )
        expected = rules.result(i, outcome, right)
        for _ in range(2):  # every notification may come twice
            assert await answer(handle.signal(OrderWorkflow.payment_result, result)) == expected, step
    elif kind == "retry":
        expected = rules.retry()
        got = await answer(handle.execute_update(OrderWorkflow.retry_payment, RetryRequest(gateway=step[1])))
        assert got == expected, (step, got)
    elif kind == "cancel":
        got = await answer(handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="property")))
        assert got == rules.cancel(), (step, got)
    elif kind == "extend":
        got = await answer(handle.execute_update(OrderWorkflow.extend, ExtendRequest(minutes=step[1])))
        assert got == rules.extend(step[1]), (step, got)
    elif kind == "wait":
        rules.wait(step[1])
        await ts.sleep(timedelta(minutes=step[1]))
    await settle(handle, rules)


# No shrinking: each example is a real order, and a failing one is already short (<= 8 steps).
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(steps=actions)
@example(steps=[("result", 0, "success", True)])
@example(steps=[("retry", "vnpay"), ("result", 1, "success", True), ("result", 0, "success", True)])
@example(steps=[("wait", 16), ("wait", 9), ("result", 0, "success", True)])
@example(steps=[("result", 0, "failed", True), ("retry", "payos"), ("result", 1, "cancelled", True)])
@example(steps=[("result", 0, "success", False), ("extend", -10), ("wait", 9)])
@example(
    steps=[
        ("retry", "momo"),
        ("retry", "vnpay"),
        ("retry", "payos"),
        ("retry", "momo"),
        ("result", 3, "failed", True),
    ]
)
@example(
    steps=[("retry", "momo"), ("retry", "vnpay"), ("result", 2, "failed", True)]
)  # not yet the last chance
@example(steps=[("result", 0, "success", False), ("result", 0, "success", True), ("cancel",)])
@example(steps=[("extend", 2), ("wait", 16), ("result", 0, "success", True)])
async def test_every_step_does_what_the_rules_say(ts, stack, steps):
    handle, oid, vid = await start(ts, stack, stock=STOCK, qty=QTY)
    rules = Rules()
    for step in steps:
        await run_step(ts, handle, rules, step)
    if not rules.ended:
        rules.wait(2 * 60)
        await ts.sleep(timedelta(hours=2))  # past any deadline
        await settle(handle, rules)
    outcome = await handle.result()
    assert outcome.status == rules.status
    async with stack.engine.connect() as conn:
        order = (
            await conn.execute(
                text(
                    'SELECT o.status, s.status AS session FROM "order" o JOIN order_session s '
                    "ON s.order_id = o.id WHERE o.id = :id"
                ),
                {"id": oid},
            )
        ).one()
        attempts = (
            (await conn.execute(text("SELECT status FROM payment WHERE order_id = :id"), {"id": oid}))
            .scalars()
            .all()
        )
    assert order.status == outcome.status  # exactly one terminal state, the same everywhere
    assert order.session == {"paid": "completed", "cancelled": "cancelled"}.get(outcome.status, "expired")
    assert "pending" not in attempts and len(attempts) == len(rules.attempts)
    assert attempts.count("success") == (1 if outcome.status == "paid" else 0)
    sold = QTY if outcome.status == "paid" else 0
    assert await stack.stock(vid) == STOCK - sold  # restored exactly once, or sold
