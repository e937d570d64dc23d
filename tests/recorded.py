"""Write-once release histories: what the replay test (tests/test_replay.py) holds every change to.

A test that ends a scenario calls `keep(handle, kind, scenario)`. With RECORD_HISTORIES=<release>
(e.g. `RECORD_HISTORIES=1.1 make test`) it writes tests/histories/release-<release>/<kind>/<scenario>.json
as a NEW file, and fails when that file exists already: a recorded history is never rewritten. Its
checksum goes into tests/histories/SHA256SUMS, committed beside it; the replay test fails when a
committed history is changed, deleted or added without its checksum. Without the variable, nothing
is written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

HISTORIES = Path(__file__).parent / "histories"
CHECKSUMS = HISTORIES / "SHA256SUMS"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksums() -> dict[str, str]:
    """relative path -> sha256, as committed."""
    if not CHECKSUMS.exists():
        return {}
    pairs = (line.split(maxsplit=1) for line in CHECKSUMS.read_text().splitlines() if line.strip())
    return {path.strip(): sha for sha, path in pairs}


async def keep(handle: Any, kind: str, scenario: str) -> None:
    """Record the finished workflow's history under the release being recorded (write-once)."""
    release = os.environ.get("RECORD_HISTORIES")
    if not release:
        return
    path = HISTORIES / f"release-{release}" / kind / f"{scenario}.json"
    rel = path.relative_to(HISTORIES).as_posix()
    if path.exists() or rel in checksums():
        raise FileExistsError(
            f"{rel} is recorded already: a release history is never rewritten; name a new one"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (await handle.fetch_history()).to_json().encode()
    with path.open("xb") as out:  # "x": refuses to replace a file that appeared meanwhile
        out.write(data)
    with CHECKSUMS.open("a") as sums:
        sums.write(f"{digest(data)}  {rel}\n")
