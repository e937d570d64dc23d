"""The operators' page (/ops) in a real browser against a stack of its own (its queues hold only what
this test made): a customer's token is refused, an admin's opens the queues; PayOS money is marked
refunded by hand, MoMo money is refunded through the gateway, a stored verdict is handed to its
order, and an order found by its code links to its workflow in the Temporal UI with its audit trail.
Screenshots land in test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import new_page, screenshot
from tests.conftest import own_stack
from tests.helpers import desk_order, money_awaiting_refund, stored_not_delivered, wait_for_status

try:
    from playwright.async_api import expect
except ImportError:  # new_page() fails (or skips) each test saying what is missing
    pass

pytestmark = pytest.mark.asyncio(loop_scope="session")
TEMPORAL_UI = "http://temporal-ui.example:8233"


@pytest.fixture(scope="module")
async def ops_stack(pg_url: str, dev_env: Any) -> Any:
    async with own_stack(pg_url, dev_env, temporal_ui_url=TEMPORAL_UI) as stack:
        yield stack


async def sign_in(page: Any, token: str) -> None:
    await page.get_by_label("Paste an admin token").fill(token)
    await page.get_by_role("button", name="Use token").click()


async def test_page_is_served_like_the_demo(ops_stack):
    import httpx

    async with httpx.AsyncClient(base_url=ops_stack.base) as http:
        r = await http.get("/ops")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "http://" not in r.text and "https://" not in r.text  # no CDN: works offline
        assert (await http.get("/ops/static/ops.js")).headers["content-type"].startswith("text/javascript")
        assert (await http.get("/ops/static/../app.py")).status_code == 404
        config = (await http.get("/ops/config")).json()["data"]
        assert config == {"temporalUiUrl": TEMPORAL_UI, "namespace": "default"}


async def test_a_customer_token_opens_nothing(ops_stack, browser):
    async with new_page(browser, allow_http_errors=True) as page:
        await page.goto(f"{ops_stack.base}/ops")
        await sign_in(page, ops_stack.token("a-shopper"))
        await expect(page.locator("#error")).to_have_text("Admin role required (FORBIDDEN)")
        await expect(page.locator("#desk")).to_be_hidden()
        await expect(page.get_by_label("Paste an admin token")).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('paywindow.opsToken')") is None


async def test_operator_works_the_queues_from_the_page(ops_stack, browser):
    stack = ops_stack
    momo = await money_awaiting_refund(stack, "momo")
    payos = await money_awaiting_refund(stack, "payos")
    pending, shopper = await desk_order(stack, "momo")
    await stored_not_delivered(stack, pending)

    async with new_page(browser) as page:
        await page.goto(f"{stack.base}/ops")
        await expect(page.get_by_role("heading", name="Admin token")).to_be_visible()
        await sign_in(page, stack.token("ops-lead", "admin"))
        await expect(page.locator("#who")).to_have_text("signed in as ops-lead")
        payments = page.locator("#payments tbody tr")
        await expect(payments).to_have_count(2)
        await expect(page.locator("#payments-total")).to_have_text("2 payment(s)")
        await screenshot(page, "ops-1-queues")

        # PayOS has no refund API: the money went back by bank transfer, and the operator says so.
        payos_row = payments.filter(has_text=str(payos["orderCode"]))
        await expect(payos_row.get_by_role("button", name="Refund", exact=True)).to_have_count(0)
        await payos_row.get_by_role("button", name="Mark refunded").click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text(f"Mark order {payos['orderCode']} refunded?")
        await dialog.get_by_label("Bank transfer reference").fill("VCB-991")
        await dialog.get_by_label("Note").fill("sent back by transfer")
        await screenshot(page, "ops-2-mark-refunded")
        await dialog.get_by_role("button", name="Confirm").click()
        notice = page.locator("#notice")
        await expect(notice).to_have_text(f"Order {payos['orderCode']}: marked refunded (VCB-991).")
        await expect(payments).to_have_count(1)

        # MoMo refunds through its API: one click, one confirmation, refunded once.
        await payments.get_by_role("button", name="Refund", exact=True).click()
        await expect(dialog).to_contain_text("Refund 64,000 ₫ through MoMo?")
        await dialog.get_by_role("button", name="Confirm").click()
        await expect(notice).to_have_text(f"Order {momo['orderCode']}: refunded through MoMo.")
        await expect(page.locator("#payments-empty")).to_be_visible()
        assert (
            len(stack.app.state.sandbox_store.get("momo", momo["attempts"][0]["gatewayOrderId"]).refunds) == 1
        )
        await page.get_by_label("Status").select_option("refunded")
        await page.get_by_role("button", name="Show").click()
        await expect(payments).to_have_count(2)
        await expect(payments.filter(has_text="refunded by hand: VCB-991")).to_have_count(1)

        # A verdict the order never heard of: handed on, and the order is paid.
        verdicts = page.locator("#verdicts tbody tr")
        await expect(verdicts).to_have_count(1)
        await expect(verdicts).to_contain_text(str(pending["orderCode"]))
        await verdicts.get_by_role("button", name="Redeliver").click()
        await expect(notice).to_have_text(f"Order {pending['orderCode']}: verdict handed on.")
        await expect(page.locator("#verdicts-empty")).to_be_visible()
        await wait_for_status(stack, pending["orderId"], shopper, "paid")

        # An order by its code: its workflow in the Temporal UI, and what operators did to it.
        await page.get_by_label("Order code").fill(str(payos["orderCode"]))
        await page.get_by_role("button", name="Find").click()
        await expect(page.locator("#order-h")).to_have_text(f"Order {payos['orderCode']}")
        await expect(page.locator("#order-status")).to_have_text("expired")
        link = page.get_by_role("link", name=re.compile("in the Temporal UI"))
        await expect(link).to_have_attribute(
            "href", f"{TEMPORAL_UI}/namespaces/default/workflows/order-{payos['orderId']}"
        )
        audit = page.locator("#order-audit")
        await expect(audit).to_contain_text("ops-lead · payment.mark_refunded · “sent back by transfer”")
        await expect(audit).to_contain_text("order.expire")
        await screenshot(page, "ops-3-order")

        # The token stays in this tab: never in localStorage, never in a URL.
        assert await page.evaluate("sessionStorage.getItem('paywindow.opsToken')")
        assert await page.evaluate("localStorage.getItem('paywindow.opsToken')") is None
        await page.get_by_role("button", name="Forget token").click()
        await expect(page.locator("#desk")).to_be_hidden()
