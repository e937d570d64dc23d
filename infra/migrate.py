"""The product's migration entry point: `python -m infra.migrate` brings DATABASE_URL's database to
Alembic head. The image's `migrate` role, compose's `migrate` service and the Kubernetes Job all run
it; `make dev` and the tests call `upgrade()` (through devstack/migrate.py) on the embedded Postgres.

alembic.ini and migrations/ are not part of the installed package: they sit beside infra/ in the
source tree and in the image (/app). Run from that directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from infra.db import async_url


def _root() -> Path:
    """The directory holding alembic.ini: the source tree this module came from, or, when the
    installed copy was imported instead, the working directory (the image's /app)."""
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "alembic.ini").is_file():
            return candidate
    raise RuntimeError("alembic.ini not found: run `python -m infra.migrate` from the source root (/app)")


def upgrade(url: str) -> None:
    root = _root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")


def main() -> int:
    upgrade(async_url())  # DATABASE_URL, any postgres scheme
    print("migrations: database at head", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
