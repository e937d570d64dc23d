"""docs/API.md is what `python -m api.docs` makes of the app and the error catalogue."""

from __future__ import annotations

from pathlib import Path

from api.docs import render

API_MD = Path(__file__).resolve().parent.parent / "docs" / "API.md"


def test_api_md_is_generated_from_the_app_and_the_catalogue() -> None:
    assert API_MD.read_text() == render(), (
        "docs/API.md is stale: regenerate it with `.venv/bin/python -m api.docs > docs/API.md`"
    )
