"""`python -m bench.run --mode full|quick`: bring up the real stack, measure, report, tear down.

Phases, in order (bench/phases.py; each bounded in time so `full` fits 18 minutes, `quick` 6):
  catalog   products with ample stock, through POST /api/v1/admin/products
  creates   3 rounds, each: concurrency 1 then 32, ours and the floor (bench/floor.py) back to back,
            the side that goes first alternating   -> create_p50_ms, create_p50_overhead_ms,
            create_throughput_*, own_cpu_ms_per_create (+ _worker, _api, _postgres), ratios
  idle      nothing happens                        -> idle_db_queries_per_min
  lifecycle orders created one by one, left to expire -> db_queries_per_order
  expiry    steady arrivals (50/s offered), 5 % paid -> expiry_lag_p50_ms, expiry_lag_p99_ms, history_events_*
  storms    3 rounds of N orders whose windows end together, ours and the floor alternating
            -> storm_*_s_per_10k, own_cpu_ms_per_expiry (+ parts), storm_drain_ratio_to_floor
  profile   with --profile only: one more round of ours, not counted, under py-spy (flame graphs)
  memory    open orders piling up                  -> open_orders, worker_rss_mb, temporal_rss_mb
Each ratio to the floor is the median over the rounds, with its spread (max - min) as `<key>_spread`;
targets: bench/targets.py. The comparator (bench/cron_comparator.py) runs beside them as its own process on its own schema; the
ratios to the floor and to the comparator are computed at the end. The gateways are a process of
their own (devstack/sandbox/app.py), reported apart. `--workers N --api-procs N` scale ours and the
floor alike. Everything started here is stopped on the way out, also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import report
from bench.floor import start_floor
from bench.phases import MODES, Bench, Mode, order_type_durations, ui_steps
from bench.targets import evaluate
from devstack.stack import Stack


class Ui:
    """One bar for the run, one per phase, one per wait for expiries."""

    def __init__(self, mode: Mode, profile: bool) -> None:
        self.console = Console(stderr=True)
        if not self.console.is_terminal:  # a log: room for the summary's columns
            self.console.width = 160
        self.progress = Progress(
            TextColumn("[bold]{task.description:<36}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.overall = self.progress.add_task(f"bench ({mode.name})", total=ui_steps(mode, profile))

    @contextmanager
    def phase(self, name: str, total: float) -> Iterator[Callable[..., None]]:
        size = max(int(total), 1)
        task = self.progress.add_task(name, total=size)
        started = time.monotonic()
        try:
            yield lambda n=1: self.progress.advance(task, n)
        finally:
            self.progress.update(task, completed=size)
            self.progress.advance(self.overall)
            if not self.console.is_terminal:  # a log (CI, make > file) gets one line per phase instead
                self.console.print(f"{name.strip()}: {time.monotonic() - started:.0f} s")

    @contextmanager
    def waiting(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
        task = self.progress.add_task(name, total=max(total, 1))
        try:
            yield lambda pending: self.progress.update(task, completed=max(0, total - pending))
        finally:
            self.progress.stop_task(task)

    def note(self, text: str) -> None:
        self.console.print(f"  [dim]{text}[/dim]")


def bench_stack(
    env: dict[str, str], keep_data: bool, bytecode_cache: bool, workers: int = 1, api_procs: int = 1
) -> Stack:
    """A fresh stack on free ports, its logs beside its data; Postgres preloads pg_stat_statements
    so the phases can count queries. The gateways are a process of their own, as production's are
    somewhere else: their CPU is reported apart from ours."""
    data_dir = Path(tempfile.mkdtemp(prefix="paywindow-bench-"))
    return Stack(
        data_dir,
        env,
        keep_data=keep_data,
        isolated=True,
        log_dir=data_dir,
        pg_settings={"shared_preload_libraries": "pg_stat_statements"},
        bytecode_cache=bytecode_cache,
        gateways_app="devstack.sandbox.app:app_factory",
        workers=workers,
        api_procs=api_procs,
    )


def meta(
    mode: Mode, started: datetime, stack: Stack, pg_version: str | None, extra_env: dict[str, str]
) -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    model = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in cpuinfo.read_text().splitlines()
                if ln.startswith("model name")
            ),
            "",
        )
        if cpuinfo.exists()
        else platform.processor()
    )
    return {
        "mode": mode.name,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": {
            "cpus": psutil.cpu_count(),
            "cpu_model": model,
            "mem_gb": psutil.virtual_memory().total / 2**30,
        },
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "postgres": pg_version,
        "bytecode_cache": stack.bytecode_cache,
        "env": {
            "ORDER_TYPE_DURATIONS": f"normal=15,vip=30,quick=5,hold=240,lag=0.05,life=0.05,"
            f"st1..st{mode.storm_windows} (1 s steps)",
            **{k: v for k, v in stack.env.items() if k != "ORDER_TYPE_DURATIONS"},
        },
        "extra_env": extra_env,
        "mode_settings": {k: v for k, v in asdict(mode).items() if k != "cron"},
        "workers": stack.n_workers,
        "api_procs": stack.api_procs,
    }


def plain(verdict: str) -> str:
    return "[red]missed[/red]" if "missed" in verdict else verdict


def print_summary(console: Console, results: dict[str, Any]) -> None:
    table = Table(title=f"Paywindow bench ({results['meta']['mode']})")
    for col in ("figure", "ours", "floor", "cron", "spread", "target", ""):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for r in report.figure_rows(results):
        table.add_row(
            r["key"], r["ours"], r["floor"], r["cron"], r["spread"], r["target"], plain(r["verdict"])
        )
    for r in report.ratio_rows(results):
        table.add_row(r["key"], r["median"], "", "", r["spread"], r["target"], plain(r["verdict"]))
    console.print(table)
    rounds = results["meta"]["mode_settings"]["rounds"]
    console.print(
        f"  ours and the floor in {rounds} alternating rounds: medians, spread = max - min over them"
    )
    for key, why in results["flags"].items():
        console.print(f"  [yellow]{key}: {why}[/yellow]")


async def pg_version(dsn: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Paywindow benchmark: the real stack on this machine, measured."
    )
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more round of ours only, its creates and its storm's drain sampled with py-spy (flame graphs)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the worker and the API (try a lever without editing code)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep an inherited PYTHONDONTWRITEBYTECODE=1 (the workflow sandbox then recompiles)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (ours and the floor's)")
    parser.add_argument("--api-procs", type=int, default=1, help="API processes (uvicorn --workers)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp DATA_DIR (logs, databases)")
    parser.add_argument("--no-docs", action="store_true", help="write bench/results only, not docs/")
    parser.add_argument(
        "--label",
        help="an experiment: save bench/results/<time>-<mode>-<label>.json only (not latest.json, not docs/)",
    )
    args = parser.parse_args()
    mode = MODES[args.mode]
    extra_env = parse_env(args.env)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started, t0 = datetime.now(UTC), time.monotonic()
    ui = Ui(mode, args.profile)
    env = {
        "ORDER_TYPE_DURATIONS": order_type_durations(mode),
        "ORDER_SESSION_REMINDER_MINUTES": "0",
        "RATE_LIMIT_PER_MINUTE": "0",  # all bench traffic comes from one IP; a per-IP limit would cap it
        **extra_env,
    }
    stack = bench_stack(env, args.keep_data, not args.no_bytecode_cache, args.workers, args.api_procs)
    bench: Bench | None = None
    code = 0
    try:
        with ui.progress:
            with ui.phase("start the stack", 6) as tick:

                def on_step(name: str) -> None:
                    tick()
                    ui.note(f"starting {name}")

                stack.start(on_step=on_step)
                ui.note("starting the floor (bench/floor.py)")
                floor_url = start_floor(stack)
                tick()
            bench = Bench(mode, stack, floor_url, ui, args.profile, deadline=t0 + mode.budget_s - 25)
            results = asyncio.run(bench.run())
            version_pg = asyncio.run(pg_version(stack.database_url))
        results["meta"] = meta(mode, started, stack, version_pg, extra_env)
        results["meta"]["foreign_cpu_pct"] = results.pop("foreign_cpu_pct")
        results["meta"]["duration_s"] = time.monotonic() - t0
        lag_ours = results.pop("lag_samples_ms", [])
        lag_cron = results.get("comparator", {}).pop("steady_lag_samples_ms", [])
        results["meta"]["label"] = args.label
        results["targets"] = evaluate(results["figures"], results["flags"])
        report.keep_profiles(results, args.label)
        path = report.write_json(results, args.label)
        if not (args.no_docs or args.label):
            censored = results["phases"].get("expiry", {}).get("censored")
            note = (
                f"ours: {censored} orders still pending at the cut-off, plotted at cut-off - deadline"
                if censored
                else ""
            )
            report.write_plot(lag_ours, lag_cron, results["figures"], note)
            report.write_markdown(results)
        print_summary(ui.console, results)
        docs = "" if args.no_docs or args.label else f", {report.DOC}, {report.PLOT}"
        ui.console.print(f"wrote {path}{docs}")
    except KeyboardInterrupt:
        ui.console.print("[yellow]interrupted: stopping everything[/yellow]")
        code = 130
    except Exception as err:  # noqa: BLE001 - say what failed, keep partial results, stop everything
        ui.console.print(f"[red]bench failed: {type(err).__name__}: {err}[/red]")
        if bench is not None:
            partial = report.RESULTS / "failed-partial.json"
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(bench.results, indent=2, default=str))
            logs = (
                f"logs in {stack.data_dir}" if args.keep_data else "rerun with --keep-data to keep the logs"
            )
            ui.console.print(f"partial results in {partial}; {logs}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench is not None and bench.cron is not None and bench.cron.poll() is None:
            bench.cron.terminate()
            bench.cron.wait(10)
        stack.stop()
    ui.console.print(f"done in {time.monotonic() - t0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
