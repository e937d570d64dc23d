"""Aggregates for /metrics (whole tables, on purpose: Prometheus' gauges and counters over all
orders, attempts, verdicts and messages) and for /admin/stats (a range of creation times), and the
database's health check. See api/metrics.py for what each figure means."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import literal, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.statuses import OrderStatus

WINDOW_HOURS = 24
# Time to pay: windows are 5-30 minutes (per order type) plus the in-flight grace.
TIME_TO_PAY_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
# Expiry lag: a timer fires within a second; a payment in flight at the deadline holds the window
# for up to PAYMENT_IN_FLIGHT_GRACE_MINUTES (5 by default), so the tail can reach 300 s by design.
EXPIRY_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
REASON_MAX = 64  # end reasons are codes from our own workflow; cap them all the same

# `cancelled_by_customer: <free text>` carries the shopper's words: only the code before the
# colon becomes a label (bounded cardinality, no personal text in Prometheus).
ORDERS_SQL = text(
    """
    SELECT status, left(coalesce(split_part(end_reason, ':', 1), ''), :reason_max) AS reason,
        count(*) AS n, count(*) FILTER (WHERE late_payment) AS late
    FROM "order" GROUP BY 1, 2
    """
)
# attempt_no > 0 is a retry: attempts are numbered 0, 1, 2... with no gaps, so this count equals
# sum(order_session.payment_attempts) without scanning a third table.
PAYMENTS_SQL = text(
    """
    SELECT gateway, status, count(*) AS n, count(*) FILTER (WHERE attempt_no > 0) AS retries,
        coalesce(sum(cancel_failures), 0) AS cancel_failures
    FROM payment GROUP BY 1, 2
    """
)
# A verdict normally reaches its workflow within seconds; one still undelivered after UNDELIVERED_AFTER
# waits for the gateway's retry (Temporal was unreachable), and for an ended order nothing else will.
UNDELIVERED_AFTER = "5 minutes"
NOTIFICATIONS_SQL = text(
    f"""
    SELECT gateway, outcome, count(*) AS n,
        count(*) FILTER (WHERE delivered_at IS NULL AND received_at < now() - interval '{UNDELIVERED_AFTER}') AS stuck,
        count(*) FILTER (WHERE order_id IS NULL) AS unmatched
    FROM payment_notification GROUP BY 1, 2
    """
)
# Reminders per channel and state; `failures` counts every failed send (a later retry may succeed).
REMINDERS_SQL = text(
    """
    SELECT channel, status, count(*) AS n, coalesce(sum(failures), 0) AS failures
    FROM notification WHERE kind = 'payment_reminder' GROUP BY 1, 2
    """
)
# The relay's backlog (read only when ORDER_EVENTS_URLS is set: without receivers events stay put).
EVENTS_SQL = text(
    """
    SELECT count(*) AS waiting, coalesce(sum(attempts), 0) AS failed_tries,
        coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest_s
    FROM order_event WHERE delivered_at IS NULL
    """
)


def _histogram_sql() -> str:
    """One row: count, sum and cumulative `le` counts for both histograms. Orders that ended in the
    window are not archived yet (archiving waits ARCHIVE_AFTER_DAYS), and saying `NOT archived`
    lets the partial index `ix_order_unarchived_ended` serve the range."""
    columns = []
    for prefix, status, bounds in (
        ("ttp", "paid", TIME_TO_PAY_BUCKETS),
        ("lag", "expired", EXPIRY_LAG_BUCKETS),
    ):
        where = f"status = '{status}'"
        columns.append(f"count(*) FILTER (WHERE {where}) AS {prefix}_count")
        columns.append(f"coalesce(sum(v) FILTER (WHERE {where}), 0) AS {prefix}_sum")
        columns += [
            f"count(*) FILTER (WHERE {where} AND v <= {bound!r}) AS {prefix}_le_{i}"
            for i, bound in enumerate(bounds)
        ]
    return f"""
        SELECT {", ".join(columns)}
        FROM (
            SELECT o.status, CAST(extract(epoch FROM CASE WHEN o.status = 'paid'
                THEN o.ended_at - o.created_at ELSE o.ended_at - s.expires_at END) AS double precision) AS v
            FROM "order" o JOIN order_session s ON s.order_id = o.id
            WHERE NOT o.archived AND o.ended_at >= now() - make_interval(hours => {WINDOW_HOURS})
                AND o.status IN ('paid', 'expired')
        ) ended
    """


HISTOGRAMS_SQL = text(_histogram_sql())


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    cumulative: list[int]  # observations <= each bound
    count: int = 0
    total: float = 0.0


@dataclass
class Snapshot:
    """What one scrape read, in one transaction."""

    orders: dict[str, int] = field(default_factory=dict)  # status -> count
    ended: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, reason) -> count
    late_payments: int = 0
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)  # (gateway, status) -> count
    retries: int = 0
    notifications: dict[tuple[str, str], int] = field(default_factory=dict)  # (gateway, outcome) -> count
    undelivered: dict[str, int] = field(default_factory=dict)  # gateway -> verdicts not handed on
    unmatched_money: int = 0  # verified money verdicts for no attempt of ours
    cancel_failures: dict[str, int] = field(default_factory=dict)  # gateway -> failed link cancellations
    reminders: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, status) -> count
    reminder_failures: dict[str, int] = field(default_factory=dict)  # channel -> failed sends
    events: dict[str, float] | None = None  # the relay's backlog, when it runs
    time_to_pay: Histogram = field(default_factory=lambda: Histogram(TIME_TO_PAY_BUCKETS, []))
    expiry_lag: Histogram = field(default_factory=lambda: Histogram(EXPIRY_LAG_BUCKETS, []))


async def collect(conn: AsyncConnection, *, events: bool = False) -> Snapshot:
    # One snapshot, so `orders` and `ended` agree with each other; read only, and bounded so a slow
    # scrape cannot pile up on the database (Prometheus times out long before that anyway).
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    await conn.execute(text("SET LOCAL statement_timeout = '5s'"))
    snap = Snapshot(orders={s.value: 0 for s in OrderStatus})
    for row in await conn.execute(ORDERS_SQL, {"reason_max": REASON_MAX}):
        snap.orders[row.status] = snap.orders.get(row.status, 0) + row.n
        snap.late_payments += row.late
        if row.status != OrderStatus.PENDING_PAYMENT.value:
            snap.ended[(row.status, row.reason)] = row.n
    for row in await conn.execute(PAYMENTS_SQL):
        snap.attempts[(row.gateway, row.status)] = row.n
        snap.retries += row.retries
        snap.cancel_failures[row.gateway] = snap.cancel_failures.get(row.gateway, 0) + int(
            row.cancel_failures
        )
    for row in await conn.execute(NOTIFICATIONS_SQL):
        snap.notifications[(row.gateway, row.outcome)] = row.n
        snap.undelivered[row.gateway] = snap.undelivered.get(row.gateway, 0) + row.stuck
        if row.outcome in ("success", "underpaid"):
            snap.unmatched_money += row.unmatched
    for row in await conn.execute(REMINDERS_SQL):
        snap.reminders[(row.channel, row.status)] = row.n
        snap.reminder_failures[row.channel] = snap.reminder_failures.get(row.channel, 0) + int(row.failures)
    if events:
        row = (await conn.execute(EVENTS_SQL)).one()
        snap.events = {
            "waiting": row.waiting,
            "failed_tries": int(row.failed_tries),
            "oldest_s": float(row.oldest_s),
        }
    hist = (await conn.execute(HISTOGRAMS_SQL)).one()._mapping
    for prefix, h in (("ttp", snap.time_to_pay), ("lag", snap.expiry_lag)):
        h.count, h.total = hist[f"{prefix}_count"], float(hist[f"{prefix}_sum"])
        h.cumulative = [hist[f"{prefix}_le_{i}"] for i in range(len(h.bounds))]
    return snap


# ---- /admin/stats: orders created in a range -------------------------------------------------------------

IN_RANGE = "o.created_at >= :start AND o.created_at < :end"
BY_STATUS_SQL = f"""
    SELECT o.status, coalesce(split_part(o.end_reason, ':', 1), '') AS reason,
        CAST(extract(hour FROM o.created_at AT TIME ZONE :zone) AS integer) AS hour, count(*) AS n
    FROM "order" o WHERE {IN_RANGE} GROUP BY 1, 2, 3
"""
SUMMARY_SQL = text(
    f"""
    SELECT
        percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM o.ended_at - o.created_at))
            FILTER (WHERE o.status = 'paid') AS ttp_p50,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM o.ended_at - o.created_at))
            FILTER (WHERE o.status = 'paid') AS ttp_p90,
        coalesce(sum(s.payment_attempts), 0) AS retries,
        count(*) FILTER (WHERE s.payment_attempts > 0) AS retried_orders,
        count(*) FILTER (WHERE o.status = 'expired' AND NOT EXISTS (
            SELECT 1 FROM payment p WHERE p.order_id = o.id AND p.status <> 'expired')) AS abandoned
    FROM "order" o JOIN order_session s ON s.order_id = o.id
    WHERE {IN_RANGE}
    """
)
GATEWAYS_SQL = text(
    f"""
    SELECT p.gateway, p.status, count(*) AS n,
        count(*) FILTER (WHERE p.attempt_no > 0 AND p.status = 'success') AS paid_after_retry
    FROM payment p JOIN "order" o ON o.id = p.order_id
    WHERE {IN_RANGE} GROUP BY 1, 2
    """
)


async def order_stats(
    conn: AsyncConnection, start: datetime, end: datetime, zone: str
) -> tuple[list[Any], Any, list[Any]]:
    """Orders created in [start, end): counts by (status, end reason, hour of day in `zone`), the
    summary (time to pay, retries, abandonment) and attempts by (gateway, status)."""
    params = {"start": start, "end": end}
    by_status = (await conn.execute(text(BY_STATUS_SQL), {**params, "zone": zone})).all()
    summary = (await conn.execute(SUMMARY_SQL, params)).one()
    gateways = (await conn.execute(GATEWAYS_SQL, params)).all()
    return list(by_status), summary, list(gateways)


async def ping(conn: AsyncConnection) -> None:
    """Readiness: the database answers."""
    await conn.execute(select(literal(1)))
