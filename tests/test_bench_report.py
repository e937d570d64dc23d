"""The bench's pure arithmetic: medians and spreads over alternating rounds, our own CPU above the
floor, target verdicts, and the frames read back from a py-spy flame graph. No stack needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import breakdown, report, rounds
from bench.targets import TARGETS, evaluate, met


def test_median_and_spread_over_rounds() -> None:
    assert rounds.median_spread([0.8, 0.7, 0.9]) == (0.8, pytest.approx(0.2))
    assert rounds.median_spread([1.0, 2.0, 3.0, 10.0]) == (2.5, 9.0)  # even count: the middle two
    assert rounds.median_spread([None, 4.0, 6.0]) == (5.0, 2.0)  # a round without the figure is left out
    assert rounds.median_spread([None, None]) == (None, None)


def test_combine_gives_medians_and_spreads_beside_the_ratios() -> None:
    rows = [
        {"round": 1, "first": "ours", "create_throughput_ratio_to_floor": 0.70, "create_p50_ms": 30.0},
        {"round": 2, "first": "floor", "create_throughput_ratio_to_floor": 0.90, "create_p50_ms": 50.0},
        {"round": 3, "first": "ours", "create_throughput_ratio_to_floor": 0.75, "create_p50_ms": 31.0},
    ]
    out = rounds.combine(rows, skip=("round",))
    assert out["create_throughput_ratio_to_floor"] == 0.75  # a median, not the mean (0.783)
    assert out["create_throughput_ratio_to_floor_spread"] == pytest.approx(0.20)
    assert out["create_p50_ms"] == 31.0
    assert "create_p50_ms_spread" not in out  # spreads only for the ratios and our own costs
    assert "round" not in out and "first" not in out


# cpu_ms_per_order of a phase of ours and of the floor's same phase (measure.cpu_share's shape)
OURS_CPU = {
    "worker": 10.0,
    "worker2": 2.0,  # --workers 2: both are the worker
    "api": 5.0,
    "postgres": 4.0,
    "temporal": 20.0,  # the engine: the same on both sides, not ours
    "gateways": 1.0,  # not ours
    "bench": 3.0,  # the load generator: not ours
    "floor-worker": 0.1,
    "floor-api": 0.0,
}
FLOOR_CPU = {
    "worker": 0.2,
    "api": 0.1,
    "postgres": 0.5,  # background (the comparator, the bench's polling): taken off ours
    "temporal": 19.0,
    "gateways": 0.0,
    "bench": 3.5,
    "floor-worker": 6.0,
    "floor-api": 2.0,
}


def test_own_cpu_is_ours_minus_the_floor_per_process() -> None:
    own = rounds.own_cpu_ms(OURS_CPU, FLOOR_CPU)
    assert own["worker"] == pytest.approx(12.0 - 6.0)
    assert own["api"] == pytest.approx(5.0 - 2.0)
    assert own["postgres"] == pytest.approx(4.0 - 0.5)
    assert own["total"] == pytest.approx(6.0 + 3.0 + 3.5)  # Temporal, gateways, bench left out


def test_own_cpu_is_missing_when_a_process_was_not_read() -> None:
    own = rounds.own_cpu_ms({k: v for k, v in OURS_CPU.items() if k != "api"}, FLOOR_CPU)
    assert own["api"] is None and own["total"] is None


def test_a_create_round_derives_its_ratios_overhead_and_own_cpu() -> None:
    row = {
        "create_p50_ms": 45.0,
        "floor_create_p50_ms": 35.0,
        "create_throughput_per_s": 36.0,
        "floor_create_throughput_per_s": 45.0,
    }
    out = rounds.create_round(row, {"cpu_ms_per_order": OURS_CPU}, {"cpu_ms_per_order": FLOOR_CPU})
    assert out["create_throughput_ratio_to_floor"] == pytest.approx(0.8)
    assert out["create_p50_ratio_to_floor"] == pytest.approx(45 / 35)
    assert out["create_p50_overhead_ms"] == pytest.approx(10.0)
    assert out["own_cpu_ms_per_create"] == pytest.approx(12.5)
    assert out["own_cpu_ms_per_create_worker"] == pytest.approx(6.0)
    assert out["own_cpu_ms_per_create_postgres"] == pytest.approx(3.5)


def test_a_storm_round_compares_the_drains_to_the_workflows_close() -> None:
    row = {
        "storm_drain_s_per_10k": 150.0,
        "storm_close_drain_s_per_10k": 160.0,
        "floor_storm_drain_s_per_10k": 128.0,
    }
    out = rounds.storm_round(row, {"cpu_ms_per_order": OURS_CPU}, {"cpu_ms_per_order": FLOOR_CPU})
    assert out["storm_drain_ratio_to_floor"] == pytest.approx(1.25)
    assert out["own_cpu_ms_per_expiry_api"] == pytest.approx(3.0)


def test_cpu_readings_over_rounds_become_per_process_medians() -> None:
    readings = [
        {
            "cores_pct": {"worker": p},
            "cpu_ms_per_order": {"worker": p / 10},
            "host_busy_pct": p,
            "foreign_cpu_pct": 1,
        }
        for p in (50.0, 70.0, 60.0)
    ]
    out = rounds.median_cpu(readings)
    assert out["cores_pct"]["worker"] == 60.0 and out["cpu_ms_per_order"]["worker"] == 6.0
    assert out["rounds"] == 3


def test_thirds_are_consecutive_parts_in_order() -> None:
    parts = rounds.thirds([5, 1, 4, 2, 3, 6, 7], key=lambda x: x)
    assert parts == [[1, 2], [3, 4], [5, 6, 7]]


def test_targets_are_issue_19s_and_the_absolute_ones_are_gone() -> None:
    assert TARGETS["own_cpu_ms_per_create"] == ("<=", 6)
    assert TARGETS["own_cpu_ms_per_expiry"] == ("<=", 4)
    assert TARGETS["create_p50_overhead_ms"] == ("<=", 8)
    assert TARGETS["create_throughput_ratio_to_floor"] == (">=", 0.85)
    assert TARGETS["storm_drain_ratio_to_floor"] == ("<=", 1.1)
    assert TARGETS["lag_p99_ratio_to_cron"] == (">=", 30)
    assert TARGETS["db_queries_per_order"] == ("<=", 8)
    assert TARGETS["idle_db_queries_per_min"] == ("<=", 0)
    for withdrawn in (
        "create_throughput_per_s",
        "create_p50_ms",
        "storm_drain_s_per_10k",
        "expiry_lag_p99_ms",
    ):
        assert withdrawn not in TARGETS


def test_target_verdicts() -> None:
    assert met(5.9, "<=", 6) is True and met(6.1, "<=", 6) is False
    assert met(0.85, ">=", 0.85) is True and met(0.84, ">=", 0.85) is False
    figures = {
        "own_cpu_ms_per_create": 10.4,
        "own_cpu_ms_per_expiry": 3.5,
        "create_throughput_ratio_to_floor": 0.9,
        "idle_db_queries_per_min": 0.0,
        "db_queries_per_order": 7.0,
    }
    out = evaluate(figures, flags={"db_queries_per_order": "5 of 25 orders had not expired"})
    assert out["own_cpu_ms_per_create"]["met"] is False
    assert out["own_cpu_ms_per_expiry"]["met"] is True
    assert out["create_throughput_ratio_to_floor"]["met"] is True
    assert out["idle_db_queries_per_min"]["met"] is True
    assert out["storm_drain_ratio_to_floor"]["met"] is None  # no figure
    assert out["db_queries_per_order"]["met"] is None  # a bound cannot prove a target met


def test_the_printed_rows_carry_spread_target_and_verdict() -> None:
    results = {
        "figures": {"own_cpu_ms_per_create": 10.4, "own_cpu_ms_per_create_spread": 1.2},
        "flags": {},
    }
    row = next(r for r in report.figure_rows(results) if r["key"] == "own_cpu_ms_per_create")
    assert (row["ours"], row["spread"], row["target"], row["verdict"]) == (
        "10.4 ms",
        "1.20 ms",
        "<= 6.00 ms",
        "**missed**",
    )
    shown = {r["key"] for r in report.figure_rows(results)} | {r["key"] for r in report.ratio_rows(results)}
    assert set(TARGETS) <= shown  # every target is in the table


# A py-spy flame graph cut to its frames: all (10) -> main (10) -> work (7) -> leaf (4); main's
# own 3 samples and work's own 3 are self time; a second stack main -> select (idle). py-spy
# --subprocesses puts a process's line above its frames: left out, as are its own samples.
SVG = """<svg><svg id="frames" total_samples="14">
<g><title>all (14 samples, 100%)</title><rect x="0%" y="52" width="100%" height="15" fill="r" fg:x="0" fg:w="14"/></g>
<g><title>process 7:&quot;python worker.py&quot; (14 samples, 100%)</title><rect x="0%" y="68" width="100%" height="15" fill="r" fg:x="0" fg:w="14"/></g>
<g><title>main (app.py) (12 samples, 85.71%)</title><rect x="0%" y="84" width="85%" height="15" fill="r" fg:x="0" fg:w="12"/></g>
<g><title>work (app.py) (7 samples, 50%)</title><rect x="0%" y="100" width="50%" height="15" fill="r" fg:x="0" fg:w="7"/></g>
<g><title>EpollSelector.select (selectors.py) (2 samples, 14.29%)</title><rect x="50%" y="100" width="14%" height="15" fill="r" fg:x="7" fg:w="2"/></g>
<g><title>leaf &lt;x&gt; (lib.py) (4 samples, 28.57%)</title><rect x="0%" y="116" width="28%" height="15" fill="r" fg:x="0" fg:w="4"/></g>
</svg></svg>"""


def test_flame_graph_frames_are_read_back_with_their_self_samples() -> None:
    stacks = sorted(breakdown.svg_stacks(SVG), key=lambda s: (-s[1], len(s[0])))
    proc = 'process 7:"python worker.py"'
    assert stacks == [
        ([proc, "main (app.py)", "work (app.py)", "leaf <x> (lib.py)"], 4),
        ([proc, "main (app.py)"], 3),
        ([proc, "main (app.py)", "work (app.py)"], 3),
        ([proc], 2),
        ([proc, "main (app.py)", "EpollSelector.select (selectors.py)"], 2),
    ]


def test_profile_summary_ranks_frames_by_self_time_and_leaves_idle_out(tmp_path: Path) -> None:
    svg = tmp_path / "flame.svg"
    svg.write_text(SVG)
    out = breakdown.profile_summary(svg, breakdown.WORKER_BUCKETS)
    assert out["samples"] == 10 and out["idle_samples_left_out"] == 2 and out["no_python_frame_samples"] == 2
    top = out["top_frames"]
    assert [t["frame"] for t in top] == ["leaf <x> (lib.py)", "main (app.py)", "work (app.py)"]
    assert top[0]["self_pct"] == 40.0 and top[2]["total_pct"] == 70.0
