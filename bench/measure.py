"""What the bench reads back: orders and stock from Postgres, query counts from pg_stat_statements,
CPU and memory of each process from psutil.

The bench observes as its own Postgres role (`bench_observer`) and the comparator runs as
`cron_job`, so pg_stat_statements (keyed by user) separates the service's statements from ours.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import psutil

OBSERVER_ROLE = "bench_observer"
CRON_ROLE = "cron_job"
# Transaction control is counted by pg_stat_statements (track_utility) but is not a query.
TX_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION")


def as_role(dsn: str, role: str) -> str:
    """postgresql://postgres:@/db?host=... -> the same URL for `role` (trust auth on the socket)."""
    scheme, rest = dsn.split("://", 1)
    _, at, tail = rest.partition("@")
    return f"{scheme}://{role}@{tail}" if at else dsn


async def prepare_database(dsn: str) -> None:
    """The pg_stat_statements view (the server preloads the library) and the bench's roles."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute(f"CREATE ROLE {OBSERVER_ROLE} LOGIN SUPERUSER")
        await conn.execute(f"CREATE ROLE {CRON_ROLE} LOGIN")
        await conn.execute(f"CREATE SCHEMA cron_bench AUTHORIZATION {CRON_ROLE}")
        # The comparator copies the service's table shapes (LIKE ... INCLUDING ALL).
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {CRON_ROLE}")
    finally:
        await conn.close()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def censored_lags_ms(rows: list[OrderRow], cutoff: datetime) -> tuple[list[float], int]:
    """Deadline -> ended_at for every order that reached its deadline. One still pending at the
    cut-off counts with (cut-off - deadline), a lower bound, so a stuck tail cannot hide."""
    lags, censored = [], 0
    for r in rows:
        if r.status == "expired" and r.ended_at is not None:
            lags.append((r.ended_at - r.expires_at).total_seconds() * 1000)
        elif r.status == "pending_payment" and r.expires_at <= cutoff:
            lags.append((cutoff - r.expires_at).total_seconds() * 1000)
            censored += 1
    return lags, censored


def summary(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
    }


@dataclass
class OrderRow:
    id: str
    status: str
    order_type: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None


class Observer:
    def __init__(self, dsn: str) -> None:
        self.dsn = as_role(dsn, OBSERVER_ROLE)
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None
        return self.conn

    async def orders(self, order_types: list[str], ids: list[str] | None = None) -> list[OrderRow]:
        """The orders of these types (and, given `ids`, only those: one round's storm)."""
        rows = await self.c.fetch(
            """
            SELECT o.id::text, o.status, o.order_type, o.created_at, s.expires_at, o.ended_at
            FROM "order" o JOIN order_session s ON s.order_id = o.id
            WHERE o.order_type = ANY($1::text[]) AND ($2::uuid[] IS NULL OR o.id = ANY($2::uuid[]))
            """,
            order_types,
            ids,
        )
        return [OrderRow(*r) for r in rows]

    async def pending(self, order_types: list[str], ids: list[str] | None = None) -> int:
        return await self.c.fetchval(
            """SELECT count(*) FROM "order" WHERE order_type = ANY($1::text[]) AND status = 'pending_payment'
               AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))""",
            order_types,
            ids,
        )

    async def wait_all_ended(
        self,
        order_types: list[str],
        timeout_s: float,
        *,
        last_deadline: float,
        stall_s: float,
        poll_s: float = 0.2,
        on_poll: Callable[[int], None] = lambda _: None,
        ids: list[str] | None = None,
    ) -> int:
        """Poll until no order of these types is pending, `timeout_s` passes, or nothing has ended
        for `stall_s` once every deadline (`last_deadline`, wall clock) is `stall_s` behind us:
        orders held past their deadline (a grace, a stuck worker) should not eat the run's time.
        Returns how many are still pending (of `ids` only, when given)."""
        deadline = time.monotonic() + timeout_s
        left = await self.pending(order_types, ids)
        changed = time.monotonic()
        on_poll(left)
        while left and time.monotonic() < deadline:
            if time.time() > last_deadline + stall_s and time.monotonic() - changed > stall_s:
                break
            await asyncio.sleep(poll_s)
            now_left = await self.pending(order_types, ids)
            if now_left != left:
                changed = time.monotonic()
            left = now_left
            on_poll(left)
        return left

    async def open_orders(self) -> int:
        return await self.c.fetchval("""SELECT count(*) FROM "order" WHERE status = 'pending_payment'""")

    async def stock_conserved(
        self, variant_ids: list[str], order_types: list[str], stock0: int, ids: list[str] | None = None
    ) -> bool:
        """On hand + units held by pending or paid orders (of `ids` only, when given: the orders
        made since `stock0` was read) = the initial stock. One statement, so one snapshot: read
        while orders are still expiring, the two halves cannot disagree."""
        stock, held = await self.c.fetchrow(
            """
            SELECT (SELECT coalesce(sum(stock_quantity), 0) FROM product_variant WHERE id = ANY($1::uuid[])),
                   (SELECT coalesce(sum(i.quantity), 0) FROM "order" o JOIN order_item i ON i.order_id = o.id
                    WHERE o.order_type = ANY($2::text[]) AND o.status IN ('pending_payment', 'paid')
                      AND i.variant_id = ANY($1::uuid[]) AND ($3::uuid[] IS NULL OR o.id = ANY($3::uuid[])))
            """,
            variant_ids,
            order_types,
            ids,
        )
        return stock + held == stock0

    async def stock(self, variant_ids: list[str]) -> int:
        return await self.c.fetchval(
            "SELECT coalesce(sum(stock_quantity), 0) FROM product_variant WHERE id = ANY($1::uuid[])",
            variant_ids,
        )

    async def reset_statements(self) -> None:
        await self.c.execute("SELECT pg_stat_statements_reset()")

    async def statements(self) -> list[dict[str, Any]]:
        """The service's statements since the last reset (the bench's and the comparator's left out)."""
        rows = await self.c.fetch(
            """
            SELECT s.query, s.calls, s.total_exec_time, s.rows
            FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
            WHERE r.rolname NOT IN ($1, $2) AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            OBSERVER_ROLE,
            CRON_ROLE,
        )
        return [dict(r) for r in rows]


def count_statements(rows: list[dict[str, Any]]) -> dict[str, float]:
    calls = sum(r["calls"] for r in rows)
    tx = sum(r["calls"] for r in rows if r["query"].lstrip().upper().startswith(TX_CONTROL))
    commits = sum(r["calls"] for r in rows if r["query"].lstrip().upper().startswith("COMMIT"))
    exec_ms = sum(r["total_exec_time"] for r in rows)
    return {"statements": calls, "queries": calls - tx, "commits": commits, "exec_ms": exec_ms}


def top_statements(rows: list[dict[str, Any]], per: int, limit: int = 12) -> list[dict[str, Any]]:
    """The heaviest statements by calls, per order, with their first line (for the doc)."""
    out = []
    for r in sorted(rows, key=lambda r: (-r["calls"], -r["total_exec_time"]))[:limit]:
        text = " ".join(r["query"].split())
        out.append(
            {
                "query": text[:110],
                "calls": r["calls"],
                "calls_per_order": round(r["calls"] / per, 2),
                "ms_per_call": round(r["total_exec_time"] / r["calls"], 3) if r["calls"] else None,
            }
        )
    return out


# ---- processes ---------------------------------------------------------------------------------


class Processes:
    """CPU seconds and memory of the stack's processes, each with its children (Postgres = the
    postmaster + its backends; an API served by uvicorn --workers = the master + its workers)."""

    def __init__(self, pids: dict[str, int], postmaster_pid: int | None) -> None:
        self.procs: dict[str, psutil.Process] = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None
        self.me = psutil.Process()

    def _cpu(self, p: psutil.Process, with_children: bool = False) -> float:
        try:
            t = p.cpu_times()
        except psutil.Error:
            return 0.0
        total = t.user + t.system
        if with_children:
            total += t.children_user + t.children_system
        return total

    @staticmethod
    def _tree(p: psutil.Process) -> list[psutil.Process]:
        try:
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return [p]

    def cpu(self) -> dict[str, float]:
        out = {name: sum(self._cpu(c) for c in self._tree(p)) for name, p in self.procs.items()}
        if self.postmaster is not None:
            pg = self._cpu(self.postmaster, with_children=True)
            try:
                pg += sum(self._cpu(c) for c in self.postmaster.children())
            except psutil.Error:
                pass
            out["postgres"] = pg
        out["bench"] = self._cpu(self.me)  # the load generator (this process)
        host = psutil.cpu_times()
        out["_host_busy"] = (
            host.user + host.system + host.nice + getattr(host, "irq", 0) + getattr(host, "softirq", 0)
        )
        return out

    def rss_mb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, p in self.procs.items():
            try:
                out[name] = sum(c.memory_info().rss for c in self._tree(p)) / 2**20
            except psutil.Error:
                pass
        return out


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float, per: int) -> dict[str, Any]:
    """CPU used by each process over a phase: % of one core, and ms of CPU per order."""
    out: dict[str, Any] = {"cores_pct": {}, "cpu_ms_per_order": {}}
    ours = 0.0
    for name, value in after.items():
        if name.startswith("_"):
            continue
        used = value - before.get(name, 0.0)
        ours += used
        out["cores_pct"][name] = round(used / seconds * 100, 1) if seconds else None
        out["cpu_ms_per_order"][name] = round(used * 1000 / per, 2) if per > 0 else None
    host = after["_host_busy"] - before["_host_busy"]
    foreign = max(0.0, host - ours)
    out["host_busy_pct"] = round(host / seconds / psutil.cpu_count() * 100, 1) if seconds else None
    out["foreign_cpu_pct"] = round(foreign / seconds * 100, 1) if seconds else None
    return out
