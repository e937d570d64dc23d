"""The bench's phases, run in order against one stack; each is bounded in time and writes its
figures into `results`. Waits for expiries are capped: an order still pending at the cut-off is
counted with (cut-off - deadline), a lower bound, and the figure is flagged as censored."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from temporalio.client import Client

from bench import breakdown, rounds
from bench.cron_comparator import Plan
from bench.floor import history_sizes, wait_storm_drained
from bench.load import Api, Created, LoadResult, closed_loop, open_loop, round_robin, sequential
from bench.measure import (
    Observer,
    Processes,
    censored_lags_ms,
    count_statements,
    cpu_share,
    prepare_database,
    summary,
    top_statements,
)
from devstack.stack import ROOT, Stack

STOCK = 10_000_000  # per variant: ample for any run
HOLD = "hold"  # 4-hour windows: open for the whole run
LAG = "lag"  # 3-second windows, steady-arrival phase
LIFE = "life"  # 3-second windows, database-cost phase
WINDOW_S = 3  # the window of `lag` and `life` orders


@dataclass(frozen=True)
class Mode:
    name: str
    budget_s: float  # the whole run, stack start to teardown
    warmup: int
    sequential: int
    throughput_s: float
    lifecycle: int
    arrival_rate: float
    arrival_s: float
    storm_target: int
    storm_budget_s: float  # time allowed for creating the storm's orders
    memory_target: int
    memory_budget_s: float
    idle_s: float  # right after the throughput phase: open orders, none due, nothing else running
    idle_end_s: float  # again at the end, with the memory phase's open orders (0 = skip)
    wait_cap_s: float  # longest wait for a phase's orders to expire
    stall_s: float  # ... and stop waiting once none has expired for this long past the last deadline
    cron: Plan
    cron_starts_with: str  # the phase at whose start the comparator starts
    storm_windows: int  # order types st1..stK: windows of 1..K seconds
    rounds: int = 3  # of ours and the floor, alternating; sequential, throughput_s, storm_* are per round


MODES = {
    "quick": Mode(
        "quick",
        budget_s=360,
        warmup=10,
        sequential=20,
        throughput_s=5,
        lifecycle=25,
        arrival_rate=50,
        arrival_s=12,
        storm_target=1000,
        storm_budget_s=10,
        memory_target=5000,
        memory_budget_s=12,
        idle_s=10,
        idle_end_s=0,
        wait_cap_s=15,
        stall_s=10,
        cron=Plan(interval_s=60, steady_count=3000, storm_count=1000, storm_offset_s=30, ticks=1),
        cron_starts_with="creates",
        storm_windows=40,
    ),
    "full": Mode(
        "full",
        budget_s=1080,
        warmup=30,
        sequential=170,
        throughput_s=10,
        lifecycle=200,
        arrival_rate=50,
        arrival_s=60,
        storm_target=3500,
        storm_budget_s=45,
        memory_target=50_000,
        memory_budget_s=240,
        idle_s=30,
        idle_end_s=30,
        wait_cap_s=120,
        stall_s=45,
        cron=Plan(interval_s=60, steady_count=3000, storm_count=10_000, storm_offset_s=90, ticks=3),
        cron_starts_with="memory",
        storm_windows=240,
    ),
    # An experiment rather than a report: every other phase cut to a token, ~30 minutes spent
    # filling the worker with 50,000 open orders (the full run's budget reaches ~10,000).
    "memory": Mode(
        "memory",
        budget_s=2160,
        warmup=10,
        sequential=7,
        throughput_s=2,
        lifecycle=10,
        arrival_rate=20,
        arrival_s=5,
        storm_target=100,
        storm_budget_s=3,
        memory_target=50_000,
        memory_budget_s=1900,
        idle_s=5,
        idle_end_s=30,
        wait_cap_s=15,
        stall_s=10,
        cron=Plan(interval_s=60, steady_count=300, storm_count=100, storm_offset_s=30, ticks=1),
        cron_starts_with="creates",
        storm_windows=20,
    ),
}
PHASES = ("catalog", "creates", "idle", "lifecycle", "expiry", "storms", "profile", "memory", "idle_end")
SIDES = ("ours", "floor")  # a round's order when odd; an even round runs them the other way round
PROFILED = ("worker", "api")
# What is ours in a CPU reading (the gateways and the load generator are not), and the floor's.
OURS = ("worker", "api", "temporal", "postgres")
FLOOR = ("floor-worker", "floor-api", "temporal")


def order_type_durations(mode: Mode) -> str:
    storm = ",".join(f"st{k}={k / 60:.6f}" for k in range(1, mode.storm_windows + 1))
    return f"normal=15,vip=30,quick=5,{HOLD}=240,{LAG}=0.05,{LIFE}=0.05,{storm}"


class Ui(Protocol):
    def phase(self, name: str, total: float) -> Any: ...
    def waiting(self, name: str, total: int) -> Any: ...
    def note(self, text: str) -> None: ...


class Bench:
    def __init__(
        self, mode: Mode, stack: Stack, floor_url: str, ui: Ui, profile: bool, deadline: float
    ) -> None:
        self.mode, self.stack, self.floor_url, self.ui, self.profile = mode, stack, floor_url, ui, profile
        self.deadline = deadline  # time.monotonic() by which the phases must be done
        self.results: dict[str, Any] = {"figures": {}, "flags": {}, "phases": {}, "breakdown": {}, "cpu": {}}
        self.variants: dict[str, list[str]] = {}
        self.cron: subprocess.Popen | None = None
        self.cron_out = stack.data_dir / "cron.json"
        self.cron_started = 0.0
        self.spans: dict[str, tuple[float, float]] = {}  # phase -> (start, end), wall clock
        self.memory_points: list[dict[str, Any]] = []  # RSS readings taken along the run
        self.results["rounds"] = {}
        self.spying = ""  # the path ("create", "expiry") py-spy samples now, in the profile round

    @property
    def figures(self) -> dict[str, Any]:
        return self.results["figures"]

    def left(self) -> float:
        return self.deadline - time.monotonic()

    async def run(self) -> dict[str, Any]:
        await prepare_database(self.stack.database_url)
        self.obs = Observer(self.stack.database_url)
        await self.obs.open()
        self.api = Api(self.stack.api_url, self.stack.jwt_secret, self.stack.gateway_url)
        self.floor = Api(self.floor_url, self.stack.jwt_secret)
        self.temporal = await Client.connect(self.stack.temporal_address)
        self.procs = Processes(self.stack.pids(), self.stack.postmaster_pid())
        cpu_start, t_start = self.procs.cpu(), time.monotonic()
        try:
            for name in PHASES:
                if name == self.mode.cron_starts_with:
                    self.start_comparator()
                began = time.time()
                await getattr(self, f"phase_{name}")()
                self.spans[name] = (began, time.time())
                self.stack.check_alive()
            await self.finish_comparator()
            self.ratios()
        finally:
            await self.api.close()
            await self.floor.close()
            await self.obs.close()
        whole = cpu_share(cpu_start, self.procs.cpu(), time.monotonic() - t_start, 1)
        self.results["foreign_cpu_pct"] = whole["foreign_cpu_pct"]
        self.results["log_errors"] = {
            name: log_errors(self.stack.data_dir / f"{name}.log") for name in ("api", "worker")
        }
        return self.results

    def wait_cap(self, reserve: float) -> float:
        """The mode's cap on a wait for expiries, shortened so `reserve` s remain for what follows."""
        return max(5.0, min(self.mode.wait_cap_s, self.left() - reserve))

    # ---- catalog ----------------------------------------------------------------------------------

    async def phase_catalog(self) -> None:
        pools = {HOLD: 16, LAG: 16, LIFE: 4, "storm": 16}
        with self.ui.phase("catalog + warm-up", len(pools) + self.mode.warmup) as tick:
            for pool, count in pools.items():
                self.variants[pool] = await self.api.create_variants(pool, count, STOCK)
                tick()
            # One order first, with a short timeout: a service that cannot create orders ends the run
            # here, not after every phase has timed out.
            first = LoadResult()
            if await self.api.create_order(self.variants[HOLD][0], HOLD, first, timeout=30) is None:
                raise RuntimeError(
                    f"the service could not create an order ({first.errors}); see worker.log and api.log "
                    "(run with --keep-data to keep them)"
                )
            warm = await sequential(self.api, self.mode.warmup, round_robin(self.variants[HOLD]), HOLD, tick)
        if warm.errors:
            raise RuntimeError(f"warm-up creates failed: {warm.errors}")
        self.memory_points.append(
            {"open_orders": await self.obs.open_orders(), **self.procs.rss_mb(), "at": "warm-up"}
        )

    # ---- creates --------------------------------------------------------------------------------------

    async def phase_creates(self) -> None:
        """Rounds of creates at concurrency 1 and 32, ours and the floor back to back; the side
        that goes first alternates (ours in odd rounds), so drift over the run hits both alike."""
        mode = self.mode
        rows: list[dict[str, Any]] = []
        pooled: dict[str, LoadResult] = {k: LoadResult() for k in ("ours", "floor", "ours_32", "floor_32")}
        cpu: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
        last_32 = LoadResult()
        for r in range(mode.rounds):
            sides = SIDES if r % 2 == 0 else SIDES[::-1]
            row: dict[str, Any] = {"round": r + 1, "first": sides[0]}
            for side in sides:
                res = await self.sequential_round(side, r)
                _pool(pooled[side], res)
                row["create_p50_ms" if side == "ours" else "floor_create_p50_ms"] = summary(res.latencies_ms)[
                    "p50"
                ]
            readings = {}
            for side in sides:
                res, readings[side] = await self.creates_at_32(
                    self.api if side == "ours" else self.floor,
                    f"{'' if side == 'ours' else 'floor: '}create, concurrency 32 ({r + 1}/{mode.rounds})",
                )
                _pool(pooled[f"{side}_32"], res)
                cpu[side].append(readings[side])
                if side == "ours":
                    row["create_throughput_per_s"] = res.rate
                    row["create_p99_ms_at_32"] = summary(res.latencies_ms)["p99"]
                    row["cpu_ms_per_create"] = cpu_ms(readings[side], OURS)
                    last_32 = res
                else:
                    row["floor_create_throughput_per_s"] = res.rate
                    row["floor_cpu_ms_per_create"] = cpu_ms(readings[side], FLOOR)
            rows.append(rounds.create_round(row, readings["ours"], readings["floor"]))
            await asyncio.sleep(1)  # let the last workflow tasks settle
        self.results["rounds"]["creates"] = rows
        self.figures.update(rounds.combine(rows, skip=("round",)))
        self.results["breakdown"]["create_at_32"] = await self.create_breakdown(last_32.created[-40:])
        # Percentiles of the pooled samples: a p99 of one round's few creates would be its maximum.
        for side, phase in (("ours", "sequential"), ("floor", "floor_sequential")):
            self.results["phases"][phase] = {
                "n": len(pooled[side].latencies_ms),
                "warmup": mode.warmup,
                "rounds": mode.rounds,
                "latency_ms": summary(pooled[side].latencies_ms),
                "errors": pooled[side].errors,
            }
        self.figures["create_p99_ms"] = summary(pooled["ours"].latencies_ms)["p99"]
        self.figures["create_p99_ms_at_32"] = summary(pooled["ours_32"].latencies_ms)["p99"]
        for side, phase in (("ours", "throughput"), ("floor", "floor_throughput")):
            res = pooled[f"{side}_32"]
            self.results["phases"][phase] = {
                "completed": len(res.created),
                "elapsed_s": res.elapsed_s,
                "rounds": mode.rounds,
                "rate_per_s": self.figures[
                    "create_throughput_per_s" if side == "ours" else "floor_create_throughput_per_s"
                ],
                "latency_ms": summary(res.latencies_ms),
                "errors": res.errors,
            }
            self.results["cpu"][phase] = rounds.median_cpu(cpu[side])
        self.round_flags(rows, "create")

    async def sequential_round(self, side: str, r: int) -> LoadResult:
        """One round at concurrency 1 (ours was warmed up by the catalog phase, the floor is here)."""
        mode, ours = self.mode, side == "ours"
        api, warmup = (self.api, 0) if ours else (self.floor, mode.warmup if r == 0 else 0)
        label = f"{'' if ours else 'floor: '}create, concurrency 1 ({r + 1}/{mode.rounds})"
        with self.ui.phase(label, mode.sequential + warmup) as tick:
            if warmup:
                await sequential(api, warmup, round_robin(self.variants[HOLD]), HOLD, tick)
            res = await closed_loop(
                api,
                1,
                round_robin(self.variants[HOLD]),
                HOLD,
                count=mode.sequential,
                duration_s=max(5.0, self.left() / (8 * mode.rounds)),
                tick=tick,
            )
        if not res.created:
            log = "api.log" if ours else "floor-api.log"
            raise RuntimeError(f"{side} could not create an order ({res.errors}); see {log}")
        if ours and r == 0:
            self.results["breakdown"]["create"] = await self.create_breakdown(res.created[-60:])
            self.results["breakdown"]["direct"] = await breakdown.direct_timings(self.stack.gateway_url)
        return res

    async def create_breakdown(self, chosen: list[Created]) -> dict[str, Any]:
        hist = await breakdown.histories(self.stack.temporal_address, [c.order_id for c in chosen])
        rows = []
        for c in chosen:
            if c.order_id not in hist:
                continue
            row = breakdown.create_phases(hist[c.order_id])
            inside = row["in Temporal + worker (start -> update completed)"]
            row["API + HTTP (client latency minus the above)"] = (
                c.latency_ms - inside if inside is not None else None
            )
            row["client latency (HTTP POST /orders)"] = c.latency_ms
            rows.append(row)
        return breakdown.medians(rows)

    async def creates_at_32(self, api: Api, label: str) -> tuple[LoadResult, dict[str, Any]]:
        """32 shoppers for the mode's throughput time: what they got, and the CPU it took."""
        seconds = self.mode.throughput_s
        with self.ui.phase(label, seconds) as tick:
            cpu0, t0 = self.procs.cpu(), time.monotonic()
            ticker = asyncio.create_task(tick_seconds(tick, seconds))
            res = await closed_loop(api, 32, round_robin(self.variants[HOLD]), HOLD, duration_s=seconds)
            ticker.cancel()
            reading = cpu_share(cpu0, self.procs.cpu(), time.monotonic() - t0, len(res.created))
        return res, reading

    def round_flags(self, rows: list[dict[str, Any]], what: str) -> None:
        """A round's censored figure flags the run's median of it, saying which round."""
        for row in rows:
            for key, why in row.pop("flags", {}).items():
                self.results["flags"].setdefault(key, f"{what} round {row['round']}: {why}")

    # ---- storms: many windows ending at once, ours and the floor in alternating rounds ------------------

    def storm_reserve(self) -> float:
        """Time kept after the storms: the profile round, the memory phase, the end."""
        mode = self.mode
        profile = mode.throughput_s + 2 * mode.storm_budget_s + 10 if self.profile else 0  # ~ as a round
        return profile + self.memory_min() + mode.idle_end_s + 20

    def storm_size(self, rounds_left: int) -> tuple[int, float]:
        """(orders per storm, creation budget): a round is two storms, each about its creation time
        to create and as long again to drain, plus the wait for the shared deadline."""
        mode = self.mode
        rate = max(1.0, self.results["phases"]["throughput"]["rate_per_s"] or 1.0)
        room = (self.left() - self.storm_reserve()) / rounds_left
        budget = max(3.0, min(mode.storm_budget_s, (room - 12) / 4))
        return max(50, min(mode.storm_target, int(rate * budget * 0.9))), budget

    async def phase_storms(self) -> None:
        mode = self.mode
        rows: list[dict[str, Any]] = []
        cpu: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
        for r in range(mode.rounds):
            n, budget = self.storm_size(mode.rounds - r)
            sides = SIDES if r % 2 == 0 else SIDES[::-1]
            row: dict[str, Any] = {"round": r + 1, "first": sides[0], "n": n, "flags": {}}
            readings = {}
            for i, side in enumerate(sides):
                # the rest of this round and the rounds after it, then the tail
                after = (len(sides) - 1 - i + 2 * (mode.rounds - r - 1)) * (2 * budget + 6)
                reserve = after + self.storm_reserve()
                label = f"{'' if side == 'ours' else 'floor '}storm ({r + 1}/{mode.rounds}): {n:,} shared deadlines"
                got = await (
                    self.storm(n, label, reserve) if side == "ours" else self.floor_storm(n, label, reserve)
                )
                readings[side] = got.pop("cpu")
                row["flags"].update(got.pop("flags"))
                self.results["phases"].setdefault(
                    f"{'storm' if side == 'ours' else 'floor_storm'}_rounds", []
                ).append(got.pop("detail"))
                row.update(got)
                cpu[side].append(readings[side])
            rows.append(rounds.storm_round(row, readings["ours"], readings["floor"]))
        self.results["phases"]["storm"] = self.results["phases"]["storm_rounds"][-1]
        self.results["phases"]["floor_storm"] = self.results["phases"]["floor_storm_rounds"][-1]
        self.results["cpu"]["storm_drain"] = rounds.median_cpu(cpu["ours"])
        self.results["cpu"]["floor_storm_drain"] = rounds.median_cpu(cpu["floor"])
        self.round_flags(rows, "storm")
        self.results["rounds"]["storms"] = rows
        self.figures.update(rounds.combine(rows, skip=("round", "n")))

    async def floor_storm(self, n: int, label: str, reserve: float) -> dict[str, Any]:
        """As many shared deadlines as our storm has, drained by the floor's worker; its end times
        are the workflows' close times in Temporal's visibility store."""
        rate = max(1.0, self.figures.get("floor_create_throughput_per_s") or 1.0)
        res = await self.storm_orders(self.floor, n, rate, label)
        deadlines = [datetime.fromisoformat(c.expires_at) for c in res.created]
        if not deadlines:
            raise RuntimeError(f"no floor storm order was created: {res.errors}")
        first, last = min(deadlines), max(deadlines)
        cpu0, t0 = self.procs.cpu(), time.monotonic()
        with self.ui.waiting("  waiting for the floor's storm to drain", len(deadlines)) as progress:
            left, closed = await wait_storm_drained(
                self.temporal, first, last, self.wait_cap(reserve), progress
            )
        cpu = cpu_share(cpu0, self.procs.cpu(), time.monotonic() - t0, len(closed))
        drain_max = (max(closed) - last).total_seconds() if closed else None
        sizes = await history_sizes(self.temporal, first, last)
        return {
            "floor_storm_drain_s_per_10k": drain_max * 10_000 / len(deadlines)
            if drain_max is not None and not left
            else None,
            "floor_cpu_ms_per_expiry": cpu_ms(cpu, FLOOR),
            "floor_history_events_per_order": summary([e for e, _ in sizes])["p50"],
            "floor_workflow_tasks_per_order": summary([t for _, t in sizes])["p50"],
            "cpu": cpu,
            "flags": {"floor_storm_drain_s_per_10k": f"not drained: {left} still running"} if left else {},
            "detail": {
                "n": len(deadlines),
                "errors": res.errors,
                "create_rate_per_s": res.rate,
                "deadline_spread_s": (last - first).total_seconds(),
                "drain_from_max_s": drain_max,
                "still_running": left,
                "source": "close times of FloorWorkflow executions (Temporal visibility)",
            },
        }

    def ratios(self) -> None:
        """Ours against the floor (medians over the rounds, rounds.combine) and against the cron job
        (its p99 over ours in each third of the steady-arrival phase); a ratio made from a censored
        figure (a bound), or missing from some rounds, is flagged."""
        f, flags = self.figures, self.results["flags"]
        for name, a, b, group in (
            (
                "create_throughput_ratio_to_floor",
                "create_throughput_per_s",
                "floor_create_throughput_per_s",
                "creates",
            ),
            ("create_p50_ratio_to_floor", "create_p50_ms", "floor_create_p50_ms", "creates"),
            (
                "storm_drain_ratio_to_floor",
                "storm_close_drain_s_per_10k",
                "floor_storm_drain_s_per_10k",
                "storms",
            ),
        ):
            censored = [f"`{k}`" for k in (a, b) if k in flags]
            if censored and f.get(name) is not None:
                flags[name] = f"made from a bound ({', '.join(censored)})"
            rows = self.results["rounds"].get(group, [])
            if missing := sum(1 for r in rows if r.get(name) is None):
                flags.setdefault(
                    name, f"missing in {missing} of {len(rows)} rounds: the median of the others"
                )
        cron = f.get("cron_expiry_lag_p99_ms")
        parts = self.results["phases"].get("expiry", {}).get("lag_p99_ms_by_third", [])
        median, spread = rounds.median_spread(rounds.ratio(cron, p) for p in parts)
        f["lag_p99_ratio_to_cron"], f["lag_p99_ratio_to_cron_spread"] = median, spread
        if "expiry_lag_p99_ms" in flags and median is not None:
            flags["lag_p99_ratio_to_cron"] = "made from a bound (`expiry_lag_p99_ms`)"

    # ---- database cost of one order's life ---------------------------------------------------------

    async def phase_lifecycle(self) -> None:
        n = self.mode.lifecycle
        await self.obs.reset_statements()
        with self.ui.phase("one order's life: DB cost", n) as tick:
            res = await sequential(self.api, n, round_robin(self.variants[LIFE]), LIFE, tick)
        created = len(res.created)
        with self.ui.waiting("  waiting for those to expire", created) as progress:
            left = await self.obs.wait_all_ended(
                [LIFE],
                self.wait_cap(reserve=self.mode.budget_s * 0.55),
                last_deadline=time.time() + WINDOW_S,
                stall_s=self.mode.stall_s,
                on_poll=progress,
            )
        cutoff = datetime.now(UTC)
        await asyncio.sleep(0.5)
        lags, _ = censored_lags_ms(await self.obs.orders([LIFE]), cutoff)
        rows = await self.obs.statements()
        counts = count_statements(rows)
        per = {k: v / created for k, v in counts.items()} if created else {}
        self.results["phases"]["lifecycle"] = {
            "n": created,
            "still_pending": left,
            "errors": res.errors,
            "statements_per_order": per.get("statements"),
            "queries_per_order": per.get("queries"),
            "commits_per_order": per.get("commits"),
            "exec_ms_per_order": per.get("exec_ms"),
            "top": top_statements(rows, created or 1),
            "expiry_lag_ms_unloaded": summary(lags),  # one order at a time: the path's own latency
            "source": "pg_stat_statements (shared_preload_libraries), statements of the service's role only",
        }
        self.figures["db_queries_per_order"] = per.get("queries")
        if left:  # the expiry side is missing for these orders: a lower bound
            self.results["flags"]["db_queries_per_order"] = (
                f"{left} of {created} orders had not expired at the cut-off"
            )

    # ---- expiry lag under steady arrivals ----------------------------------------------------------

    async def phase_expiry(self) -> None:
        mode = self.mode
        paid_ids: list[str] = []
        count = {"n": 0}
        stock0 = await self.obs.stock(self.variants[LAG])

        async def maybe_pay(created: Created) -> None:
            count["n"] += 1
            if count["n"] % 20 == 0 and await self.api.pay(created.gateway_order_id):  # 5 % pay
                paid_ids.append(created.order_id)

        expected = int(mode.arrival_rate * mode.arrival_s)
        with self.ui.phase(f"steady arrivals, {mode.arrival_rate:.0f}/s offered", expected) as tick:
            cpu0, t0 = self.procs.cpu(), time.monotonic()
            res, achieved, shed = await open_loop(
                self.api,
                mode.arrival_rate,
                mode.arrival_s,
                round_robin(self.variants[LAG]),
                LAG,
                max_in_flight=64,
                on_created=maybe_pay,
                tick=tick,
                drain_timeout_s=min(45.0, mode.wait_cap_s),
            )
        with self.ui.waiting("  waiting for their expiry", len(res.created)) as progress:
            left = await self.obs.wait_all_ended(
                [LAG],
                self.wait_cap(reserve=self.mode.budget_s * 0.4),
                last_deadline=time.time() + WINDOW_S,
                stall_s=mode.stall_s,
                on_poll=progress,
            )
        cutoff = datetime.now(UTC)
        self.results["cpu"]["expiry"] = cpu_share(
            cpu0, self.procs.cpu(), time.monotonic() - t0, len(res.created)
        )
        rows = await self.obs.orders([LAG])
        lags, censored = censored_lags_ms(rows, cutoff)
        stock_ok = await self.obs.stock_conserved(self.variants[LAG], [LAG], stock0)
        lag = summary(lags)
        self.figures["expiry_lag_p50_ms"], self.figures["expiry_lag_p99_ms"] = lag["p50"], lag["p99"]
        # The phase's three consecutive thirds (by creation) stand for rounds: the ratio to the
        # cron job is a median over them, with their spread.
        by_third = [
            summary(censored_lags_ms(part, cutoff)[0])["p99"]
            for part in rounds.thirds([r for r in rows if r.expires_at <= cutoff], key=lambda r: r.created_at)
        ]
        if censored:
            note = f"{censored} of {len(lags)} orders still pending at the cut-off (counted as cut-off - deadline)"
            self.results["flags"]["expiry_lag_p99_ms"] = note
            if censored * 2 >= len(lags):
                self.results["flags"]["expiry_lag_p50_ms"] = note
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        self.results["phases"]["expiry"] = {
            "offered_rate_per_s": mode.arrival_rate,
            "duration_s": mode.arrival_s,
            "achieved_rate_per_s": achieved,
            "shed_arrivals": shed,
            "max_in_flight": 64,
            "created_rate_per_s": len(res.created) / mode.arrival_s,
            "created": len(res.created),
            "create_latency_ms": summary(res.latencies_ms),
            "errors": res.errors,
            "paid": statuses.get("paid", 0),
            "pay_requests_accepted": len(paid_ids),
            "statuses": statuses,
            "expired": statuses.get("expired", 0),
            "still_pending": left,
            "censored": censored,
            "lag_ms": lag,
            "lag_p99_ms_by_third": by_third,
            "stock_ok": stock_ok,
        }
        self.results["lag_samples_ms"] = lags
        expired = [r for r in rows if r.status == "expired" and r.ended_at is not None]
        sample = expired[:: max(1, len(expired) // 60)][:60]
        hist = await breakdown.histories(self.stack.temporal_address, [r.id for r in sample])
        paid = await breakdown.histories(
            self.stack.temporal_address, [r.id for r in rows if r.status == "paid"][:20]
        )
        for end, got in (("expired", hist), ("paid", paid)):
            self.figures[f"history_events_per_order_{end}"] = summary([len(h) for h in got.values()])["p50"]
            self.figures[f"workflow_tasks_per_order_{end}"] = summary(
                [breakdown.workflow_tasks(h) for h in got.values()]
            )["p50"]
        self.results["breakdown"]["expiry"] = breakdown.medians(
            [
                breakdown.expiry_phases(hist[r.id], r.expires_at.timestamp(), r.ended_at.timestamp())
                for r in sample
                if r.id in hist and r.ended_at is not None
            ]
        )

    # ---- storm: many windows ending at once ------------------------------------------------------------

    def memory_min(self) -> float:
        """The memory phase's least time: the comparator's ticks in full when it starts there."""
        mode = self.mode
        return mode.cron.ticks * mode.cron.interval_s if mode.cron_starts_with == "memory" else 10

    async def storm_orders(
        self, api: Api, n: int, rate: float, label: str, on_created: Any = lambda: None
    ) -> LoadResult:
        """`n` orders whose windows all end at one moment (within about a second: windows come in
        1-s steps, and each order's starts when the server gets it), then returns at that moment.
        Concurrency 8, not 32: enough to saturate the service, with little queueing, which would
        spread the deadlines by the queue's length. `on_created` runs once they are all answered."""
        windows = self.mode.storm_windows
        target = time.time() + min(n / rate * 1.15 + 3, windows - 2)  # the shared deadline

        def window() -> str:  # the window that ends at `target` for an order sent now
            return f"st{min(windows, max(1, math.ceil(target - time.time())))}"

        with self.ui.phase(label, n) as tick:
            res = await closed_loop(
                api, 8, round_robin(self.variants["storm"]), window, count=n, stop_at=target - 1.5, tick=tick
            )
        on_created()
        await asyncio.sleep(max(0.0, target - time.time()))
        return res

    async def storm(self, n: int, label: str, reserve: float) -> dict[str, Any]:
        """Our storm of `n`: its figures, the drain's CPU, its censoring flags and its detail. In the
        profile round py-spy samples the worker and the API from the end of the creates to the
        drain's end."""
        mode = self.mode
        rate = max(1.0, self.results["phases"]["throughput"]["rate_per_s"] or 1.0)
        types = [f"st{k}" for k in range(1, mode.storm_windows + 1)]
        stock0 = await self.obs.stock(self.variants["storm"])
        spies: list[subprocess.Popen | None] = []
        res = await self.storm_orders(
            self.api, n, rate, label, on_created=lambda: spies.extend(self.start_spies("expiry"))
        )
        ids = [c.order_id for c in res.created]
        cpu0, t0 = self.procs.cpu(), time.monotonic()
        with self.ui.waiting("  waiting for the storm to drain", len(res.created)) as progress:
            left = await self.obs.wait_all_ended(
                types,
                self.wait_cap(reserve),
                last_deadline=time.time() + 2,
                stall_s=mode.stall_s,
                poll_s=0.1,
                on_poll=progress,
                ids=ids,
            )
        cutoff = datetime.now(UTC)
        cpu = cpu_share(cpu0, self.procs.cpu(), time.monotonic() - t0, len(res.created) - left)
        await breakdown.stop_pyspy(spies)
        rows = await self.obs.orders(types, ids=ids)
        if not rows:
            raise RuntimeError(f"no storm order was created: {res.errors}")
        first_deadline, last_deadline = min(r.expires_at for r in rows), max(r.expires_at for r in rows)
        ended = [r.ended_at for r in rows if r.ended_at is not None]
        last_end = cutoff if left or not ended else max(ended)
        drain_max = (last_end - last_deadline).total_seconds()
        drain_min = (last_end - first_deadline).total_seconds()
        created = len(rows)
        flags = {}
        if left:  # scaling a wait that was cut short would be meaningless
            flags["storm_drain_s_per_10k"] = (
                f"not drained: {left} of {created} orders still pending {drain_max:.0f} s after the latest deadline"
            )
        # For the ratio to the floor, the same clock as the floor's: the workflows' close times.
        running, closed = await wait_storm_drained(
            self.temporal, first_deadline, last_deadline, 20, workflow_type="OrderWorkflow"
        )
        close_drain = (max(closed) - last_deadline).total_seconds() if closed else None
        return {
            "storm_drain_s_per_10k": drain_max * 10_000 / created if not left else None,
            "storm_close_drain_s_per_10k": close_drain * 10_000 / created
            if close_drain is not None and not left and not running
            else None,
            "cpu_ms_per_expiry": cpu_ms(cpu, OURS),
            "cpu": cpu,
            "flags": flags,
            "detail": {
                "n": created,
                "target_n": mode.storm_target,
                "planned_n": n,
                "errors": res.errors,
                "create_rate_per_s": res.rate,
                "deadline_spread_s": (last_deadline - first_deadline).total_seconds(),
                "drain_from_max_s": drain_max,
                "drain_from_min_s": drain_min,
                "expiry_rate_per_s": (created - left) / drain_min if drain_min > 0 else None,
                "still_pending": left,
                "expired": sum(1 for r in rows if r.status == "expired"),
                "stock_ok": await self.obs.stock_conserved(self.variants["storm"], types, stock0, ids=ids),
                "scaled_to_10k": created != 10_000,
            },
        }

    # ---- profiles: one more round of ours only, under py-spy -----------------------------------------

    def start_spies(self, path: str) -> list[subprocess.Popen | None]:
        """py-spy on our worker and API, for the profile round only (`self.spying` says which)."""
        if self.spying != path:
            return []
        pids = self.stack.pids()
        return [
            breakdown.start_pyspy(pids[p], self.stack.data_dir / f"flame-{path}-{p}.svg") for p in PROFILED
        ]

    async def phase_profile(self) -> None:
        """With --profile: a round of our creates at concurrency 32 and of our storm, not counted in
        any figure, sampled from the moment they start to the moment they end (the storm: its
        drain). The floor's phases stay out of the flame graphs, the sampler's CPU out of the rounds."""
        if not self.profile:
            return
        if breakdown.pyspy_available() is None:
            self.ui.note("py-spy is not installed: no profiles")
            return
        self.spying = "create"
        spies = self.start_spies("create")
        await asyncio.sleep(1)  # attached before the first request
        await self.creates_at_32(self.api, "profile: create, concurrency 32")
        await breakdown.stop_pyspy(spies)
        n = self.results["rounds"]["storms"][-1]["n"]  # as the counted rounds'
        self.spying = "expiry"
        got = await self.storm(n, f"profile: storm of {n:,}", self.memory_min() + self.mode.idle_end_s + 15)
        self.spying = ""
        self.results["phases"]["profile_storm"] = got["detail"]
        buckets = {"worker": breakdown.WORKER_BUCKETS, "api": breakdown.API_BUCKETS}
        self.results["profile"] = {
            f"{path}_{p}": {
                "svg": str(svg),
                **breakdown.profile_summary(svg, buckets[p]),
            }
            for path in ("create", "expiry")
            for p in PROFILED
            if (svg := self.stack.data_dir / f"flame-{path}-{p}.svg").exists()
        }

    # ---- memory with many open orders, then idle ------------------------------------------------------

    async def phase_memory(self) -> None:
        mode = self.mode
        budget = max(5.0, min(mode.memory_budget_s, self.left() - mode.idle_end_s - 15))
        want = max(0, mode.memory_target - await self.obs.open_orders())
        curve: list[dict[str, Any]] = list(self.memory_points)
        t0 = time.monotonic()

        async def reading() -> dict[str, Any]:
            return {
                "open_orders": await self.obs.open_orders(),
                **self.procs.rss_mb(),
                "at": f"memory +{time.monotonic() - t0:.0f} s",
            }

        async def sample() -> None:
            while True:
                curve.append(await reading())
                await asyncio.sleep(max(2.0, budget / 12))

        with self.ui.phase(f"memory: up to {mode.memory_target:,} open", want) as tick:
            sampler = asyncio.create_task(sample())
            res = await closed_loop(
                self.api, 32, round_robin(self.variants[HOLD]), HOLD, count=want, duration_s=budget, tick=tick
            )
            sampler.cancel()
        await asyncio.sleep(3)
        after = await reading()
        curve.append(after)
        self.results["phases"]["memory"] = {
            "target": mode.memory_target,
            "open_orders": after["open_orders"],
            "created": len(res.created),
            "create_rate_per_s": res.rate,
            "elapsed_s": res.elapsed_s,
            "errors": res.errors,
            "curve": curve,
            "after_creation": after,
            **rss_slopes(curve),
        }

    async def phase_idle(self) -> None:
        """The figure: orders are open (their timers hours away) and nothing else is going on."""
        reading = await self.idle_reading("idle: DB queries", self.mode.idle_s)
        self.figures["idle_db_queries_per_min"] = reading["queries_per_min"]
        self.results["phases"]["idle"] = reading
        self.memory_points.append({**reading["reading"], "at": "idle"})

    async def phase_idle_end(self) -> None:
        """Again at the end, with the memory phase's open orders; the memory figures come from here."""
        mem = self.results["phases"]["memory"]
        if self.mode.idle_end_s > 0:
            reading = await self.idle_reading("idle again: DB queries, memory", self.mode.idle_end_s)
            self.results["phases"]["idle_end"] = reading
            final = reading["reading"]
        else:
            with self.ui.phase("final reading", 1):
                final = mem["after_creation"]
        mem["curve"].append({**final, "at": "idle at the end" if self.mode.idle_end_s > 0 else "end"})
        self.figures["open_orders"] = final["open_orders"]
        self.figures["worker_rss_mb"] = final.get("worker")
        self.figures["temporal_rss_mb"] = final.get("temporal")
        self.figures["api_rss_mb"] = final.get("api")

    async def idle_reading(self, label: str, seconds: float) -> dict[str, Any]:
        seconds = max(5.0, min(seconds, self.left() - 5))
        await asyncio.sleep(2)
        busy = await self.obs.pending([LAG, LIFE, *(f"st{k}" for k in range(1, self.mode.storm_windows + 1))])
        await self.obs.reset_statements()
        with self.ui.phase(label, seconds) as tick:
            await tick_seconds(tick, seconds)
        rows = await self.obs.statements()
        counts = count_statements(rows)
        reading = {"open_orders": await self.obs.open_orders(), **self.procs.rss_mb()}
        return {
            "seconds": seconds,
            **counts,
            "queries_per_min": counts["queries"] * 60 / seconds,
            "short_window_orders_still_pending": busy,
            "reading": reading,
            "top": top_statements(rows, 1, limit=6),
        }

    # ---- the comparator ------------------------------------------------------------------------------

    def start_comparator(self) -> None:
        plan = self.mode.cron
        self.cron = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.cron_comparator",
                "--dsn",
                self.stack.database_url,
                "--plan",
                json.dumps(asdict(plan)),
                "--out",
                str(self.cron_out),
            ],
            cwd=ROOT,
            stdout=(self.stack.data_dir / "cron.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.cron_started = time.monotonic()
        self.ui.note(f"comparator started: a tick every {plan.interval_s:.0f} s, {plan.ticks} tick(s)")

    async def finish_comparator(self) -> None:
        if self.cron is None:
            return
        plan = self.mode.cron
        expected_end = self.cron_started + plan.ticks * plan.interval_s + 5
        with self.ui.phase("comparator (cron) finishing", max(1.0, expected_end - time.monotonic())) as tick:
            while self.cron.poll() is None and time.monotonic() < self.deadline + 8:
                await asyncio.sleep(1)
                tick()
        if self.cron.poll() is None:
            self.cron.terminate()
            self.cron.wait(10)
        if self.cron.returncode != 0 or not self.cron_out.exists():
            # Our figures stand on their own: report the comparator as missing, do not fail the run.
            tail = (self.stack.data_dir / "cron.log").read_text()[-300:]
            why = f"did not finish within the run's time (exit {self.cron.returncode})"
            self.results["comparator"] = {"error": why, "log_tail": tail}
            self.ui.note(f"the comparator {why}; its figures are missing")
            return
        cron = json.loads(self.cron_out.read_text())
        busy = [(t["at"], t["at"] + t["seconds"]) for t in cron["ticks"] if t["found"]]
        cron["ticks_overlapped_phases"] = sorted(
            {name for name, (a, b) in self.spans.items() for (c, d) in busy if c < b and a < d}
        )
        self.results["comparator"] = cron
        self.figures["cron_expiry_lag_p50_ms"] = cron["expiry_lag_ms"]["p50"]
        self.figures["cron_expiry_lag_p99_ms"] = cron["expiry_lag_ms"]["p99"]
        self.figures["cron_storm_drain_s_per_10k"] = cron["storm"].get("drain_s_per_10k")
        self.figures["cron_db_queries_per_order"] = cron["db_statements_per_order"]
        self.figures["cron_idle_db_queries_per_min"] = cron["idle_db_statements_per_min"]


EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)): (.*)$")


def log_errors(path: Path, top: int = 5) -> list[tuple[str, int]]:
    """The most frequent exception lines of a child's log (type and the start of the message)."""
    if not path.exists():
        return []
    seen: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if m := EXCEPTION_LINE.match(line):
            seen[f"{m.group(1)}: {m.group(2)[:90]}"] += 1
    return seen.most_common(top)


def _pool(into: LoadResult, res: LoadResult) -> None:
    """Add a round's samples to the run's (for percentiles of the pooled samples)."""
    into.latencies_ms += res.latencies_ms
    into.created += res.created
    into.elapsed_s += res.elapsed_s
    for k, v in res.errors.items():
        into.errors[k] = into.errors.get(k, 0) + v


def ui_steps(mode: Mode, profile: bool) -> int:
    """How many bars the run shows one after the other (the overall bar's length)."""
    return 8 + 6 * mode.rounds + (2 if profile else 0)


def cpu_ms(reading: dict[str, Any], names: tuple[str, ...]) -> float | None:
    """CPU ms per order of the named processes (`worker` also counts `worker2` ...)."""
    per = reading["cpu_ms_per_order"]
    picked = [v for k, v in per.items() if k.rstrip("0123456789") in names and v is not None]
    return sum(picked) if picked else None


async def tick_seconds(tick: Any, seconds: float) -> None:
    for _ in range(int(seconds)):
        await asyncio.sleep(1)
        tick()
    await asyncio.sleep(seconds - int(seconds))


def rss_slopes(curve: list[dict[str, Any]]) -> dict[str, float | None]:
    """MB per 1,000 more open orders (least squares over the readings)."""
    out: dict[str, float | None] = {}
    for proc in ("worker", "temporal"):
        pts = [(p["open_orders"], p[proc]) for p in curve if p.get(proc) is not None]
        xs = [x for x, _ in pts]
        if len(pts) < 3 or max(xs) - min(xs) < 100:
            out[f"{proc}_mb_per_1k_open"] = None
            continue
        mx, my = sum(xs) / len(xs), sum(y for _, y in pts) / len(pts)
        sxx = sum((x - mx) ** 2 for x in xs)
        out[f"{proc}_mb_per_1k_open"] = sum((x - mx) * (y - my) for x, y in pts) / sxx * 1000
    return out
