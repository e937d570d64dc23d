"""The operators' page offers no money action the desk would refuse: an open order's money has no
buttons (its workflow decides it), and money whose gateway refund was asked and not refused offers
"Refund" (ask the gateway again, under the same key) but never "Mark refunded"."""

from __future__ import annotations

from typing import Any

import pytest

from store import payments
from tests.browser.support import new_page, screenshot
from tests.conftest import own_stack
from tests.helpers import money_awaiting_refund
from tests.test_desk import needs_review, payment_id

try:
    from playwright.async_api import expect
except ImportError:  # new_page() fails (or skips) each test saying what is missing
    pass

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def ops_stack(pg_url: str, dev_env: Any) -> Any:
    async with own_stack(pg_url, dev_env) as stack:
        yield stack


async def test_the_page_offers_no_refund_by_hand_the_desk_would_refuse(ops_stack, browser):
    stack = ops_stack
    still_open = await needs_review(stack)  # its order's window is open
    asked = await money_awaiting_refund(stack, "momo")
    async with stack.engine.begin() as conn:  # a refund of it left for MoMo; no answer came back
        await payments.refund_asked(conn, await payment_id(stack, asked["orderId"]))
    plain = await money_awaiting_refund(stack, "vnpay")

    async with new_page(browser) as page:
        await page.goto(f"{stack.base}/ops")
        await page.get_by_label("Paste an admin token").fill(stack.token("ops-lead", "admin"))
        await page.get_by_role("button", name="Use token").click()
        rows = page.locator("#payments tbody tr")
        await expect(rows).to_have_count(3)
        await screenshot(page, "ops-desk-no-refund-by-hand")

        def row(order: dict) -> Any:
            return rows.filter(has_text=str(order["orderCode"]))

        await expect(row(still_open).get_by_role("button")).to_have_count(1)  # only its order code
        await expect(row(asked).get_by_role("button", name="Refund", exact=True)).to_have_count(1)
        await expect(row(asked).get_by_role("button", name="Mark refunded")).to_have_count(0)
        await expect(row(asked)).to_contain_text("the gateway is being asked")
        await expect(row(plain).get_by_role("button", name="Refund", exact=True)).to_have_count(1)
        await expect(row(plain).get_by_role("button", name="Mark refunded")).to_have_count(1)
