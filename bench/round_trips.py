"""What a lone statement's BEGIN/COMMIT costs the client: `python -m bench.round_trips`.

On an embedded Postgres of its own, the same one-row read 2,000 times in three rounds, each way an
activity can run it: in `engine.begin()` (BEGIN, the read, COMMIT), in `engine.connect()` (BEGIN,
the read, ROLLBACK), and on `autocommit(engine)` (the read alone, infra/db.py). Prints the client's
CPU and the wall time per use. The full bench cannot resolve a lever this small (its rounds differ
by 1-3 ms per create); this isolates it (docs/BENCHMARKS.md, "What each lever bought")."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.postgres import EmbeddedPostgres
from infra.db import autocommit, make_engine
from infra.settings import Settings

USES = 2_000
ROUNDS = 3
READ = text("SELECT 1 WHERE :x = 1")


async def per_use(engine: AsyncEngine, way: str) -> tuple[float, float]:
    """(client CPU ms, wall ms) per use."""

    async def once() -> None:
        async with engine.begin() if way == "begin" else engine.connect() as conn:
            await conn.execute(READ, {"x": 1})

    for _ in range(50):  # warm: pool, prepared statement cache
        await once()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(USES):
        await once()
    return (time.process_time() - cpu) / USES * 1000, (time.perf_counter() - wall) / USES * 1000


async def measure(url: str) -> None:
    engine = make_engine(Settings(database_url=url), pre_ping=False)
    ways = {"begin": engine, "connect": engine, "autocommit": autocommit(engine)}
    results: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for _ in range(ROUNDS):  # alternating, so drift on a shared machine falls on every way alike
        for way, eng in ways.items():
            results[way].append(await per_use(eng, way))
    await engine.dispose()
    for way, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{way:>10}: client CPU {cpu:.3f} ms, wall {wall:.3f} ms per use (median of {ROUNDS})")


def main() -> None:
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="paywindow-round-trips-")) / "data")
    pg.start()
    try:
        asyncio.run(measure(pg.url))
    finally:
        pg.delete_on_stop = True
        pg.stop()


if __name__ == "__main__":
    main()
