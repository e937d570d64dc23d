"""Database URL and engine construction (built in each process's startup, never at import)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from domain.settings import Settings, get_settings


def async_url(url: str | None = None) -> str:
    """Normalise any postgres URL to the asyncpg dialect SQLAlchemy needs."""
    url = url or get_settings().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set (make dev sets it for the embedded Postgres)")
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise RuntimeError(f"unsupported DATABASE_URL scheme: {url.split(':', 1)[0]}")


def make_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
