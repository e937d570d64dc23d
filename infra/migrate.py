"""The product's migration entry point: `python -m infra.migrate` brings DATABASE_URL's database to
Alembic head. The image's `migrate` role, compose's `migrate` service and the Kubernetes Job all run
it; `make dev` and the tests call `upgrade()` (through devstack/migrate.py) on the embedded Postgres.

`python -m infra.migrate --wait SECONDS` migrates nothing: it waits until the database is at this
code's head (or beyond: a newer release migrated it, and migrations are expand-only), exit 3 when
the time runs out. Kubernetes runs it before the API and the worker start (an init container), so a
new release's pods wait for the migration Job instead of meeting an old schema.

alembic.ini and migrations/ are not part of the installed package: they sit beside infra/ in the
source tree and in the image (/app). Run from that directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.ext.asyncio import create_async_engine

from infra.db import async_url

POLL_SECONDS = 2.0


def _root() -> Path:
    """The directory holding alembic.ini: the source tree this module came from, or, when the
    installed copy was imported instead, the working directory (the image's /app)."""
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "alembic.ini").is_file():
            return candidate
    raise RuntimeError("alembic.ini not found: run `python -m infra.migrate` from the source root (/app)")


def _config(url: str) -> Config:
    root = _root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str) -> None:
    command.upgrade(_config(url), "head")


async def _current(url: str) -> str | None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


def behind(url: str) -> str | None:
    """What the database lacks for this code ("empty", or the older revision it is at); None when it
    is at this code's head, or at a revision this code does not know (a newer release's)."""
    script = ScriptDirectory.from_config(_config(url))
    current = asyncio.run(_current(url))
    if current == script.get_current_head():
        return None
    if current is None:
        return "empty"
    try:
        script.get_revision(current)
    except CommandError:
        return None
    return current


def wait(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            lacking = behind(url)
        except OSError as err:  # Postgres not reachable yet: keep waiting
            lacking = f"unreachable ({type(err).__name__})"
        if lacking is None:
            return True
        if time.monotonic() >= deadline:
            print(
                f"migrations: database is {lacking}, not at head; is the migration Job done?", file=sys.stderr
            )
            return False
        time.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.migrate", description="Alembic to head on DATABASE_URL."
    )
    parser.add_argument(
        "--wait", type=float, metavar="SECONDS", help="only wait for the database to be at head"
    )
    args = parser.parse_args(argv)
    url = async_url()  # DATABASE_URL, any postgres scheme
    if args.wait is not None:
        if not wait(url, args.wait):
            return 3
        print("migrations: database at head", flush=True)
        return 0
    upgrade(url)
    print("migrations: database at head", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
