"""The SQLModel tables (store/tables.py) and the Alembic migrations describe the same database."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import store.tables  # noqa: F401 - registers the tables on SQLModel.metadata
from infra.db import async_url

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_models_and_the_migrations_agree(pg_url: str) -> None:
    """Autogenerate, run against a database the migrations made: any table, column, type,
    nullability, index, unique constraint or foreign key that differs is a failure."""
    engine = create_async_engine(async_url(pg_url))

    def compare(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)

    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(compare)
    finally:
        await engine.dispose()
    assert diffs == [], "\n".join(map(str, diffs))
