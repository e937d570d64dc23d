"""`GET /admin/stats`: order analytics over a range of creation times (services/stats.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminUser, ConnDep
from api.errors import error_responses, ok
from services.schemas import Envelope
from services.stats import ABANDONED, TIMEZONE, StatsOut, stats_between

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/stats",
    response_model=Envelope[StatsOut],
    responses=error_responses(403, 422),
    summary="Order analytics over a range of creation times",
    description=(
        "Orders created in [`from`, `to`) (default: the last 7 days; at most 366 days). Times without an "
        f"offset are read in {TIMEZONE}, as are the hours of `expirationByHour`. Abandonment: {ABANDONED}"
    ),
)
async def stats(
    user: AdminUser,
    conn: ConnDep,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> Envelope[StatsOut]:
    return ok(await stats_between(conn, from_, to))
