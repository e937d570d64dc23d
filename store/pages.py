"""One page of a listing and how many rows match it: what every admin listing reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def page_of(
    conn: AsyncConnection,
    query: Select[Any],
    counted: FromClause,
    conditions: Sequence[ColumnElement[bool]],
    order_by: tuple[Any, ...],
    limit: int,
    offset: int,
) -> tuple[int, list[Any]]:
    """`query` under `conditions`, ordered, one page of it, and how many rows of `counted` (the
    listing's own table, without the joins that only add columns) match the conditions."""
    total = (await conn.execute(select(func.count()).select_from(counted).where(*conditions))).scalar_one()
    rows = await conn.execute(query.where(*conditions).order_by(*order_by).limit(limit).offset(offset))
    return total, list(rows.all())
