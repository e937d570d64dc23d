"""Database URL and engine construction (built in each process's startup, never at import), and
telling "Postgres is unreachable" apart from "the query is wrong"."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from infra.settings import Settings, get_settings

T = TypeVar("T")


def async_url(url: str | None = None) -> str:
    """Normalise any postgres URL to the asyncpg dialect SQLAlchemy needs."""
    url = url or get_settings().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (make dev sets it for the embedded Postgres)")
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise RuntimeError(f"unsupported DATABASE_URL scheme: {url.split(':', 1)[0]}")


def listen_dsn(database_url: str | None) -> str:
    """For a LISTEN connection of asyncpg's own, which wants the plain scheme; the
    `?host=/socket/dir` of the embedded URL is kept."""
    return "postgresql://" + async_url(database_url).removeprefix("postgresql+asyncpg://")


def make_engine(settings: Settings, *, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping` tests each pooled connection before use (a round trip per checkout). The worker
    goes without: its every query runs in a retried activity, and a connection found dead after a
    Postgres restart invalidates the pool, so the retry gets a fresh one."""
    return create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=pre_ping,
    )


_autocommit: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool without BEGIN/COMMIT around each use: for a lone statement, which Postgres runs
    atomically anyway (a read, or one CTE that writes). Saves two round trips per use; anything of
    two statements that must stand or fall together still takes `engine.begin()`. Made once per
    engine (building it costs ~20 us, and the API asks on every keyed create)."""
    single = _autocommit.get(engine)
    if single is None:
        single = _autocommit[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return single


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


# What says "Postgres cannot be reached right now" (down, restarting, connection cut), as opposed
# to a query that is wrong: the first is worth a retry or a 503, the second never is.
_UNREACHABLE = (
    OSError,  # refused, socket file gone, reset
    asyncpg.exceptions.PostgresConnectionError,  # class 08, incl. "connection does not exist"
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.exceptions.AdminShutdownError,  # 57P01
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.TooManyConnectionsError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free in time
)


def db_unavailable(err: BaseException | None) -> bool:
    """True when `err` (or anything it wraps) says the database is unreachable, not wrong."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, _UNREACHABLE):
            return True
        if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, asyncpg.exceptions.InterfaceError) and "closed" in str(err):
            return True
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
        seen += 1
    return False


async def while_unavailable(step: Callable[[], Awaitable[T]], *, budget_s: float = 15.0) -> T:
    """Run `step`, retrying it (with backoff, for at most `budget_s`) while Postgres is unreachable.
    For activities whose retry budget belongs to something else, such as a gateway call."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + budget_s
    delay = 0.2
    while True:
        try:
            return await step()
        except Exception as err:
            if not db_unavailable(err) or loop.time() + delay > give_up_at:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
