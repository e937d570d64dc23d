"""Where the time goes: in a create call, in an expiry, and in each process's CPU.

- Workflow histories (server timestamps of every event) split a create into: start -> first
  workflow task picked up, that task (which runs the local activity `create_order`), the
  `create_payment_link` activity (queue wait, run incl. the sandbox HTTP call), the second
  workflow task, the update's completion. The client-side latency minus all that is the API's
  own share (HTTP, auth, the start RPC, reading the order back). Same for an expiry: timer fired
  -> workflow task -> `transition_order` activity -> done.
- Direct timings from the bench process: the cost of an `httpx.AsyncClient()` (what each gateway
  call pays) and an HTTP round trip to the sandbox on a kept-alive connection.
- Optional py-spy sampling (`--profile`) of the worker and the API, bucketed into named costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.measure import summary
from domain.ids import workflow_id

E = EventType


def _ms(a: float | None, b: float | None) -> float | None:
    return (b - a) * 1000 if a is not None and b is not None else None


Event = tuple[int, float, str]  # (event type, wall time, activity type of an activity or local activity)


def _events(history: Any) -> list[Event]:
    """Events with their server time; a local activity's marker is timed at its own completion
    (the marker's `completeTime`), so its run can be told apart from the workflow task around it."""
    out = []
    for e in history.events:
        t, name = e.event_time.ToDatetime().timestamp(), ""
        if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == E.EVENT_TYPE_MARKER_RECORDED:
            name, t = _local_activity(e, t)
        out.append((e.event_type, t, name))
    return out


def _local_activity(event: Any, default_t: float) -> tuple[str, float]:
    try:
        data = json.loads(event.marker_recorded_event_attributes.details["data"].payloads[0].data)
    except (KeyError, IndexError, ValueError):
        return "", default_t  # not a local activity's marker (e.g. a patch)
    name = data.get("activity_type") or data.get("activityType") or ""
    done = data.get("complete_time") or data.get("completeTime")
    if isinstance(done, dict):  # {"seconds": ..., "nanos": ...}
        return name, int(done.get("seconds", 0)) + int(done.get("nanos", 0)) / 1e9
    if isinstance(done, str):
        return name, datetime.fromisoformat(done).timestamp()
    return name, default_t


def _first(events: list[Event], kind: int, after: float = 0.0) -> float | None:
    return next((t for k, t, _ in events if k == kind and t >= after), None)


def create_phases(events: list[Event]) -> dict[str, float | None]:
    """From the start to the `created` update's completion: the wait for each workflow task, its
    run split into the local activities inside it and the rest (sandbox, workflow code, payloads),
    and each activity (queue wait, run), in the order the workflow ran them."""
    started = _first(events, E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    update_done = _first(events, E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    row: dict[str, float | None] = {}
    runs: dict[int, float] = {}
    in_las: dict[int, float] = {}
    n, wft_scheduled, wft_started, last_la = 0, started, 0.0, 0.0
    act_name, act_scheduled, act_started = "", 0.0, 0.0
    for kind, t, name in events:
        if update_done is not None and t > update_done and kind != E.EVENT_TYPE_MARKER_RECORDED:
            break
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft_scheduled = t
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            n += 1
            wft_started = last_la = t
            row[f"workflow task {n}: wait"] = _ms(wft_scheduled, t)
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            runs[n] = (t - wft_started) * 1000
            row[f"workflow task {n}: run"] = runs[n]
        elif kind == E.EVENT_TYPE_MARKER_RECORDED and name:  # recorded after its task completed
            took = max(0.0, (t - last_la) * 1000)
            row[f"  local activity {name} (in task {n})"] = took
            in_las[n] = in_las.get(n, 0.0) + took
            last_la = max(last_la, t)
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            act_name, act_scheduled = name, t
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            act_started = t
            row[f"activity {act_name}: queue wait"] = _ms(act_scheduled, t)
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            row[f"activity {act_name}: run"] = _ms(act_started, t)
    for k, run in runs.items():
        if k in in_las:
            row[f"  task {k} outside its local activities (sandbox, workflow code, payloads)"] = (
                run - in_las[k]
            )
    row["in Temporal + worker (start -> update completed)"] = _ms(started, update_done)
    return row


def expiry_phases(events: list[Event], deadline: float, ended: float) -> dict[str, float | None]:
    """From the deadline to the commit that expired the order: the timer, the workflow tasks
    (summed; a replay when the workflow was not cached happens inside them) and each activity
    on the way, named as the workflow schedules them (e.g. a reconcile query, then the transition)."""
    fired = _first(events, E.EVENT_TYPE_TIMER_FIRED, deadline - 1)
    row: dict[str, float | None] = {"deadline -> timer fired": _ms(deadline, fired)}
    wft_sum, wft_scheduled, last_la = 0.0, None, 0.0
    act_name, act_scheduled, act_started = "", 0.0, 0.0
    for kind, t, name in events:
        if fired is None or t < fired:
            continue
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft_scheduled = t
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            last_la = t
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and wft_scheduled is not None:
            wft_sum += t - wft_scheduled
        elif kind == E.EVENT_TYPE_MARKER_RECORDED and name:
            row[f"local activity {name}"] = _ms(last_la, t)
            last_la = max(last_la, t)
            if t >= ended:  # the local activity whose commit expired the order
                break
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            act_name, act_scheduled = name, t
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            act_started = t
            row[f"activity {act_name}: queue wait"] = _ms(act_scheduled, t)
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            if act_started <= ended <= t:  # the activity whose commit expired the order
                row[f"activity {act_name}: start -> commit (ended_at)"] = _ms(act_started, ended)
                break
            row[f"activity {act_name}: run"] = _ms(act_started, t)
    row["workflow tasks after the timer (scheduled -> completed, summed)"] = wft_sum * 1000 if fired else None
    row["deadline -> ended_at"] = _ms(deadline, ended)
    return row


async def histories(address: str, order_ids: list[str]) -> dict[str, list[Event]]:
    client = await Client.connect(address)
    out: dict[str, list[Event]] = {}
    for oid in order_ids:
        with contextlib.suppress(Exception):  # a history we cannot read only shrinks the sample
            out[oid] = _events(await client.get_workflow_handle(workflow_id(oid)).fetch_history())
    return out


def medians(rows: list[dict[str, float | None]]) -> dict[str, dict[str, Any]]:
    keys = list(dict.fromkeys(k for r in rows for k in r))  # every step seen, in order
    return {k: summary([v for r in rows if (v := r.get(k)) is not None]) for k in keys}


async def direct_timings(base_url: str, samples: int = 30) -> dict[str, Any]:
    """What a gateway call costs before it sends a byte, and the sandbox's HTTP floor."""
    ctor = []
    for _ in range(samples):
        t0 = time.perf_counter()
        async with httpx.AsyncClient(timeout=35):
            pass
        ctor.append((time.perf_counter() - t0) * 1000)
    rtt = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for _ in range(samples):
            t0 = time.perf_counter()
            await client.post("/sandbox/momo/v2/gateway/api/create", json={})  # refused (resultCode 20), fast
            rtt.append((time.perf_counter() - t0) * 1000)
    return {
        "httpx_AsyncClient_new_ms": summary(ctor),
        "sandbox_http_roundtrip_keepalive_ms": summary(rtt),
    }


# ---- py-spy ---------------------------------------------------------------------------------------

# Leaf frames of a thread or loop that is waiting, not working: left out of the shares.
IDLE_LEAVES = (
    ".select (selectors.py",
    "Condition.wait",
    "Runner.run (asyncio/runners.py",
    "Queue.get",
    "_worker (concurrent/futures/thread.py",
)
# (label, needles, how): "any" = some frame of the stack matches (a cost defined by its caller);
# "near" = the frame nearest the leaf that matches any "near" bucket decides (where CPU is spent);
# "last" = like "near", for generic frames (event loop) only when no library frame matched.
Bucket = tuple[str, tuple[str, ...], str]
WORKER_BUCKETS: tuple[Bucket, ...] = (
    (
        "TLS context per gateway call (new httpx.AsyncClient)",
        ("create_ssl_context", "create_default_context"),
        "any",
    ),
    ("workflow sandbox: re-import workflow modules per instance", ("_Instance._create_instance",), "any"),
    ("pydantic converter: build TypeAdapter", ("TypeAdapter.__init__",), "any"),
    ("SQL (SQLAlchemy + asyncpg)", ("sqlalchemy/", "asyncpg/"), "near"),
    ("HTTP client (httpx/httpcore)", ("httpx/", "httpcore/"), "near"),
    (
        "payload conversion (pydantic JSON)",
        ("temporalio/converter", "temporalio/contrib/pydantic", "pydantic"),
        "near",
    ),
    (
        "workflow code / activation (sandbox)",
        ("workflows/", "_workflow_instance.py", "workflow_sandbox"),
        "near",
    ),
    ("Temporal SDK (bridge, activity/workflow workers)", ("temporalio/",), "near"),
    (
        "event loop, threads (no library frame above)",
        ("asyncio/", "concurrent/futures", "threading.py"),
        "last",
    ),
)
API_BUCKETS: tuple[Bucket, ...] = (
    ("SQL (SQLAlchemy + asyncpg)", ("sqlalchemy/", "asyncpg/"), "near"),
    ("Temporal client (update-with-start RPC)", ("temporalio/",), "near"),
    ("gateway sandbox handlers", ("devstack/sandbox",), "near"),
    ("JWT auth", ("jwt/",), "near"),
    ("pydantic validation / serialisation", ("pydantic", "json/"), "near"),
    ("FastAPI / Starlette routing, middleware", ("fastapi/", "starlette/", "api/"), "near"),
    ("uvicorn / httptools / asyncio", ("uvicorn/", "httptools", "asyncio/", "anyio/"), "last"),
)


def _classify(frames: list[str], buckets: tuple[Bucket, ...]) -> str:
    for label, needles, how in buckets:
        if how == "any" and any(n in f for f in frames for n in needles):
            return label
    for kind in ("near", "last"):
        for frame in reversed(frames):  # leaf first
            for label, needles, how in buckets:
                if how == kind and any(n in frame for n in needles):
                    return label
    return "other"


def pyspy_available() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )


def start_pyspy(pid: int, out: Path, max_s: float = 900) -> subprocess.Popen | None:
    """A flame graph of `pid` (and its children: uvicorn --workers) from now until stop_pyspy;
    `max_s` only bounds a sampler nobody stopped. Function names without line numbers, so one
    function's samples add up in one frame."""
    exe = pyspy_available()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(int(max_s)),
            "--rate",
            "100",
            "--format",
            "flamegraph",
            "--nolineno",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def stop_pyspy(procs: list[subprocess.Popen | None], timeout: float = 20) -> None:
    """Stop the samplers (SIGINT: py-spy writes its file and exits), waiting for the files."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
    await wait_procs(procs, timeout)


FRAME = re.compile(
    r'<title>(?P<title>[^<]*)</title><rect [^>]*?y="(?P<y>[\d.]+)"[^>]*?fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"'
)
PROCESS_FRAME = re.compile(r'^process \d+:"')  # the root py-spy --subprocesses puts above each process
TITLE = re.compile(r"^(?P<name>.*) \([\d,]+ samples?, [\d.]+%\)$")


def svg_stacks(svg: str) -> list[tuple[list[str], int]]:
    """The collapsed stacks inside a py-spy (inferno) flame graph: each frame's path from the root
    and its self samples (its width minus its children's). Frames are rows (their `y`) and
    sample ranges (`fg:x`, `fg:w`); a frame's parent is the one a row up whose range holds it."""
    frames = []
    for m in FRAME.finditer(svg):
        t = TITLE.match(html.unescape(m["title"]))
        frames.append((float(m["y"]), int(m["x"]), int(m["w"]), t["name"] if t else m["title"]))
    rows = sorted({y for y, *_ in frames})
    by_row: list[list[tuple[int, int, str, int]]] = [[] for _ in rows]  # (x, w, name, index)
    for i, (y, x, w, name) in enumerate(frames):
        by_row[rows.index(y)].append((x, w, name, i))
    path: dict[int, list[str]] = {}
    self_w = {i: w for i, (_, _, w, _) in enumerate(frames)}
    for depth, row in enumerate(by_row):
        for x, w, name, i in row:
            parent = (
                next((j for px, pw, _, j in by_row[depth - 1] if px <= x < px + pw), None) if depth else None
            )
            path[i] = ([*path[parent]] if parent is not None else []) + [name]
            if parent is not None:
                self_w[parent] -= w
    # The root ("all") is py-spy's total, not a frame of the program.
    return [(p[1:], self_w[i]) for i, p in path.items() if len(p) > 1 and self_w[i] > 0]


def profile_summary(svg: Path, buckets: tuple[Bucket, ...], top: int = 10) -> dict[str, Any]:
    """From a flame graph: busy samples, their share per named cost (first matching bucket wins),
    and the `top` most expensive frames by self samples, with their inclusive share beside."""
    if not svg.exists():
        return {}
    counts: Counter[str] = Counter()
    self_frames: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = no_python = 0
    for frames, n in svg_stacks(svg.read_text()):
        stack = [f for f in frames if not PROCESS_FRAME.match(f)]
        if not stack:  # a process's own line (--subprocesses): samples without a Python frame
            no_python += n
            continue
        leaf = stack[-1]
        if not leaf.strip() or any(x in leaf for x in IDLE_LEAVES):
            idle += n
            continue
        total += n
        self_frames[leaf] += n
        for name in set(stack):
            inclusive[name] += n
        counts[_classify(stack, buckets)] += n
    if not total:
        return {"samples": 0, "idle_samples_left_out": idle, "no_python_frame_samples": no_python}
    return {
        "samples": total,
        "idle_samples_left_out": idle,
        "no_python_frame_samples": no_python,
        "share_pct": {k: round(v / total * 100, 1) for k, v in counts.most_common()},
        "top_frames": [
            {
                "frame": f,
                "self_samples": v,
                "self_pct": round(v / total * 100, 1),
                "total_pct": round(inclusive[f] / total * 100, 1),
            }
            for f, v in self_frames.most_common(top)
        ],
    }


async def wait_procs(procs: list[subprocess.Popen | None], timeout: float) -> None:
    end = time.monotonic() + timeout
    for p in procs:
        if p is None:
            continue
        while p.poll() is None and time.monotonic() < end:
            await asyncio.sleep(0.2)
        if p.poll() is None:
            p.terminate()


def workflow_tasks(events: list[Event]) -> int:
    """Workflow tasks the order's history took (each a round trip through the server)."""
    return sum(1 for kind, _, _ in events if kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
