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

from store.stats import UNDELIVERED_AFTER, WINDOW_HOURS, Histogram, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
    buckets = [
        _sample(f"{name}_bucket", {"le": _number(b)}, n) for b, n in zip(h.bounds, h.cumulative, strict=True)
    ]
    buckets.append(_sample(f"{name}_bucket", {"le": "+Inf"}, h.count))
    return _family(
        name,
        "histogram",
        help_text,
        [*buckets, _sample(f"{name}_sum", {}, h.total), _sample(f"{name}_count", {}, h.count)],
    )


def render(snap: Snapshot) -> str:
    window = (
        f"orders that ended in the last {WINDOW_HOURS} h (a sliding window: use histogram_quantile, not rate)"
    )
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
        (
            _sample("paywindow_notifications_undelivered", {"gateway": g}, n)
            for g, n in sorted(snap.undelivered.items())
        ),
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
        (
            _sample("paywindow_link_cancel_failures_total", {"gateway": g}, n)
            for g, n in sorted(snap.cancel_failures.items())
        ),
    )
    lines += _family(
        "paywindow_reminders",
        "gauge",
        "Payment reminders by channel and state (sending, sent, skipped, failed: failed ones are retried "
        "until the window closes).",
        (
            _sample("paywindow_reminders", {"channel": c, "status": s}, n)
            for (c, s), n in sorted(snap.reminders.items())
        ),
    )
    lines += _family(
        "paywindow_reminder_failures_total",
        "counter",
        "Failed reminder sends, by channel (a later retry may have succeeded).",
        (
            _sample("paywindow_reminder_failures_total", {"channel": c}, n)
            for c, n in sorted(snap.reminder_failures.items())
        ),
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
            [
                _sample(
                    "paywindow_order_events_oldest_undelivered_seconds", {}, round(snap.events["oldest_s"], 3)
                )
            ],
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
