"""What the browser tests share: finding Chromium, a fresh page per test, screenshots."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def browser_problem() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found: install it with `apt-get update && apt-get install -y chromium`"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed: `pip install playwright` (no `playwright install` needed)"
    return None


# Chromium logs every 4xx answer to fetch() in the console; a test of a refusal allows those.
HTTP_REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")


@asynccontextmanager
async def new_page(
    browser: Any, *, allow_http_errors: bool = False, allow_console: re.Pattern[str] | None = None
) -> AsyncIterator[Any]:
    """A page in its own context (own localStorage: its own demo shopper), Vietnamese by default.
    Uncaught script errors fail the test (and console errors, but for refused requests when
    `allow_http_errors`, and those matching `allow_console`)."""
    problem = browser_problem()
    if problem is not None or browser is None:
        if os.environ.get("PAYWINDOW_SKIP_BROWSER") == "1":
            pytest.skip(f"browser tests skipped (PAYWINDOW_SKIP_BROWSER=1): {problem}")
        pytest.fail(f"browser tests need Chromium: {problem} (or set PAYWINDOW_SKIP_BROWSER=1 to skip them)")
    context = await browser.new_context(locale="vi-VN", viewport={"width": 1100, "height": 900})
    context.set_default_timeout(10_000)
    errors: list[str] = []
    context.on("weberror", lambda e: errors.append(str(e.error)))
    page = await context.new_page()
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and not (allow_http_errors and HTTP_REFUSAL.match(m.text))
            and not (allow_console and allow_console.search(m.text))
            and errors.append(f"console: {m.text} at {m.location}")
        ),
    )
    try:
        yield page
        assert not errors, errors
    finally:
        await context.close()


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
