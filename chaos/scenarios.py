"""The eighteen scenarios. Each gets its own customer and its own product (so the checks can isolate it
by data), starts shoppers arriving at a steady rate, pulls its lever while they shop, waits until
every window + grace has passed (and every order event has reached the receiver), then runs the
invariant check (chaos/invariants.py). The stack runs as production does: reminders by webhook and
e-mail, order events to a receiver (chaos/receiver_app.py).

  worker_sigkill        the worker SIGKILLed again and again while windows close, restarted each time
  temporal_sigkill      the Temporal dev server SIGKILLed, restarted on the same --db-filename
  postgres_outage       `pg_ctl stop -m immediate`, down for a while, started on the same data dir
  api_sigkill           the API SIGKILLed while a burst of creates is in flight, restarted; retries
  notifications         duplicated, reordered, lost and delayed (past the deadline) notifications;
                        payments after the close (late -> refund)
  graceful_restart      SIGINT to every process at once (Ctrl-C), everything started again on the same data
  two_workers           a second worker on the task queue, SIGKILLed under load
  events_down           the order-event receiver answers 503 for 60 s, then is back
  reminders_failing     the reminder webhook answers 500 throughout
  gateway_hang          MoMo's status query gives no answer for 60 s (windows close meanwhile)
  gateway_garbage       PayOS's merchant API answers garbage (HTML, cut JSON, 500) for a while
  replay_flood          every signed IPN and browser return replayed many times, forged PayOS returns
The gateway-fault family (the sandbox's switches, /sandbox/faults, on top of its always-on
strictness: each gateway takes each id once, answering a reused one 41 / 94 / 231):
  lost_create           create answers dropped after the link was made; the resend meets a duplicate id
  lost_refund           MoMo refund answers dropped after the money went back (late payments)
  slow_answers          creates, queries and refunds answered after the client's timeout (work done)
  query_99              status queries answering 99 / an error code instead of a verdict
  payos_transfers       PayOS links paid in two parts, over-paid, and topped up after the deadline
  desk                  operators refund / mark refunded while orders are open (409 ORDER_STILL_OPEN),
                        then every listed payment once the orders ended, then again (refused)

Money is judged at the end of each scenario by walking the sandbox's own ledger (GET
/sandbox/ledger, chaos/ledger.py), and once more over the whole record at the end of the run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from chaos.desk import Desk
from chaos.invariants import Report, check_all, gather_facts, gather_ledger
from chaos.ledger import LedgerReport
from chaos.load import TRANSFER_KINDS, Arrivals, OrderRecord, Plan, Shoppers
from chaos.stack import ChaosStack

WINDOW = "chaos"  # ORDER_TYPE_DURATIONS chaos=0.1: 6-second windows
LONG_WINDOW = "chaoslong"  # 12 s: time to fail, retry and pay again
LONG_WINDOW_S = 12
GRACE_MINUTES = 0.05  # PAYMENT_IN_FLIGHT_GRACE_MINUTES: MoMo's unpaid links hold the window 3 s more
STACK_ENV = {
    "ORDER_TYPE_DURATIONS": f"normal=15,{WINDOW}=0.1,{LONG_WINDOW}=0.2",
    "PAYMENT_IN_FLIGHT_GRACE_MINUTES": str(GRACE_MINUTES),
    "ORDER_SESSION_REMINDER_MINUTES": "0.03",  # 1.8 s before each window closes, by webhook and e-mail
}
EVENTS_CAP_S = 60  # ORDER_EVENTS_RETRY_CAP_SECONDS (production's): the backlog follows a recovery within it
SCARCE_STOCK = 8  # variant 0 of each scenario: shoppers race for it (some creates get OUT_OF_STOCK)
AMPLE_STOCK = 100_000


@dataclass(frozen=True)
class Mode:
    name: str
    rate: float  # shoppers arriving per second
    load_s: float  # how long they arrive, per scenario
    worker_kill_every_s: tuple[float, float]
    temporal_kills: int
    temporal_down_s: float
    pg_outage_s: float
    api_bursts: int
    burst_size: int
    stack_down_s: float
    gated_late_payers: int  # temporal_sigkill: shoppers who pay after the close while Temporal is down
    # "stuck" = still running this long after deadline + grace: two lost tries of the longest activity
    # (start-to-close 35 s, e.g. after a worker SIGKILL) + a workflow-task timeout (10 s) + slack.
    bound_s: float
    shopper_patience_s: float  # a create is retried this long with the same Idempotency-Key
    receiver_down_s: float  # events_down
    gateway_fault_s: float  # gateway_hang, gateway_garbage
    replays: int  # replay_flood: copies of each signed IPN and browser return
    fault_rate: float = 0.4  # gateway-fault family: the share of matching calls a rule hits


MODES = {
    "full": Mode(
        "full",
        rate=6.0,
        load_s=40,
        worker_kill_every_s=(5, 8),
        temporal_kills=2,
        temporal_down_s=6,
        pg_outage_s=30,
        api_bursts=3,
        burst_size=60,
        stack_down_s=6,
        gated_late_payers=8,
        bound_s=90,
        shopper_patience_s=120,
        receiver_down_s=60,
        gateway_fault_s=60,
        replays=20,
    ),
    "quick": Mode(
        "quick",
        rate=5.0,
        load_s=8,
        worker_kill_every_s=(4, 6),
        temporal_kills=1,
        temporal_down_s=4,
        pg_outage_s=8,
        api_bursts=1,
        burst_size=25,
        stack_down_s=3,
        gated_late_payers=4,
        bound_s=90,
        shopper_patience_s=90,
        receiver_down_s=20,
        gateway_fault_s=20,
        replays=8,
    ),
}


# ---- what shoppers do ---------------------------------------------------------------------------------

STANDARD_MIX = {
    "pay": 34,
    "fail_retry_pay": 9,
    "fail_all": 4,
    "decline": 10,
    "cancel": 10,
    "expire": 23,
    "late_pay": 10,
}
NOTIFY_MIX = {"pay": 45, "late_pay": 22, "decline": 10, "fail_retry_pay": 8, "cancel": 5, "expire": 10}


def standard_knobs(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.25:
        return {"duplicate": rng.randint(1, 2)}
    if roll < 0.32:
        return {"drop": True}  # lost: only reconciliation at the deadline can find the money
    return {}


def notify_knobs(rng: random.Random, kind: str) -> dict[str, Any]:
    knobs: dict[str, Any] = {"duplicate": rng.randint(0, 5), "reorder": rng.random() < 0.5}
    roll = rng.random()
    if kind == "pay" and roll < 0.45:
        knobs["delay_ms"] = rng.randint(7_000, 15_000)  # arrives after the 6-s window (+ 3-s grace) closed
    elif kind == "pay" and roll < 0.55:
        knobs["drop"] = True
    elif kind == "late_pay":
        knobs["delay_ms"] = rng.choice([0, 0, rng.randint(500, 4_000)])
    return knobs


def make_plan(rng: random.Random, kind: str, variants: list[str], notify: bool = False) -> Plan:
    lines = _lines(rng, variants)
    if kind in ("fail_retry_pay", "fail_all"):
        first = rng.choice(["momo", "vnpay"])  # PayOS sends no webhook for a failure
        retry = rng.choice([g for g in ("momo", "vnpay", "payos") if g != first])
        knobs = notify_knobs(rng, "retry") if notify else standard_knobs(rng)
        knobs.pop("delay_ms", None)
        return Plan(kind, first, LONG_WINDOW, lines, rng.uniform(0.1, 1.0), knobs, retry_gateway=retry)
    if kind in TRANSFER_KINDS:  # PayOS links paid by bank transfers (a gap lets the desk look in between)
        return Plan(kind, "payos", WINDOW, lines, rng.uniform(0.1, 0.8), {"gap_s": rng.uniform(0.3, 2.0)})
    if kind == "late_pay":
        knobs = notify_knobs(rng, kind) if notify else {"duplicate": rng.randint(0, 2)}
        return Plan(kind, "momo", WINDOW, lines, 0, knobs)  # MoMo links outlive our window
    if kind == "decline":
        gateway = rng.choice(["momo", "vnpay", "payos"])
        knobs = {"duplicate": rng.randint(0, 3), "reorder": rng.random() < 0.5} if notify else {}
        return Plan(kind, gateway, WINDOW, lines, rng.uniform(0.1, 1.5), knobs)
    gateway = rng.choice(["momo", "vnpay", "payos"])
    if kind == "pay":
        knobs = notify_knobs(rng, kind) if notify else standard_knobs(rng)
        return Plan(
            kind, gateway, WINDOW, lines, rng.uniform(0.1, 1.5), knobs, browser_return=rng.random() < 0.2
        )
    return Plan(kind, gateway, WINDOW, lines, rng.uniform(0.1, 1.5))


def _lines(rng: random.Random, variants: list[str]) -> list[tuple[str, int]]:
    if rng.random() < 0.12:
        return [(variants[0], 1)]  # the scarce one
    picked = rng.sample(variants[1:], rng.choice([1, 1, 2]))
    return [(v, rng.randint(1, 3)) for v in picked]


# ---- the context scenarios run in ------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    name: str
    title: str
    passed: bool
    orders: int
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)


class Context:
    def __init__(
        self, stack: ChaosStack, mode: Mode, run_id: str, seed: int, log: Callable[[str], None]
    ) -> None:
        self.stack = stack
        self.mode = mode
        self.run_id = run_id
        self.rng = random.Random(seed)
        self.log = log
        self.shoppers = Shoppers(
            stack.api_url, stack.jwt_secret, mode.shopper_patience_s, GRACE_MINUTES * 60, stack.gateway_url
        )
        self.gateways = httpx.AsyncClient(base_url=stack.gateway_url, timeout=30)
        self.receiver = httpx.AsyncClient(base_url=stack.receiver_url, timeout=30)
        # What the current scenario broke, and when (epoch s): outages of what an order's end needs
        # move its on-time bound; gateway faults let a window close without that gateway's verdict.
        self.outages: list[tuple[float, float]] = []
        self.faults: list[tuple[str, float, float]] = []
        self.fault_plan: dict[str, Any] | None = None
        self.desk = Desk(self.shoppers.api, self.shoppers.auth("chaos-operator", "admin"))
        self.seed = seed

    async def close(self) -> None:
        await self.shoppers.close()
        await self.gateways.aclose()
        await self.receiver.aclose()

    async def set_receiver(self, **modes: str) -> None:
        r = await self.receiver.post("/chaos/receiver", json=modes)
        r.raise_for_status()

    async def gateway_fault(
        self, gateway: str, mode: str, seconds: float, paths: list[str] | None = None
    ) -> None:
        r = await self.gateways.post(
            "/chaos/faults", json={"gateway": gateway, "mode": mode, "seconds": seconds, "paths": paths or []}
        )
        r.raise_for_status()
        self.faults.append((gateway, time.time(), time.time() + seconds))

    async def sandbox_faults(self, rules: list[dict[str, Any]], blind: tuple[str, ...] = ()) -> None:
        """Replace the sandbox's fault plan (/sandbox/faults); `blind`: gateways whose verdict may
        not be had around a deadline while the plan holds (their windows may close unanswered)."""
        r = await self.gateways.post("/sandbox/faults", json={"rules": rules})
        r.raise_for_status()
        self.fault_plan = {"rules": rules, "since": time.time(), "blind": blind}

    async def clear_sandbox_faults(self) -> dict[str, Any]:
        """End the plan; what it was and what was left of it."""
        r = await self.gateways.get("/sandbox/faults")
        shown = r.json() if r.status_code == 200 else {"answer": r.status_code}
        (await self.gateways.delete("/sandbox/faults")).raise_for_status()
        plan = self.fault_plan or {}
        for g in plan.get("blind", ()):
            self.faults.append((g, plan["since"], time.time()))
        self.fault_plan = None
        return shown

    async def temporal(self) -> Client:
        return await Client.connect(self.stack.temporal_address, data_converter=pydantic_data_converter)

    async def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # ---- stack health between scenarios -----------------------------------------------------------------

    async def heal(self) -> list[str]:
        """Whatever is down that should be up is started again; returns what had died unasked."""
        died = []
        if self.stack.postmaster_pid() is None:
            died.append("postgres")
            await self.run_in_thread(self.stack.start_postgres)
        for name, start in (
            ("temporal", self.stack.start_temporal),
            ("gateways", self.stack.start_gateways),
            ("receiver", self.stack.start_receiver),
            ("w1", lambda: self.stack.start_worker("w1")),
            ("api", self.stack.start_api),
        ):
            if not self.stack.alive(name):
                died.append(name)
                self.stack.procs.pop(name, None)
                await self.run_in_thread(start)
        await self.run_in_thread(self.stack.wait_ready)
        return died

    # ---- one scenario --------------------------------------------------------------------------------------

    async def run(self, scenario: Scenario) -> ScenarioResult:
        t0 = time.monotonic()
        started = datetime.now(UTC) - timedelta(seconds=1)
        self.outages, self.faults = [], []
        self.desk.actions = []
        customer = f"chaos-{self.run_id}-{scenario.name}"
        stocks = [SCARCE_STOCK] + [AMPLE_STOCK] * 3
        variants = await self.shoppers.create_product(f"Chaos {scenario.name}", stocks)
        initial = dict(zip(variants, stocks, strict=True))
        notify = scenario.name == "notifications"
        kinds, weights = zip(*scenario.mix.items(), strict=True)

        def make_record(burst: bool = False, kind: str | None = None) -> OrderRecord:
            kind = kind or self.rng.choices(kinds, weights)[0]
            return self.shoppers.record(
                scenario.name, customer, make_plan(self.rng, kind, variants, notify), burst
            )

        arrivals = Arrivals(self.shoppers, make_record, self.mode.rate, self.mode.load_s)
        arrivals.start()
        details: dict[str, Any] = {"title": scenario.title}
        try:
            details["faults"] = await scenario.inject(self, arrivals, make_record)
        finally:
            cancelled = await arrivals.finish(timeout_s=self.mode.shopper_patience_s + 120)
            if self.fault_plan:
                details["fault_plan_left"] = await self.clear_sandbox_faults()
        details["shoppers_cut_off"] = cancelled
        details["died_unasked"] = await self.heal()
        drained = await self.drain(customer)
        details["drain"] = drained
        if scenario.after is not None:
            details["after"] = await scenario.after(self, arrivals.records)
            details["drain_after"] = await self.drain(customer)
        report = await self.check(arrivals.records, customer, variants, initial, started)
        for name, items in self.desk.violations().items():
            for item in items:
                report.add(name, **item)
        if self.desk.actions:
            report.figures["desk"] = self.desk.figures()
        details.update(figures=report.figures, findings=report.findings, violations=_summarise(report))
        details["ipn"] = (await self.gateways.get("/chaos/ipn")).json()
        return ScenarioResult(
            name=scenario.name,
            title=scenario.title,
            passed=report.passed and not details["died_unasked"],
            orders=report.figures.get("orders", 0),
            duration_s=round(time.monotonic() - t0, 1),
            details=details,
        )

    async def drain(self, customer: str) -> dict[str, Any]:
        """Wait until no order or late-payment workflow of `customer` runs and the gateways have
        nothing left to redeliver (an order still pending then has no workflow left to end it), or
        until the latest deadline + grace + bound."""
        t0 = time.monotonic()
        conn = await asyncpg.connect(self.stack.database_url)
        try:
            latest = await conn.fetchval(
                "SELECT extract(epoch FROM max(s.expires_at)) "
                'FROM "order" o JOIN order_session s ON s.order_id = o.id '
                "WHERE o.customer_id = $1",
                customer,
            )
            cap = float(latest or time.time()) + GRACE_MINUTES * 60 + self.mode.bound_s
            client = await self.temporal()
            state: dict[str, Any] = {}
            while True:
                pending = await conn.fetchval(
                    "SELECT count(*) FROM \"order\" WHERE customer_id = $1 AND status = 'pending_payment'",
                    customer,
                )
                running = await client.count_workflows(
                    f'ExecutionStatus="Running" AND WorkflowType="OrderWorkflow" AND CustomerId="{customer}"'
                )
                late = await client.count_workflows(
                    'ExecutionStatus="Running" AND WorkflowType="LatePaymentWorkflow"'
                )
                queued = (await self.gateways.get("/chaos/ipn")).json()["queued"]
                events = await conn.fetchval(
                    'SELECT count(*) FROM order_event e JOIN "order" o ON o.id = e.order_id '
                    "WHERE o.customer_id = $1 AND e.delivered_at IS NULL",
                    customer,
                )
                state = {
                    "pending": pending,
                    "running": running.count,
                    "late_running": late.count,
                    "ipn_queued": queued,
                    "events_undelivered": events,
                }
                settled = not (state["running"] or state["late_running"] or state["ipn_queued"])
                if settled and not events and time.time() > float(latest or 0) + GRACE_MINUTES * 60:
                    break  # still-pending orders without a running workflow will never move: stuck
                # The relay's backoff is capped: once the receiver is back, the backlog follows within it.
                if time.time() > cap + (EVENTS_CAP_S + 15 if events else 0):
                    break
                await asyncio.sleep(2)
        finally:
            await conn.close()
        return {"waited_s": round(time.monotonic() - t0, 1), "left": state}

    async def check(
        self,
        records: list[OrderRecord],
        customer: str,
        variants: list[str],
        initial: dict[str, int],
        started: datetime,
    ) -> Report:
        ledger = (await self.gateways.get("/chaos/ledger")).json()
        received = set((await self.receiver.get("/chaos/receiver")).json()["event_ids"])
        client = await self.temporal()
        facts = await gather_facts(
            self.stack.database_url, client, records, customer, variants, ledger, received
        )
        money = await self.walk_ledger([customer], started)
        return check_all(
            facts, records, initial, GRACE_MINUTES * 60, self.mode.bound_s, self.outages, self.faults, money
        )

    async def walk_ledger(self, customers: list[str] | None, started: datetime | None = None) -> LedgerReport:
        """The money invariants over the sandbox's own record (these customers' part of it, or all)."""
        r = await self.gateways.get("/sandbox/ledger")
        r.raise_for_status()  # no ledger, no money check: the scenario breaks, loudly
        desk = await self.desk.listing()
        return await gather_ledger(self.stack.database_url, r.json(), desk, customers, started)


def _summarise(report: Report, keep: int = 8) -> dict[str, Any]:
    return {
        name: {"count": len(items), "examples": items[:keep]}
        for name, items in report.violations.items()
        if items
    }


# ---- the scenarios --------------------------------------------------------------------------------------

Inject = Callable[[Context, Arrivals, Callable[..., OrderRecord]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    inject: Inject
    mix: dict[str, int] = field(default_factory=lambda: dict(STANDARD_MIX))
    after: Callable[[Context, list[OrderRecord]], Awaitable[dict[str, Any]]] | None = None  # once drained
    quick: bool = False  # part of `make chaos-quick`


async def worker_sigkill(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    kills, restart_s = 0, []
    while True:
        await asyncio.sleep(ctx.rng.uniform(*ctx.mode.worker_kill_every_s))
        t = time.monotonic()
        await ctx.run_in_thread(ctx.stack.kill, "w1", signal.SIGKILL)
        await ctx.run_in_thread(ctx.stack.start_worker, "w1")
        restart_s.append(round(time.monotonic() - t, 2))
        kills += 1
        if not arrivals.arriving:
            break  # one last kill as the final windows close
    return {"worker_sigkills": kills}


async def temporal_sigkill(
    ctx: Context, arrivals: Arrivals, make_record: Callable[..., OrderRecord]
) -> dict[str, Any]:
    # Shoppers who pay after their window closed, at the moment Temporal is down: their orders are
    # made now, expire before the first kill, and the shoppers pay once it happened.
    gate = asyncio.Event()
    gated = [make_record(kind="late_pay") for _ in range(ctx.mode.gated_late_payers)]
    for rec in gated:
        rec.plan.gate = gate
        arrivals.spawn(rec)
    t0 = time.monotonic()
    kills, outages, back_s = 0, [], []
    for i in range(ctx.mode.temporal_kills):
        at = 12.0 if i == 0 else max(12.0 + ctx.mode.temporal_down_s + 6, ctx.mode.load_s * 0.8)
        await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
        await ctx.run_in_thread(ctx.stack.kill, "temporal", signal.SIGKILL)
        killed_at = time.time()
        kills += 1
        gate.set()
        await asyncio.sleep(ctx.mode.temporal_down_s)
        t = time.monotonic()
        await ctx.run_in_thread(ctx.stack.start_temporal)
        back_s.append(round(time.monotonic() - t, 2))
        outages.append((killed_at, time.time()))
        ctx.outages.append((killed_at, time.time() + 10))  # + a workflow-task timeout to pick up again
    during = sum(
        1
        for rec in gated
        for c in rec.clicks
        if c.action == "pay" and c.status == 200 and any(a <= c.t0 <= b for a, b in outages)
    )
    return {
        "temporal_sigkills": kills,
        "down_s_each": ctx.mode.temporal_down_s,
        "restart_s": back_s,
        "late_payers_gated": len(gated),
        "late_payments_while_temporal_down": during,
    }


async def postgres_outage(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    await asyncio.sleep(min(8.0, ctx.mode.load_s / 3))
    t, stopped_at = time.monotonic(), time.time()
    await ctx.run_in_thread(ctx.stack.stop_postgres, "immediate")
    await asyncio.sleep(ctx.mode.pg_outage_s)
    await ctx.run_in_thread(ctx.stack.start_postgres)
    down = round(time.monotonic() - t, 1)
    ctx.outages.append((stopped_at, time.time() + 15))  # + the activities' database backoff (<= 10 s)
    return {"pg_stop_mode": "immediate", "postgres_down_s": down}


async def api_sigkill(
    ctx: Context, arrivals: Arrivals, make_record: Callable[..., OrderRecord]
) -> dict[str, Any]:
    bursts = []
    for _ in range(ctx.mode.api_bursts):
        await asyncio.sleep(ctx.mode.load_s / (ctx.mode.api_bursts + 1))
        batch = [make_record(burst=True) for _ in range(ctx.mode.burst_size)]
        for rec in batch:
            arrivals.spawn(rec)
        t_burst = time.monotonic()  # mid-flight: kill once a third has its answer (or 1.5 s passed)
        while sum(1 for rec in batch if rec.creates) < len(batch) / 3 and time.monotonic() - t_burst < 1.5:
            await asyncio.sleep(0.05)
        answered = sum(1 for rec in batch if rec.creates)
        await ctx.run_in_thread(ctx.stack.kill, "api", signal.SIGKILL)
        t = time.monotonic()
        await ctx.run_in_thread(ctx.stack.start_api)
        bursts.append(
            {
                "creates": len(batch),
                "answered_before_kill": answered,
                "api_back_s": round(time.monotonic() - t, 2),
            }
        )
    return {"bursts": bursts}


async def notifications(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    while arrivals.arriving:
        await asyncio.sleep(0.5)
    return {
        "knobs": "duplicate 0-5, reorder 50 %, delay_ms 7-15 s on 45 % of pays (window 6 s + grace 3 s), "
        "drop 10 % of pays; late MoMo payments after the close with duplicates and delays"
    }


async def graceful_restart(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    await asyncio.sleep(ctx.mode.load_s * 0.4)
    stack = ctx.stack
    names = [n for n in ("api", "w1", "w2", "temporal") if stack.alive(n)]
    postmaster = stack.postmaster_pid()
    t, stopped_at = time.monotonic(), time.time()
    for name in names:  # like Ctrl-C in a terminal: every process gets SIGINT at once
        stack.kill(name, signal.SIGINT)
    if postmaster is not None:
        os.kill(postmaster, signal.SIGINT)  # Postgres' "fast" shutdown

    async def postgres_gone() -> float | None:
        while stack.postmaster_pid() is not None:
            if time.monotonic() - t > 30:
                return None
            await asyncio.sleep(0.1)
        return time.monotonic() - t

    waits = [ctx.run_in_thread(stack.wait_exit, name, 30.0) for name in names]
    took = await asyncio.gather(*waits, postgres_gone())
    stopped = {
        name: round(s, 2) if s is not None else "did not stop within 30 s: SIGKILLed"
        for name, s in zip([*names, "postgres"], took, strict=True)
    }
    if stack.postmaster_pid() is not None:
        await ctx.run_in_thread(stack.stop_postgres, "immediate")
    await asyncio.sleep(ctx.mode.stack_down_s)  # windows close while nothing runs
    t_up = time.monotonic()
    await ctx.run_in_thread(stack.start_app_processes)
    ctx.outages.append((stopped_at, time.time() + 10))  # + a workflow-task timeout
    return {"stop_s": stopped, "down_s": ctx.mode.stack_down_s, "start_s": round(time.monotonic() - t_up, 1)}


async def two_workers(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    await ctx.run_in_thread(ctx.stack.start_worker, "w2")
    await asyncio.sleep(ctx.mode.load_s * 0.5)
    await ctx.run_in_thread(ctx.stack.kill, "w2", signal.SIGKILL)
    return {"workers": 2, "sigkilled": "w2", "at_s": ctx.mode.load_s * 0.5}


async def events_down(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    await asyncio.sleep(min(4.0, ctx.mode.load_s / 4))
    await ctx.set_receiver(events="down")
    t = time.monotonic()
    await asyncio.sleep(ctx.mode.receiver_down_s)
    await ctx.set_receiver(events="up")
    got = (await ctx.receiver.get("/chaos/receiver")).json()
    return {"receiver_down_s": round(time.monotonic() - t, 1), "events_refused_so_far": got["events_refused"]}


async def reminders_failing(
    ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]
) -> dict[str, Any]:
    await ctx.set_receiver(reminders="failing")
    while arrivals.arriving:
        await asyncio.sleep(0.5)
    await asyncio.sleep(LONG_WINDOW_S + 5)  # every window has closed: no reminder is due any more
    await ctx.set_receiver(reminders="up")
    got = (await ctx.receiver.get("/chaos/receiver")).json()
    return {"reminders_refused": got["reminders_refused"], "mails_so_far": got["mails"]}


async def gateway_hang(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    await asyncio.sleep(min(4.0, ctx.mode.load_s / 4))
    seconds = ctx.mode.gateway_fault_s
    await ctx.gateway_fault("momo", "hang", seconds, ["/sandbox/momo/v2/gateway/api/query"])
    await asyncio.sleep(seconds)
    return {"gateway": "momo", "hung": "status query", "seconds": seconds}


async def gateway_garbage(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    await asyncio.sleep(min(4.0, ctx.mode.load_s / 4))
    seconds = ctx.mode.gateway_fault_s
    await ctx.gateway_fault("payos", "garbage", seconds)
    await asyncio.sleep(seconds)
    return {"gateway": "payos", "garbage": "create, query, cancel", "seconds": seconds}


async def replay_flood(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    """Someone holding the signed messages replays them: every IPN the gateways sent and every browser
    return, `replays` times each, from one address; and forged PayOS returns (unsigned) that claim
    PAID for orders nobody paid."""
    answers: Counter[str] = Counter()
    replayed: set[tuple[str, int]] = set()
    flooder = {"X-Forwarded-For": "203.0.113.66"}
    api = ctx.shoppers.api

    async def replay(rec: OrderRecord, click: Any) -> None:
        note, gateway = click.notification, click.gateway
        for _ in range(ctx.mode.replays):
            try:
                if gateway == "vnpay":
                    r = await api.get("/webhooks/vnpay", params=note, headers=flooder)
                    answers[f"ipn vnpay {r.json().get('RspCode')}"] += 1
                else:
                    r = await api.post(f"/webhooks/{gateway}", json=note, headers=flooder)
                    answers[f"ipn {gateway} {r.status_code}"] += 1
                if click.return_url:
                    r = await api.get(click.return_url.split("/api/v1", 1)[1], headers=flooder)
                    answers[f"return {r.status_code}"] += 1
            except httpx.HTTPError as err:
                answers[type(err).__name__] += 1

    async def forge(rec: OrderRecord) -> None:
        attempt = rec.attempts.get(0, {})
        params = {
            "code": "00",
            "id": "forged",
            "cancel": "false",
            "status": "PAID",
            "orderCode": attempt["gatewayOrderId"],
        }
        for _ in range(ctx.mode.replays):
            try:
                r = await api.get("/payments/payos/return", params=params, headers=flooder)
                answers[f"forged return {r.status_code}"] += 1
            except httpx.HTTPError as err:
                answers[type(err).__name__] += 1

    tasks: list[asyncio.Task[None]] = []
    while arrivals.arriving or any(not rec.done for rec in arrivals.records):
        for rec in list(arrivals.records):
            for i, click in enumerate(rec.clicks):
                if click.status == 200 and click.notification and (rec.key, i) not in replayed:
                    replayed.add((rec.key, i))
                    tasks.append(asyncio.create_task(replay(rec, click)))
            forgeable = rec.plan.gateway == "payos" and rec.plan.kind == "expire" and 0 in rec.attempts
            if forgeable and (rec.key, -1) not in replayed:
                replayed.add((rec.key, -1))
                tasks.append(asyncio.create_task(forge(rec)))
        await asyncio.sleep(1.0)
        if len(tasks) > 400:
            break
    await asyncio.gather(*tasks)
    return {"replayed_messages": len(replayed), "answers": dict(answers)}


# ---- the gateway-fault family ------------------------------------------------------------------------------


def client_timeout_s() -> float:
    """The longest our adapters wait for a gateway's answer: a `slow` answer comes after it."""
    waits = [
        getattr(importlib.import_module(f"gateways.{g}"), f"{g.upper()}_TIMEOUT_SECONDS", 30.0)
        for g in ("momo", "vnpay", "payos")
    ]
    return float(max(waits))


def rule(gateway: str, op: str, fault: str, ctx: Context, **more: Any) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "op": op,
        "fault": fault,
        "rate": ctx.mode.fault_rate,
        "seed": ctx.seed,
        **more,
    }


async def _under_faults(
    ctx: Context, arrivals: Arrivals, rules: list[dict[str, Any]], blind: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The plan holds while shoppers arrive and until the last window has closed (late payments
    settle under it too), then the sandbox shows what each rule hit."""
    await ctx.sandbox_faults(rules, blind)
    while arrivals.arriving:
        await asyncio.sleep(0.5)
    await asyncio.sleep(LONG_WINDOW_S + GRACE_MINUTES * 60 + 10)
    return {"rules": rules, "plan_at_end": await ctx.clear_sandbox_faults()}


async def lost_create(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    rules = [rule(g, "create", "lose_answer", ctx) for g in ("momo", "vnpay", "payos")]
    return await _under_faults(ctx, arrivals, rules)


async def lost_refund(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    rules = [rule("*", "refund", "lose_answer", ctx, rate=0.6)]
    return await _under_faults(ctx, arrivals, rules)


async def slow_answers(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    delay = client_timeout_s() + 5
    rules = [
        rule("*", "refund", "slow", ctx, delaySeconds=delay, rate=0.5),
        rule("*", "create", "slow", ctx, delaySeconds=delay, rate=0.15),
        rule("*", "query", "slow", ctx, delaySeconds=delay, rate=0.2),
    ]
    return await _under_faults(ctx, arrivals, rules, blind=("momo", "vnpay", "payos"))


async def query_99(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    rules = [
        rule("momo", "query", "error_code", ctx, code=99, rate=0.6),
        rule("vnpay", "query", "error_code", ctx, code="99", rate=0.6),
        rule("payos", "query", "error_code", ctx, code="20", rate=0.6),
    ]
    return await _under_faults(ctx, arrivals, rules, blind=("momo", "vnpay", "payos"))


async def payos_transfers(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    while arrivals.arriving:
        await asyncio.sleep(0.5)
    return {"transfers": "split in two (in time), over-paid once paid, short then topped up after the close"}


def _gateway_ids(records: list[OrderRecord]) -> set[str]:
    return {a["gatewayOrderId"] for rec in records for a in rec.attempts.values()}


async def desk_open(ctx: Context, arrivals: Arrivals, _: Callable[..., OrderRecord]) -> dict[str, Any]:
    """Operators at the desk while shoppers pay by parts: whatever of theirs the desk shows on an
    open order, they refund and mark refunded. MoMo refund answers are lost meanwhile."""
    await ctx.sandbox_faults([rule("momo", "refund", "lose_answer", ctx, rate=0.5)])
    while arrivals.arriving or any(not rec.done for rec in arrivals.records):
        await ctx.desk.while_open(_gateway_ids(arrivals.records), time.monotonic() + 2)
    return {"plan_at_end": await ctx.clear_sandbox_faults()}


async def desk_after(ctx: Context, records: list[OrderRecord]) -> dict[str, Any]:
    await ctx.desk.after(_gateway_ids(records))
    return {"actions": len(ctx.desk.actions)}


TRANSFER_MIX = {"split_pay": 35, "overpay": 30, "late_topup": 25, "pay": 10}
LATE_MIX = {"late_pay": 45, "pay": 25, "expire": 15, "cancel": 5, "fail_retry_pay": 10}
DESK_MIX = {"split_pay": 30, "late_topup": 25, "overpay": 15, "late_pay": 30}


SCENARIOS = [
    Scenario(
        "worker_sigkill", "worker SIGKILLed again and again while windows close", worker_sigkill, quick=True
    ),
    Scenario(
        "temporal_sigkill",
        "Temporal dev server SIGKILLed, restarted on the same --db-filename",
        temporal_sigkill,
    ),
    Scenario(
        "postgres_outage",
        "Postgres stopped (-m immediate) while orders are created, paid and expire",
        postgres_outage,
    ),
    Scenario(
        "api_sigkill",
        "API SIGKILLed while a burst of creates is in flight; clients retry the same key",
        api_sigkill,
    ),
    Scenario(
        "notifications",
        "notifications duplicated, reordered, lost and delayed past the deadline",
        notifications,
        dict(NOTIFY_MIX),
    ),
    Scenario(
        "graceful_restart",
        "whole stack stopped with SIGINT (Ctrl-C) while windows close, started again",
        graceful_restart,
    ),
    Scenario("two_workers", "two workers on one task queue, one SIGKILLed under load", two_workers),
    Scenario("events_down", "the order-event receiver answers 503 for a minute, then is back", events_down),
    Scenario("reminders_failing", "the reminder webhook answers 500 to every reminder", reminders_failing),
    Scenario(
        "gateway_hang", "MoMo's status query hangs, no answer for a minute, while windows close", gateway_hang
    ),
    Scenario("gateway_garbage", "PayOS's merchant API answers garbage for a while", gateway_garbage),
    Scenario(
        "replay_flood", "signed IPNs and returns replayed many times, forged PayOS returns", replay_flood
    ),
    Scenario(
        "lost_create",
        "create answers lost after the link was made; resends meet duplicate-id answers",
        lost_create,
        quick=True,
    ),
    Scenario(
        "lost_refund",
        "refund answers lost after the money went back; resends meet duplicate-id answers",
        lost_refund,
        dict(LATE_MIX),
        quick=True,
    ),
    Scenario(
        "slow_answers",
        "creates, queries and refunds answered after the client's timeout",
        slow_answers,
        dict(LATE_MIX),
    ),
    Scenario("query_99", "status queries answer 99 / an error code, not a verdict", query_99),
    Scenario(
        "payos_transfers",
        "PayOS links paid in two parts, over-paid, and topped up after the deadline",
        payos_transfers,
        dict(TRANSFER_MIX),
        quick=True,
    ),
    Scenario(
        "desk",
        "operators refund / mark refunded while orders are open, then after they end, then again",
        desk_open,
        dict(DESK_MIX),
        after=desk_after,
        quick=True,
    ),
]
