"""Figures from alternating rounds: ours and the floor measured back to back, several times in one
run, so the machine's noise (other people's tests, a cache warming up) hits both sides of a ratio
alike, and what remains shows as the spread across rounds instead of hiding in one figure.

Pure arithmetic (tests/test_bench_report.py): the phases hand in each round's raw figures and CPU
readings, this module derives the round's ratios and our own CPU above the floor, then the medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

# Our process -> what it is compared with during the floor's phase. Postgres is compared with
# itself: the floor does not use it, so what it burns then is background (the comparator, the
# bench's own polling) that is no part of our cost either. Temporal is the engine, the same on both
# sides; the gateways and the load generator are not ours.
OWN_PROCESSES = {"worker": "floor-worker", "api": "floor-api", "postgres": "postgres"}

# Figures whose spread across rounds is reported beside their median (`<key>_spread`).
SPREAD_KEYS = (
    "create_throughput_ratio_to_floor",
    "create_p50_ratio_to_floor",
    "create_p50_overhead_ms",
    "storm_drain_ratio_to_floor",
    "lag_p99_ratio_to_cron",
    "own_cpu_ms_per_create",
    "own_cpu_ms_per_expiry",
)


def median_spread(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """The median and the spread (max - min) of the rounds that produced a figure."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.median(xs), max(xs) - min(xs)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def difference(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def process_ms(per_order: dict[str, float | None], name: str) -> float | None:
    """CPU ms per order of one kind of process: `worker` also counts `worker2` ... (--workers N)."""
    picked = [v for k, v in per_order.items() if k.rstrip("0123456789") == name and v is not None]
    return sum(picked) if picked else None


def own_cpu_ms(ours: dict[str, float | None], floor: dict[str, float | None]) -> dict[str, float | None]:
    """Our CPU ms per order above the floor, per process and in total, from the `cpu_ms_per_order`
    of our phase and of the floor's same phase."""
    out = {
        mine: difference(process_ms(ours, mine), process_ms(floor, theirs))
        for mine, theirs in OWN_PROCESSES.items()
    }
    parts = list(out.values())
    out["total"] = sum(p for p in parts if p is not None) if all(p is not None for p in parts) else None
    return out


def own_cpu_figures(key: str, ours: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """`key` (e.g. own_cpu_ms_per_create) and `key_worker`, `key_api`, `key_postgres`."""
    own = own_cpu_ms(ours["cpu_ms_per_order"], floor["cpu_ms_per_order"])
    return {key if part == "total" else f"{key}_{part}": v for part, v in own.items()}


def create_round(row: dict[str, Any], ours_cpu: dict[str, Any], floor_cpu: dict[str, Any]) -> dict[str, Any]:
    """A creates round's derived figures, added to its raw ones (concurrency 1 and 32, both sides)."""
    return {
        **row,
        "create_throughput_ratio_to_floor": ratio(
            row.get("create_throughput_per_s"), row.get("floor_create_throughput_per_s")
        ),
        "create_p50_ratio_to_floor": ratio(row.get("create_p50_ms"), row.get("floor_create_p50_ms")),
        "create_p50_overhead_ms": difference(row.get("create_p50_ms"), row.get("floor_create_p50_ms")),
        **own_cpu_figures("own_cpu_ms_per_create", ours_cpu, floor_cpu),
    }


def storm_round(row: dict[str, Any], ours_cpu: dict[str, Any], floor_cpu: dict[str, Any]) -> dict[str, Any]:
    """A storm round's derived figures: the drain ratio (to the workflows' close on both sides)."""
    return {
        **row,
        "storm_drain_ratio_to_floor": ratio(
            row.get("storm_close_drain_s_per_10k"), row.get("floor_storm_drain_s_per_10k")
        ),
        **own_cpu_figures("own_cpu_ms_per_expiry", ours_cpu, floor_cpu),
    }


def combine(rounds: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> dict[str, float | None]:
    """Each numeric figure's median over the rounds, and for SPREAD_KEYS its spread beside it."""
    keys = dict.fromkeys(k for r in rounds for k, v in r.items() if k not in skip and _number(v))
    out: dict[str, float | None] = {}
    for key in keys:
        median, spread = median_spread(r.get(key) for r in rounds)
        out[key] = median
        if key in SPREAD_KEYS:
            out[f"{key}_spread"] = spread
    return out


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def thirds(items: list[Any], key: Any) -> list[list[Any]]:
    """`items` in `key` order, cut into three consecutive parts (the steady-arrival phase's rounds)."""
    ordered = sorted(items, key=key)
    n = len(ordered)
    return [ordered[i * n // 3 : (i + 1) * n // 3] for i in range(3)]


def median_cpu(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-process CPU readings of one phase over the rounds (measure.cpu_share's shape), as the
    per-process medians; `rounds` says how many."""
    if not readings:
        return {}
    out: dict[str, Any] = {"rounds": len(readings)}
    for part in ("cores_pct", "cpu_ms_per_order"):
        names = dict.fromkeys(n for r in readings for n in r[part])
        out[part] = {n: median_spread(r[part].get(n) for r in readings)[0] for n in names}
    for key in ("host_busy_pct", "foreign_cpu_pct"):
        out[key] = median_spread(r.get(key) for r in readings)[0]
    return out
