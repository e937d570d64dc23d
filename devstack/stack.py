"""The one launcher of the whole stack: `make dev` (devstack/run.py), the bench and the chaos runs.

The embedded PostgreSQL and the Temporal dev server, both persisted under a data directory,
Alembic migrations, then `python worker.py` and uvicorn serving `devstack.app:app_factory` (the API with
the sandbox under /sandbox; `api.app:app_factory` when the gateways run apart) as child
processes; optionally the gateway sandbox as a process of its own (`gateways_app`), and any other
process by name (chaos's receiver). Every child runs in its own session, so a Ctrl-C in the terminal reaches only the process that owns the `Stack`, and
`stop` ends them in order: the API, the workers (they drain their tasks), the rest, Temporal,
Postgres. The levers for chaos are here too: a signal to one process, Postgres stopped and started
again on the same data directory, Temporal on the same `--db-filename`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres
from devstack.processes import free_port, stop_process, wait_for_port
from devstack.temporal import dev_server_args
from infra.db import async_url

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """Everything it started is stopped by `stop` (also as a context manager, on errors and
    Ctrl-C); the data directory is removed then unless `keep_data`.

    `env` is the children's own settings, over the caller's environment and the stack's addresses.
    `isolated` keeps the caller's Paywindow settings out (development mode, sandbox on, this API as
    the public URL). `log_dir`: one `<name>.log` per child; None lets them write to this terminal.
    `database_url` / `temporal_address`: existing services, used instead of the embedded ones.
    `gateways_app`: an app factory (devstack/sandbox/app.py or chaos's) to serve the gateways on a
    port of their own; the API and the workers then reach them as remote gateways, sandbox off.
    `workers` / `api_procs`: how many worker processes `start_app` starts, and how many processes
    serve the API (uvicorn --workers: one port, the kernel spreads the connections).
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        *,
        keep_data: bool = True,
        isolated: bool = False,
        log_dir: Path | None = None,
        api_host: str = "127.0.0.1",
        api_port: int | None = None,
        temporal_port: int | None = None,
        temporal_ui_port: int | None = None,
        jwt_secret: str | None = None,
        database_url: str | None = None,
        temporal_address: str | None = None,
        pg_settings: dict[str, str] | None = None,
        bytecode_cache: bool = False,
        gateways_app: str | None = None,
        workers: int = 1,
        api_procs: int = 1,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.keep_data = keep_data
        self.isolated = isolated
        self.log_dir = log_dir
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self.api_host = api_host
        self.api_port = api_port or free_port()
        self.temporal_port = temporal_port or free_port()
        self.temporal_ui_port = temporal_ui_port  # None: headless
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(36)
        self.database_url = database_url or ""
        self.pg = None if database_url else EmbeddedPostgres(self.data_dir / "postgres", settings=pg_settings)
        self.embedded_temporal = not temporal_address
        self.temporal_address = temporal_address or f"127.0.0.1:{self.temporal_port}"
        self.bytecode_cache = bytecode_cache
        self.gateways_app = gateways_app
        self.gateway_port = free_port() if gateways_app else None
        self.n_workers, self.api_procs = workers, api_procs
        self.procs: dict[str, subprocess.Popen] = {}  # name -> running child
        self.logs: dict[str, Path] = {}  # name -> its log file, when it has one
        self.workers: set[str] = set()

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        """Where the shoppers' pay pages are: the gateways' own process, or the dev app's /sandbox."""
        return f"http://127.0.0.1:{self.gateway_port}" if self.gateway_port else self.api_url

    def gateway_env(self) -> dict[str, str]:
        """The API's and the workers' gateway settings when the gateways are a process of their own."""
        if not self.gateway_port:
            return {}
        sandbox = f"{self.gateway_url}/sandbox"
        return {
            "SANDBOX_ENABLED": "false",
            "MOMO_ENDPOINT": f"{sandbox}/momo",
            "VNPAY_PAYMENT_URL": f"{sandbox}/vnpay/paymentv2/vpcpay.html",
            "VNPAY_API_URL": f"{sandbox}/vnpay/merchant_webapi/api/transaction",
            "PAYOS_BASE_URL": f"{sandbox}/payos",
        }

    # ---- whole stack ------------------------------------------------------------------------------

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
        self.start_servers(on_step)
        if self.gateways_app:
            on_step("gateways")
            self.start_gateways()
        on_step("worker + API")
        self.start_app()

    def start_servers(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """Postgres and Temporal (unless given), then the migrations."""
        if self.pg is not None:
            on_step("embedded PostgreSQL")
            self.start_postgres()
        if self.embedded_temporal:
            on_step("Temporal dev server")
            self.start_temporal()
        on_step("migrations")
        self.migrate()

    def start_app(self, worker: str = "worker") -> None:
        """`worker` and, with `workers` > 1, `<worker>2` ...; then the API."""
        for i in range(1, self.n_workers + 1):
            self.start_worker(worker if i == 1 else f"{worker}{i}")
        self.start_api()
        self.wait_ready()

    def stop(self) -> None:
        """The API first, then the workers drain their tasks, then the rest; idempotent."""
        order = ["api", *sorted(self.workers)]
        order += [name for name in self.procs if name not in order and name != "temporal"] + ["temporal"]
        for name in order:
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, timeout=15)
        self.stop_postgres("fast")
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = httpx.get(f"{self.api_url}/readyz", timeout=3)
                if r.status_code == 200:
                    return
                last = r.text[:200]
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.3)
        raise TimeoutError(f"API not ready within {timeout:.0f} s: {last}")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                where = self.logs.get(name, "the output above")
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {where}")

    # ---- servers ----------------------------------------------------------------------------------

    def start_postgres(self) -> None:
        """The first time: init and start; again after `stop_postgres`: the same data, the same URL."""
        if self.pg is not None:
            self.database_url = self.pg.start()

    def stop_postgres(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate`; immediate is a crash (recovery on the next start)."""
        if self.pg is not None:
            self.pg.stop(mode)

    def postmaster_pid(self) -> int | None:
        return self.pg.postmaster_pid() if self.pg is not None else None

    def start_temporal(self) -> None:
        """The dev server on its SQLite file: started again after a kill, it has every workflow."""
        args = dev_server_args(self.data_dir / "temporal.db", self.temporal_port, self.temporal_ui_port)
        # The server reads OTEL_* too and refuses to start on OTEL_TRACES_EXPORTER=console: our
        # tracing variables are for our processes (infra/tracing.py), not for it.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        proc = self.start_process("temporal", args, env, log=(self.log_dir or self.data_dir) / "temporal.log")
        wait_for_port("127.0.0.1", self.temporal_port, 60, proc)

    def migrate(self) -> None:
        upgrade(async_url(self.database_url))

    # ---- python children ----------------------------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ) | {
            "DATA_DIR": str(self.data_dir),
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "API_HOST": self.api_host,
            "API_PORT": str(self.api_port),
            "AUTH_JWT_SECRET": self.jwt_secret,
        }
        if self.isolated:
            env |= {"PUBLIC_BASE_URL": self.api_url, "ENVIRONMENT": "development", "SANDBOX_ENABLED": "true"}
        env |= self.gateway_env()
        if self.bytecode_cache:
            # Python's default is to cache compiled modules; a container may switch that off
            # (PYTHONDONTWRITEBYTECODE=1), which makes the workflow sandbox recompile the workflow
            # modules for every workflow it instantiates. Cache them outside the source tree.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.data_dir / "pycache")
        return env | self.env

    def start_process(
        self, name: str, args: list[str], env: dict[str, str] | None = None, log: Path | None = None
    ) -> subprocess.Popen:
        """Any child by name; `env` None inherits ours, `log` defaults to `<log_dir>/<name>.log`."""
        if self.alive(name):
            raise RuntimeError(f"{name} is already running")
        if log is None and self.log_dir is not None:
            log = self.log_dir / f"{name}.log"
        out = None
        if log is not None:
            self.logs[name], out = log, log.open("ab")
        try:
            # Own session: a Ctrl-C in the terminal reaches only our process, which stops these in order.
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str = "worker") -> None:
        self.start_process(name, [sys.executable, "worker.py"], self.child_env())
        self.workers.add(name)

    def start_api(self) -> None:
        # The gateways in a process of their own: the product's app alone; else the dev app, which
        # serves them under /sandbox.
        app = "api.app:app_factory" if self.gateways_app else "devstack.app:app_factory"
        self.start_uvicorn("api", app, self.api_port, self.child_env(), self.api_procs)

    def start_gateways(self) -> None:
        """The gateways' process: its pay pages on its own address, its notifications to our API."""
        assert self.gateways_app and self.gateway_port, (
            "a Stack without gateways_app serves them under /sandbox"
        )
        env = self.child_env() | {"PUBLIC_BASE_URL": self.gateway_url, "SANDBOX_MERCHANT_URL": self.api_url}
        self.start_uvicorn("gateways", self.gateways_app, self.gateway_port, env)

    def start_uvicorn(
        self, name: str, app_factory: str, port: int, env: dict[str, str], procs: int = 1
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            app_factory,
            "--factory",
            "--host",
            self.api_host,
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
        ]
        if procs > 1:
            args += ["--workers", str(procs)]
        wait_for_port(self.api_host, port, 60, self.start_process(name, args, env))

    # ---- levers -----------------------------------------------------------------------------------------

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int | None:
        return self.procs[name].pid if self.alive(name) else None

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one of our children and, for SIGKILL, reap it."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)  # its own session: uvicorn's worker processes get it too
        if sig == signal.SIGKILL:
            proc.wait(10)
            del self.procs[name]

    def wait_exit(self, name: str, timeout: float) -> float | None:
        """Seconds until `name` exited, or None if it did not within `timeout` (then it is killed)."""
        proc = self.procs.get(name)
        if proc is None:
            return 0.0
        t0 = time.monotonic()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            del self.procs[name]
            return None
        del self.procs[name]
        return time.monotonic() - t0
