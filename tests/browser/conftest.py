"""Browser tests drive Debian's Chromium (`apt-get install chromium`) through Python Playwright's
bundled driver — no `playwright install`, no downloads. Without Chromium the tests fail with a
clear message, unless PAYWINDOW_SKIP_BROWSER=1 says to skip them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, browser_problem


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """The launched browser, or None when there is none (each test then fails or skips with why)."""
    if browser_problem() is not None:
        yield None
        return
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()
