"""Order analytics over a range of creation times (`GET /admin/stats`: expiration
rates by gateway and by hour of day, what to alert on), and the store's monitoring snapshot for `/metrics`.

Hours of day are in Asia/Ho_Chi_Minh, where the shops and shoppers are; a `from`/`to` without an
offset is read in that zone too, so `from=2026-11-22&to=2026-11-23` is one Vietnamese calendar day.
Archived orders count: archiving only hides them from listings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.statuses import OrderStatus
from services.errors import AppError, ErrorCode
from services.schemas import Out
from store import stats as store_stats

TIMEZONE = "Asia/Ho_Chi_Minh"
ZONE = ZoneInfo(TIMEZONE)
DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=366)
ABANDONED = (
    "Expired orders whose every payment attempt ended `expired`: still open when the window closed "
    "(or reported expired by the gateway), none failed, was cancelled or was paid late. Whether the "
    "shopper ever opened the gateway's page is not knowable, so this counts orders nobody finished "
    "a payment for."
)


# ---- response ---------------------------------------------------------------------------------------


class HourOut(Out):
    hour: int = Field(description=f"Hour of day the orders were created, 0-23, {TIMEZONE}")
    ended: int = Field(description="Orders created in this hour that have ended (any final status)")
    expired: int
    expiration_rate: float | None = Field(description="expired / ended; null when none ended")


class EndReasonOut(Out):
    status: str
    reason: str = Field(description="The end reason's code (the part before any ':')")
    count: int


class PaidVsExpiredOut(Out):
    paid: int
    expired: int
    ratio: float | None = Field(description="paid / expired; null when none expired")
    paid_share: float | None = Field(description="paid / (paid + expired); null when neither")


class AbandonmentOut(Out):
    abandoned: int = Field(description=ABANDONED)
    rate: float | None = Field(description="abandoned / ended orders; null when none ended")


class TimeToPayOut(Out):
    paid_orders: int
    median_seconds: float | None = Field(description="Order created -> paid, median")
    p90_seconds: float | None


class GatewayOut(Out):
    gateway: str
    attempts: int
    by_status: dict[str, int] = Field(description="Attempts by their current status")


class RetriesOut(Out):
    used: int = Field(description="Retries made (attempts after the first link), summed over orders")
    orders_with_retries: int
    paid_after_retry: int = Field(description="Orders paid by an attempt after the first")


class StatsOut(Out):
    from_: datetime = Field(alias="from")
    to: datetime = Field(description="Exclusive")
    timezone: str
    total_orders: int
    ended_orders: int
    counts_by_status: dict[str, int]
    end_reasons: list[EndReasonOut]
    expiration_rate: float | None = Field(description="expired / ended orders; null when none ended")
    expiration_by_hour: list[HourOut]
    paid_vs_expired: PaidVsExpiredOut
    abandonment: AbandonmentOut
    time_to_pay: TimeToPayOut
    gateways: list[GatewayOut]
    retries: RetriesOut


# ---- queries ----------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)  # percentile_cont over numeric answers Decimal


async def order_stats(conn: AsyncConnection, start: datetime, end: datetime) -> StatsOut:
    """Orders created in [start, end); both aware, and echoed back as given."""
    counts = {s.value: 0 for s in OrderStatus}
    reasons: dict[tuple[str, str], int] = {}
    hours = [{"ended": 0, "expired": 0} for _ in range(24)]
    by_status, summary, by_gateway = await store_stats.order_stats(conn, start, end, TIMEZONE)
    for r in by_status:
        counts[r.status] = counts.get(r.status, 0) + r.n
        if r.status == OrderStatus.PENDING_PAYMENT.value:
            continue
        reasons[(r.status, r.reason)] = reasons.get((r.status, r.reason), 0) + r.n
        hours[r.hour]["ended"] += r.n
        if r.status == OrderStatus.EXPIRED.value:
            hours[r.hour]["expired"] += r.n
    gateways: dict[str, dict[str, int]] = {}
    paid_after_retry = 0
    for r in by_gateway:
        gateways.setdefault(r.gateway, {})[r.status] = r.n
        paid_after_retry += r.paid_after_retry

    ended = sum(n for status, n in counts.items() if status != OrderStatus.PENDING_PAYMENT.value)
    paid, expired = counts[OrderStatus.PAID.value], counts[OrderStatus.EXPIRED.value]
    return StatsOut(
        from_=start,
        to=end,
        timezone=TIMEZONE,
        total_orders=sum(counts.values()),
        ended_orders=ended,
        counts_by_status=counts,
        end_reasons=[
            EndReasonOut(status=s, reason=r, count=n)
            for (s, r), n in sorted(reasons.items(), key=lambda x: -x[1])
        ],
        expiration_rate=_ratio(expired, ended),
        expiration_by_hour=[
            HourOut(
                hour=h,
                ended=v["ended"],
                expired=v["expired"],
                expiration_rate=_ratio(v["expired"], v["ended"]),
            )
            for h, v in enumerate(hours)
        ],
        paid_vs_expired=PaidVsExpiredOut(
            paid=paid, expired=expired, ratio=_ratio(paid, expired), paid_share=_ratio(paid, paid + expired)
        ),
        abandonment=AbandonmentOut(abandoned=summary.abandoned, rate=_ratio(summary.abandoned, ended)),
        time_to_pay=TimeToPayOut(
            paid_orders=paid, median_seconds=_seconds(summary.ttp_p50), p90_seconds=_seconds(summary.ttp_p90)
        ),
        gateways=[
            GatewayOut(gateway=g, attempts=sum(by.values()), by_status=dict(sorted(by.items())))
            for g, by in sorted(gateways.items())
        ],
        retries=RetriesOut(
            used=summary.retries,
            orders_with_retries=summary.retried_orders,
            paid_after_retry=paid_after_retry,
        ),
    )


# ---- the range, as the admin routes read it -------------------------------------------------------------


def shop_time(value: datetime) -> datetime:
    """A time as the admin routes read it: without an offset, in the shop's zone (Asia/Ho_Chi_Minh)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=ZONE)


async def stats_between(conn: AsyncConnection, from_: datetime | None, to: datetime | None) -> StatsOut:
    """Orders created in [`from_`, `to`): by default the last 7 days, at most 366 days; times
    without an offset in the shop's zone."""
    try:
        end = (shop_time(to) if to is not None else datetime.now(UTC)).astimezone(ZONE)
        start = (shop_time(from_) if from_ is not None else end - DEFAULT_RANGE).astimezone(ZONE)
    except OverflowError:  # e.g. to=9999-12-31T23:00Z is in the year 10000 at +07:00
        raise AppError(ErrorCode.VALIDATION_ERROR, "`from`/`to` out of range") from None
    if start >= end:
        raise AppError(ErrorCode.VALIDATION_ERROR, "`from` must be before `to`")
    if end - start > MAX_RANGE:
        raise AppError(ErrorCode.VALIDATION_ERROR, f"The range may span at most {MAX_RANGE.days} days")
    return await order_stats(conn, start, end)


def shop_range(from_: datetime | None, to: datetime | None) -> tuple[datetime | None, datetime | None]:
    """A listing's optional `from`/`to`, read in the shop's zone, `from` before `to`."""
    from_, to = (shop_time(t) if t is not None else None for t in (from_, to))
    if from_ is not None and to is not None and from_ >= to:
        raise AppError(ErrorCode.VALIDATION_ERROR, "`from` must be before `to`")
    return from_, to


# ---- monitoring ----------------------------------------------------------------------------------------


async def metrics_snapshot(conn: AsyncConnection, *, events: bool) -> store_stats.Snapshot:
    """What `/metrics` renders: the store's aggregates in one read-only snapshot."""
    return await store_stats.collect(conn, events=events)
