"""The demo checkout in a real browser against the real stack: pay through the sandbox's hosted
page and see `paid` pushed into the open order page; let a flash window run out and see it expire.
Screenshots land in test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.support import new_page, screenshot

try:
    from playwright.async_api import Page, expect
except ImportError:  # new_page() fails (or skips) each test saying what is missing
    Page = Any

pytestmark = pytest.mark.asyncio(loop_scope="session")
MMSS = re.compile(r"^\d\d:\d\d$")


async def place_order(page: Page, stack: Any, order_type: str) -> str:
    """Catalog -> cart -> order form (MoMo) -> the order page; answers the product's label."""
    product = await stack.product(stock=4, price=129_000)
    label = f"{product['name']} — {product['variants'][0]['name']}"
    await page.goto(f"{stack.base}/demo")
    await expect(page.get_by_role("heading", name="Sản phẩm")).to_be_visible()
    await page.get_by_role("button", name=f"Thêm {label} vào giỏ").click()
    await expect(page.locator("#cart-lines")).to_contain_text(label)
    await page.get_by_label("Loại đơn").select_option(order_type)
    await expect(page.get_by_role("radio", name="MoMo")).to_be_checked()
    await screenshot(page, f"demo-{order_type}-1-cart")
    await page.get_by_role("button", name="Đặt hàng và thanh toán").click()
    await expect(page.locator("#status-badge")).to_have_text("Chờ thanh toán")
    await expect(page).to_have_url(re.compile(r"/demo\?order=[0-9a-f-]{36}$"))
    # Marks this document: if it is still there at the end, nothing reloaded the page.
    await page.evaluate("window.__sameDocument = true")
    return label


async def still_same_document(page: Page) -> bool:
    return await page.evaluate("window.__sameDocument === true")


async def test_pay_with_momo_and_see_paid_pushed_live(stack, browser):
    async with new_page(browser) as page:
        label = await place_order(page, stack, "normal")
        timer = page.get_by_role("timer")
        first = await timer.inner_text()
        assert MMSS.match(first) and "14:" in first, first
        await expect(timer).not_to_have_text(first, timeout=3000)  # ticking
        await expect(page.locator("#order-items")).to_contain_text(label)
        await expect(page.locator("#retry-left")).to_have_text("Còn 3/3 lần thử lại")
        await screenshot(page, "demo-happy-2-order-countdown")

        async with page.context.expect_page() as opened:
            await page.get_by_role("link", name="Mở trang thanh toán MoMo trong thẻ mới").click()
        gateway = await opened.value
        await gateway.wait_for_load_state()
        assert "/sandbox/pay/momo/" in gateway.url
        await screenshot(gateway, "demo-happy-3-sandbox-pay-page")
        await gateway.get_by_role("button", name="Pay", exact=True).click()
        await gateway.wait_for_url(re.compile(r"/payment-result\?"))
        await expect(gateway.locator("#outcome")).to_have_text("MoMo báo: thanh toán thành công")
        await screenshot(gateway, "demo-happy-4-payment-result")

        # The first tab was never reloaded: the paid state arrived over its event stream.
        await expect(page.locator("#status-badge")).to_have_text("Đã thanh toán", timeout=5000)
        await expect(page.locator("#state-msg")).to_have_text("Cảm ơn bạn! Đơn hàng đã được thanh toán.")
        await expect(page.locator("#countdown")).to_be_hidden()
        await expect(page.locator("#pay-link")).to_be_hidden()
        await expect(page.locator("#attempts")).to_contain_text("Lần 0 · MoMo · thành công")
        assert await still_same_document(page)
        await screenshot(page, "demo-happy-5-paid-live")

        await page.get_by_role("button", name="Switch to English").click()
        await expect(page.locator("#status-badge")).to_have_text("Paid")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await screenshot(page, "demo-happy-6-paid-english")

        # The result page's link leads back to the order, which reads paid.
        await gateway.get_by_role("link", name="View the order").click()
        await expect(gateway.locator("#status-badge")).to_have_text("Paid")


async def test_flash_window_runs_out_and_the_page_shows_expired_without_reload(stack, browser):
    async with new_page(browser) as page:
        await place_order(page, stack, "flash")
        timer = page.get_by_role("timer")
        assert re.match(r"^00:0[0-3]$", await timer.inner_text())
        await screenshot(page, "demo-expiry-2-countdown")
        await expect(timer).to_have_text("00:00", timeout=5000)
        # Nobody opened the MoMo link (it answers 1000, not in flight): the window closes on the dot.
        await expect(page.locator("#pay-link")).to_be_hidden()
        await screenshot(page, "demo-expiry-3-zero")
        await expect(page.locator("#status-badge")).to_have_text("Đã hết hạn", timeout=20_000)
        await expect(page.locator("#state-msg")).to_have_text(
            "Phiên thanh toán đã hết hạn. Vui lòng tạo đơn hàng mới."
        )
        await expect(page.get_by_role("button", name="Đặt đơn mới")).to_be_visible()
        assert await still_same_document(page)
        await screenshot(page, "demo-expiry-4-expired")
