"""The comparator: expiry by a job that polls Postgres every minute (the usual cron design), run in
the same bench on the same Postgres.

The job runs every minute (`cron.schedule('* * * * *')`): find `active` sessions with
`expiresAt <= now` (Prisma `findMany` with `include: {order: true}`, i.e. two queries), then for
each one, one statement at a time: mark the session `expired`, and if the order is still pending
mark it `expired` too and restore the stock (`OrderInventoryService.restoreStock`: read the
order's items, give each variant its quantity back). That is what `tick()` does, faithfully: no
batching, no transaction around an order's statements, the pending check on the order as read
by the find.

It works on its own copies of the service's tables (`cron_bench.*`, created `LIKE public.*`),
filled directly by SQL with the same deadline distribution the bench gives our orders, so it
never touches the service's rows. Ticks are every `interval_s` from the moment the rows are in
(the phase of a wall-clock cron against the deadlines is random anyway; a storm's deadline is
placed half an interval before a tick, the median wait).

Run as a child process of bench/run.py (its own event loop, so its ticks cannot stall the load
generator's timers):  python -m bench.cron_comparator --dsn DSN --plan JSON --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.measure import CRON_ROLE, as_role, summary

TABLES = ("product", "product_variant", "order", "order_item", "order_session")
WINDOW_S = 3  # the same 3-second window our steady-arrival orders get


@dataclass
class Plan:
    interval_s: float = 60.0
    steady_count: int = 3000  # deadlines evenly spread over the first interval (50/s)
    storm_count: int = 2000  # one shared deadline
    storm_offset_s: float = 30.0  # half an interval before the tick that will find them
    ticks: int = 1


@dataclass
class TickLog:
    at: float
    found: int
    statements: int
    seconds: float


@dataclass
class Outcome:
    plan: Plan
    steady_lag_ms: list[float] = field(default_factory=list)
    storm_deadline: float = 0.0
    storm_tick_at: float = 0.0
    storm_first_done: float = 0.0
    storm_last_done: float = 0.0
    storm_done: int = 0
    ticks: list[TickLog] = field(default_factory=list)
    statements_for_rows: int = 0
    rows_expired: int = 0
    stock_restored: bool = False
    pg_ended_lag_ms_p50: float | None = None


class CronJob:
    def __init__(self, dsn: str, plan: Plan) -> None:
        self.dsn = as_role(dsn, CRON_ROLE)
        self.plan = plan
        self.conn: asyncpg.Connection | None = None
        self.done_at: dict[str, float] = {}  # order id -> wall time its stock was back
        self.statements = 0

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None
        return self.conn

    async def _run(self, sql: str, *args: Any) -> str:
        self.statements += 1
        return await self.c.execute(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements += 1
        return await self.c.fetch(sql, *args)

    # ---- setup -------------------------------------------------------------------------------

    async def setup(self, t0: float) -> dict[str, Any]:
        """Tables shaped like the service's, a catalog, orders with reserved stock, sessions."""
        self.conn = await asyncpg.connect(self.dsn)
        for table in TABLES:
            await self.c.execute(f'CREATE TABLE cron_bench."{table}" (LIKE public."{table}" INCLUDING ALL)')
        variants = 10
        stock = 10_000_000
        await self.c.execute(
            """
            INSERT INTO cron_bench.product (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'cron bench');
            INSERT INTO cron_bench.product_variant (id, product_id, sku, name, price, stock_quantity)
            SELECT gen_random_uuid(), '00000000-0000-4000-8000-000000000001', 'CRON-' || g, 'v' || g, 50000, 10000000
            FROM generate_series(1, 10) g;
            """
        )
        # Steady rows first: a tick that finds both works through them in this (heap) order, so the
        # storm does not lengthen the steady lags; the storm figure leaves the steady rows' time out.
        span = self.plan.interval_s
        deadlines = [t0 + i * span / self.plan.steady_count for i in range(self.plan.steady_count)]
        deadlines += [t0 + self.plan.storm_offset_s] * self.plan.storm_count
        kinds = ["steady"] * self.plan.steady_count + ["storm"] * self.plan.storm_count
        at = [datetime.fromtimestamp(d, UTC) for d in deadlines]
        await self.c.execute(
            """
            WITH input AS (
                SELECT gen_random_uuid() AS id, d AS expires_at, k AS kind, row_number() OVER () AS n
                FROM unnest($1::timestamptz[], $2::text[]) AS t(d, k)
            ), variants AS (
                SELECT id, product_id, row_number() OVER (ORDER BY id) - 1 AS slot FROM cron_bench.product_variant
            ), o AS (
                INSERT INTO cron_bench."order" (id, order_code, customer_id, status, order_type, subtotal_amount,
                    grand_total, receiver_name, receiver_phone, receiver_address, request_hash, created_at,
                    updated_at)
                SELECT id, 100000000 + n, 'cron-shopper', 'pending_payment', kind, 50000, 50000, 'A',
                    '0901234567', 'x', 'h', expires_at - make_interval(secs => $3), expires_at - make_interval(secs => $3)
                FROM input RETURNING id
            ), s AS (
                INSERT INTO cron_bench.order_session (id, order_id, status, session_duration_minutes, expires_at,
                    started_at)
                SELECT gen_random_uuid(), id, 'active', $3 / 60.0, expires_at, expires_at - make_interval(secs => $3)
                FROM input RETURNING id
            )
            INSERT INTO cron_bench.order_item (id, order_id, product_id, variant_id, product_name, variant_sku,
                variant_name, quantity, unit_price, sub_total_amount)
            SELECT gen_random_uuid(), i.id, v.product_id, v.id, 'cron bench', 'sku', 'v', 1, 50000, 50000
            FROM input i JOIN variants v ON v.slot = i.n % 10
            """,
            at,
            kinds,
            float(WINDOW_S),
        )
        total = len(deadlines)
        await self.c.execute(
            """
            UPDATE cron_bench.product_variant v SET stock_quantity = v.stock_quantity - r.n
            FROM (SELECT variant_id, count(*) AS n FROM cron_bench.order_item GROUP BY variant_id) r
            WHERE r.variant_id = v.id
            """
        )
        await self.c.execute('ANALYZE cron_bench.order_session; ANALYZE cron_bench."order"')
        return {"orders": total, "initial_stock": variants * stock}

    # ---- the job, as a cron design writes it --------------------------------------------------------

    async def tick(self) -> TickLog:
        started = time.time()
        before = self.statements
        now = datetime.now(UTC)
        sessions = await self._fetch(
            "SELECT * FROM cron_bench.order_session WHERE status = 'active' AND expires_at <= $1", now
        )
        print(f"tick at {now.isoformat()}: {len(sessions)} sessions due", flush=True)
        if sessions:  # Prisma's `include: {order: true}` is a second query
            orders = {
                r["id"]: r
                for r in await self._fetch(
                    'SELECT * FROM cron_bench."order" WHERE id = ANY($1::uuid[])',
                    [s["order_id"] for s in sessions],
                )
            }
        for session in sessions:
            await self._run(
                "UPDATE cron_bench.order_session SET status = 'expired', updated_at = now() WHERE id = $1",
                session["id"],
            )
            order = orders[session["order_id"]]
            if order["status"] == "pending_payment":
                await self._run(
                    "UPDATE cron_bench.\"order\" SET status = 'expired', updated_at = now(), ended_at = now() "
                    "WHERE id = $1",
                    order["id"],
                )
                # restoreStock(order): its items, then each variant gets its quantity back
                items = await self._fetch(
                    "SELECT variant_id, quantity FROM cron_bench.order_item WHERE order_id = $1", order["id"]
                )
                for item in items:
                    await self._run(
                        "UPDATE cron_bench.product_variant SET stock_quantity = stock_quantity + $2, "
                        "updated_at = now() WHERE id = $1",
                        item["variant_id"],
                        item["quantity"],
                    )
            self.done_at[str(session["order_id"])] = time.time()
        return TickLog(
            at=started,
            found=len(sessions),
            statements=self.statements - before,
            seconds=time.time() - started,
        )

    # ---- the run ----------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        t0 = time.time()
        setup = await self.setup(t0)
        # the first deadline is t0, so tick k fires at t0 + k * interval
        out = Outcome(plan=self.plan, storm_deadline=t0 + self.plan.storm_offset_s)
        for k in range(1, self.plan.ticks + 1):
            await asyncio.sleep(max(0.0, t0 + k * self.plan.interval_s - time.time()))
            log = await self.tick()
            out.ticks.append(log)
            print(
                f"tick {k}: {log.found} expired in {log.seconds:.1f} s ({log.statements} statements)",
                flush=True,
            )
            if log.found and not out.storm_tick_at and out.storm_deadline <= log.at:
                out.storm_tick_at = log.at
        await self.collect(out, setup)
        await self.c.close()
        return out

    async def collect(self, out: Outcome, setup: dict[str, Any]) -> None:
        rows = await self.c.fetch(
            """
            SELECT o.id::text AS id, o.order_type, o.status, s.expires_at, o.ended_at
            FROM cron_bench."order" o JOIN cron_bench.order_session s ON s.order_id = o.id
            """
        )
        storm_done = []
        pg_lags = []
        for r in rows:
            done = self.done_at.get(r["id"])
            if done is None or r["status"] != "expired":
                continue
            lag_ms = (done - r["expires_at"].timestamp()) * 1000
            pg_lags.append((r["ended_at"] - r["expires_at"]) / timedelta(milliseconds=1))
            if r["order_type"] == "steady":
                out.steady_lag_ms.append(lag_ms)
            else:
                storm_done.append(done)
        if storm_done:
            out.storm_first_done, out.storm_last_done = min(storm_done), max(storm_done)
            out.storm_done = len(storm_done)
        out.rows_expired = len(self.done_at)
        out.statements_for_rows = sum(t.statements for t in out.ticks)
        stock = await self.c.fetchval("SELECT sum(stock_quantity) FROM cron_bench.product_variant")
        out.stock_restored = stock == setup["initial_stock"] and out.rows_expired == setup["orders"]
        out.pg_ended_lag_ms_p50 = summary(pg_lags)["p50"]


def results(out: Outcome) -> dict[str, Any]:
    """The comparator's figures, in the bench's keys."""
    plan = out.plan
    lag = summary(out.steady_lag_ms)
    storm: dict[str, Any] = {"n": out.storm_done}
    if out.storm_done:
        wait = out.storm_tick_at - out.storm_deadline
        processing = out.storm_last_done - out.storm_first_done  # the storm's own rows only
        storm |= {
            "drain_s": out.storm_last_done - out.storm_deadline,
            "wait_for_tick_s": wait,
            "processing_s": processing,
            "drain_s_per_10k": wait + processing * 10_000 / out.storm_done,
        }
    busy = [t for t in out.ticks if t.found]
    idle = [t for t in out.ticks if not t.found]
    return {
        "plan": asdict(plan),
        "expiry_lag_ms": lag,
        "steady_lag_samples_ms": out.steady_lag_ms,  # for the plot; bench/run.py keeps it out of latest.json
        "storm": storm,
        "ticks": [asdict(t) for t in out.ticks],
        "db_statements_per_order": (sum(t.statements for t in busy) / out.rows_expired)
        if out.rows_expired
        else None,
        "idle_db_statements_per_min": (60 / plan.interval_s) * (idle[0].statements if idle else 1),
        "stock_restored": out.stock_restored,
        "pg_ended_lag_ms_p50": out.pg_ended_lag_ms_p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--plan", required=True, help="JSON of bench.cron_comparator.Plan")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    plan = Plan(**json.loads(args.plan))
    outcome = asyncio.run(CronJob(args.dsn, plan).run())
    with open(args.out, "w") as f:
        json.dump(results(outcome), f, indent=2, default=str)


if __name__ == "__main__":
    main()
