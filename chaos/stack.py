"""The real stack for a chaos run (devstack/stack.py) under a throw-away DATA_DIR, with two more
processes and the gateways' and receiver's addresses in every child's settings.

Processes (all bound to 127.0.0.1):
  postgres   embedded PostgreSQL, unix socket only
  temporal   `temporal server start-dev`, headless, SQLite file
  gateways   the sandbox as its own process (chaos/gateway_app.py), the outside world: never killed
             (it can be told to hang or answer garbage, /chaos/faults)
  receiver   the shop's systems (chaos/receiver_app.py): reminder webhook, SMTP, order events, as
             production runs with all of them on (it can be told to fail, /chaos/receiver)
  w1 [, w2]  `python worker.py`
  api        `uvicorn api.app:app_factory --factory`, exactly as `make dev` starts it

The levers (SIGKILL / SIGINT any process, Postgres stopped and started again on the same data
directory, Temporal on the same `--db-filename`) are `Stack`'s.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from devstack.processes import free_port
from devstack.stack import Stack


class ChaosStack(Stack):
    def __init__(self, env_overrides: dict[str, str], keep_data: bool = False) -> None:
        self.receiver_port, self.smtp_port = free_port(), free_port()
        env = {
            "RATE_LIMIT_PER_MINUTE": "0",  # every shopper here is 127.0.0.1
            # Production configuration: reminders by webhook and e-mail, order events delivered.
            "REMINDER_WEBHOOK_URL": f"{self.receiver_url}/reminders",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
            "ORDER_EVENTS_URLS": f"{self.receiver_url}/events",
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed worker's last log lines still reach its log
        }
        data_dir = Path(tempfile.mkdtemp(prefix="paywindow-chaos-"))
        super().__init__(
            data_dir,
            env | env_overrides,
            keep_data=keep_data,
            isolated=True,
            log_dir=data_dir / "logs",
            bytecode_cache=True,
            gateways_app="chaos.gateway_app:app_factory",
        )

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        self.start_servers(on_step)
        on_step("gateways + receiver")
        self.start_gateways()
        self.start_receiver()
        on_step("worker + API")
        self.start_app("w1")

    def start_app_processes(self) -> None:
        """After a full stop: the same data, the same ports (the gateways and receiver kept running)."""
        self.start_postgres()
        self.start_temporal()
        self.start_app("w1")

    def start_receiver(self) -> None:
        env = self.child_env() | {"CHAOS_SMTP_PORT": str(self.smtp_port)}
        self.start_uvicorn("receiver", "chaos.receiver_app:app_factory", self.receiver_port, env)
