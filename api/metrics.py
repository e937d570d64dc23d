"""Prometheus metrics computed at scrape time from Postgres.

Every API replica and the worker are separate processes, and Postgres is what they share, so
`/metrics` keeps nothing in memory: each scrape runs four aggregate queries in one read-only
snapshot and renders the Prometheus text format (0.0.4) by hand, which is short enough not to need
a client library. Every replica therefore answers the same numbers: dashboards combine replicas
with `max`, never `sum`.

What is a counter here: rows are never deleted (archiving only sets a flag), so counts over all
orders, notifications and attempts only grow. Two exceptions are documented in their HELP: an
attempt moves between statuses (pending -> success, expired -> refunded), so the attempt and refund
families are gauges of "attempts now in this status"; and the opt-in `accept_if_available` policy
moves a late-paid order from `expired` to `paid`.

The two histograms are a sliding window over orders that ended in the last 24 hours, not
cumulative counters: query them with `histogram_quantile` directly, never through `rate()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.statuses import OrderStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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
            f"count(*) FILTER (WHERE {where} AND v <= {bound!r}) AS {prefix}_le_{i}" for i, bound in enumerate(bounds)
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
        snap.cancel_failures[row.gateway] = snap.cancel_failures.get(row.gateway, 0) + int(row.cancel_failures)
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
        snap.events = {"waiting": row.waiting, "failed_tries": int(row.failed_tries), "oldest_s": float(row.oldest_s)}
    hist = (await conn.execute(HISTOGRAMS_SQL)).one()._mapping
    for prefix, h in (("ttp", snap.time_to_pay), ("lag", snap.expiry_lag)):
        h.count, h.total = hist[f"{prefix}_count"], float(hist[f"{prefix}_sum"])
        h.cumulative = [hist[f"{prefix}_le_{i}"] for i in range(len(h.bounds))]
    return snap


# ---- text exposition ----------------------------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _histogram(name: str, help_text: str, h: Histogram) -> list[str]:
    buckets = [_sample(f"{name}_bucket", {"le": _number(b)}, n) for b, n in zip(h.bounds, h.cumulative, strict=True)]
    buckets.append(_sample(f"{name}_bucket", {"le": "+Inf"}, h.count))
    return _family(
        name,
        "histogram",
        help_text,
        [*buckets, _sample(f"{name}_sum", {}, h.total), _sample(f"{name}_count", {}, h.count)],
    )


def render(snap: Snapshot) -> str:
    window = f"orders that ended in the last {WINDOW_HOURS} h (a sliding window: use histogram_quantile, not rate)"
    lines: list[str] = []
    lines += _family(
        "paywindow_orders",
        "gauge",
        "Orders by current status, archived ones included.",
        (_sample("paywindow_orders", {"status": s}, n) for s, n in sorted(snap.orders.items())),
    )
    lines += _family(
        "paywindow_orders_ended_total",
        "counter",
        "Orders that left pending_payment, by final status and end reason (the code before any ':'). "
        "Only LATE_PAYMENT_POLICY=accept_if_available moves one, from expired to paid.",
        (
            _sample("paywindow_orders_ended_total", {"status": s, "reason": r}, n)
            for (s, r), n in sorted(snap.ended.items())
        ),
    )
    lines += _histogram(
        "paywindow_time_to_pay_seconds", f"Order created -> paid, over paid {window}.", snap.time_to_pay
    )
    lines += _histogram(
        "paywindow_expiry_lag_seconds",
        f"Payment deadline -> order expired in Postgres, over expired {window}. "
        "Includes the in-flight grace that holds a window while a gateway reports a payment under way.",
        snap.expiry_lag,
    )
    lines += _family(
        "paywindow_notifications_total",
        "counter",
        "Verified gateway notifications stored in the inbox (deduplicated), by gateway and outcome.",
        (
            _sample("paywindow_notifications_total", {"gateway": g, "outcome": o}, n)
            for (g, o), n in sorted(snap.notifications.items())
        ),
    )
    lines += _family(
        "paywindow_notifications_undelivered",
        "gauge",
        f"Verified notifications stored but still not handed to their order {UNDELIVERED_AFTER} later, "
        "by gateway: they wait for the gateway's retry. Alert when above 0 for long.",
        (_sample("paywindow_notifications_undelivered", {"gateway": g}, n) for g, n in sorted(snap.undelivered.items())),
    )
    lines += _family(
        "paywindow_payment_attempts_total",
        "gauge",
        "Payment attempts ever made, by gateway and their current status. An attempt moves between "
        "statuses (pending -> success...), so a series can fall: sum without(status) is the counter.",
        (
            _sample("paywindow_payment_attempts_total", {"gateway": g, "status": s}, n)
            for (g, s), n in sorted(snap.attempts.items())
        ),
    )
    lines += _family(
        "paywindow_retries_total",
        "counter",
        "Payment retries used (attempts after the first link; = sum of order_session.payment_attempts).",
        [_sample("paywindow_retries_total", {}, snap.retries)],
    )
    refunds: dict[str, int] = {"refund_required": 0, "refunded": 0}
    for (_, status), n in snap.attempts.items():
        if status in refunds:
            refunds[status] += n
    lines += _family(
        "paywindow_refunds_total",
        "gauge",
        "Late payments by refund state: refund_required (waiting, or for an operator) and refunded. "
        "A refund moves from the first to the second.",
        (_sample("paywindow_refunds_total", {"status": s}, n) for s, n in sorted(refunds.items())),
    )
    needs_review = sum(n for (_, status), n in snap.attempts.items() if status == "needs_review")
    lines += _family(
        "paywindow_money_needs_review",
        "gauge",
        "Verified money that could not pay its order and waits for a person: attempts in needs_review "
        "(wrong amount, underpaid, unknown attempt) and verdicts for no attempt of ours (unmatched).",
        [
            _sample("paywindow_money_needs_review", {"kind": "attempt"}, needs_review),
            _sample("paywindow_money_needs_review", {"kind": "unmatched"}, snap.unmatched_money),
        ],
    )
    lines += _family(
        "paywindow_link_cancel_failures_total",
        "counter",
        "Failed tries to cancel an ended order's payment link at its gateway (retried beside the order; "
        "the link also lapses at the gateway's own expiry).",
        (_sample("paywindow_link_cancel_failures_total", {"gateway": g}, n) for g, n in sorted(snap.cancel_failures.items())),
    )
    lines += _family(
        "paywindow_reminders",
        "gauge",
        "Payment reminders by channel and state (sending, sent, skipped, failed: failed ones are retried "
        "until the window closes).",
        (_sample("paywindow_reminders", {"channel": c, "status": s}, n) for (c, s), n in sorted(snap.reminders.items())),
    )
    lines += _family(
        "paywindow_reminder_failures_total",
        "counter",
        "Failed reminder sends, by channel (a later retry may have succeeded).",
        (_sample("paywindow_reminder_failures_total", {"channel": c}, n) for c, n in sorted(snap.reminder_failures.items())),
    )
    if snap.events is not None:
        lines += _family(
            "paywindow_order_events_undelivered",
            "gauge",
            "Order events not yet taken by every ORDER_EVENTS_URLS receiver (the relay retries, backing off "
            "to at most a minute).",
            [_sample("paywindow_order_events_undelivered", {}, int(snap.events["waiting"]))],
        )
        lines += _family(
            "paywindow_order_events_oldest_undelivered_seconds",
            "gauge",
            "Age of the oldest undelivered order event (0 when none waits). Alert when it grows.",
            [_sample("paywindow_order_events_oldest_undelivered_seconds", {}, round(snap.events["oldest_s"], 3))],
        )
        lines += _family(
            "paywindow_order_events_failed_tries",
            "gauge",
            "Failed delivery tries of the order events still waiting.",
            [_sample("paywindow_order_events_failed_tries", {}, int(snap.events["failed_tries"]))],
        )
    lines += _family(
        "paywindow_late_payments_total",
        "counter",
        "Orders that received a verified payment after they had ended.",
        [_sample("paywindow_late_payments_total", {}, snap.late_payments)],
    )
    return "\n".join(lines) + "\n"
