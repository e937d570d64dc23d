"""<paywindow-checkout> in Chromium on a shop's page from another origin: docs/INTEGRATION.md's
ten-line page served on its own port (http://localhost:<port>) loads the element from the API
(http://127.0.0.1:<port>, ALLOWED_ORIGINS naming the shop) with a client secret, and the test walks
the journey through it: pay; fail then retry with another gateway until the attempts run out;
cancel by keyboard; a window that expires; and coming back after the network drops and after the
stream is cut by an API restart. axe-core (npm) checks the page: no serious or critical violations.
A screenshot of each state lands in test-artifacts/element-*.png."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

import tests.test_contract as contract
from devstack.app import create_dev_app
from devstack.processes import free_port
from tests.browser.support import new_page, screenshot
from tests.conftest import make_settings, serve
from tests.helpers import click, open_pay_page

try:
    from playwright.async_api import expect
except ImportError:  # new_page() fails (or skips) each test saying what is missing
    pass

pytestmark = pytest.mark.asyncio(loop_scope="session")
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"

# What the test hears of the element: its events, recorded before the page's own scripts run.
RECORDER = """
window.seen = [];
for (const end of ["paid", "expired", "cancelled", "failed", "error"])
  addEventListener(`paywindow:${end}`, (e) => seen.push([end, e.detail.orderId ?? e.detail.code]));
"""


def host_page(api: str, order: str, secret: str, lang: str) -> str:
    """docs/INTEGRATION.md's ten-line page, as a shop would fill it in."""
    page = contract.snippet("html", "<paywindow-checkout")
    return (
        page.replace("https://pay.example.vn", api)
        .replace('"ORDER_ID"', f'"{order}"')
        .replace('"CLIENT_SECRET"', f'"{secret}"')
        .replace('<html lang="vi">', f'<html lang="{lang}">')
    )


class Shop:
    """The element's API (its own process, ALLOWED_ORIGINS = the shop) and the shop's page server."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.api_port, self.host_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.origin = f"http://localhost:{self.host_port}"
        self.settings = make_settings(
            stack.settings.database_url,
            self.api_port,
            temporal_address=stack.settings.temporal_address,
            allowed_origins=self.origin,
            rate_limit_per_minute=0,
        )
        self.api_server: Any = None

    async def start_api(self) -> None:
        self.api_server = await serve(create_dev_app(self.settings), self.api_port)

    async def stop_api(self) -> None:
        """Stop the API as a crash or a deploy would: its open event streams are cut."""
        server, task = self.api_server
        for connection in list(server.server_state.connections):
            connection.transport.close()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            server.force_exit = True
            await task

    async def host(self, request: Request) -> HTMLResponse:
        q = {k: html.escape(v, quote=True) for k, v in request.query_params.items()}
        return HTMLResponse(host_page(self.api, q["order"], q["secret"], q["lang"]))

    async def order(
        self, order_type: str = "normal", gateway: str = "momo"
    ) -> tuple[dict, dict[str, str], str]:
        """A new shopper's order and the client secret the shop's backend mints for it."""
        product = await self.stack.product(stock=3, price=129_000)
        headers = self.stack.auth(f"shop-{uuid.uuid4().hex[:8]}")
        r = await self.stack.order(
            headers, product["variants"][0]["id"], gateway=gateway, orderType=order_type
        )
        assert r.status_code == 201, r.text
        order = r.json()["data"]
        minted = await self.stack.http.post(f"/orders/{order['orderId']}/client-secret", headers=headers)
        assert minted.status_code == 201, minted.text
        return order, headers, minted.json()["data"]["clientSecret"]

    def page_url(self, order: dict, secret: str, lang: str = "en") -> str:
        return f"{self.origin}/?order={order['orderId']}&secret={secret}&lang={lang}"


@pytest.fixture(scope="module")
async def shop(stack: Any) -> AsyncIterator[Shop]:
    shop = Shop(stack)
    await shop.start_api()
    routes = [Route("/", shop.host), Route("/favicon.ico", lambda _: Response(status_code=204))]
    host_server = await serve(Starlette(routes=routes), shop.host_port)
    yield shop
    host_server[0].should_exit = True
    await host_server[1]
    await shop.stop_api()


@asynccontextmanager
async def checkout(
    browser: Any, shop: Shop, order: dict, secret: str, lang: str = "en", allow_console: Any = None
) -> AsyncIterator[Any]:
    async with new_page(browser, allow_console=allow_console) as page:
        await page.add_init_script(RECORDER)
        await page.goto(shop.page_url(order, secret, lang))
        await expect(page.locator("#status-badge")).to_have_text(re.compile(r"\S"))
        yield page


async def events(page: Any) -> list[list[str]]:
    return await page.evaluate("window.seen")


async def no_serious_axe_violations(page: Any) -> None:
    assert AXE.is_file(), f"{AXE} missing: run `npm ci` at the repository root"
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, serious


async def pay_through_popup(page: Any, action: str, gateway: str) -> None:
    """The shopper clicks the element's pay button; on the sandbox's page, `action` (Pay / Fail)."""
    async with page.context.expect_page() as opened:
        await page.get_by_role("link", name=f"Open the {gateway} payment page in a new tab").click()
    popup = await opened.value
    await popup.wait_for_load_state()
    assert "/sandbox/pay/" in popup.url
    await popup.get_by_role("button", name=action, exact=True).click()
    await popup.wait_for_url(re.compile(r"/payment-result\?"))
    await popup.close()


async def test_the_host_page_is_another_origin_and_loads_the_element_from_the_api(shop, browser):
    order, _, secret = await shop.order()
    async with checkout(browser, shop, order, secret) as page:
        assert page.url.startswith("http://localhost:") and not shop.api.startswith("http://localhost")
        timer = page.get_by_role("timer")
        first = await timer.inner_text()
        assert re.match(r"^14:\d\d$", first), first  # the server's window, not the browser's guess
        await expect(timer).not_to_have_text(first, timeout=3000)
        await expect(page.get_by_role("region", name=f"Order #{order['orderCode']}")).to_be_visible()
        await expect(page.locator("#live")).to_have_text("Live updates")
        await no_serious_axe_violations(page)
        await screenshot(page, "element-1-pending")

        # The host page styles it (custom properties, ::part) and steers it (attributes).
        await page.add_style_tag(
            content="paywindow-checkout { --paywindow-accent: rgb(11, 92, 173); }"
            " paywindow-checkout::part(pay-button) { font-size: 30px; }"
        )
        pay = page.locator("#pay-link")
        assert await pay.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 92, 173)"
        assert await pay.evaluate("e => getComputedStyle(e).fontSize") == "30px"
        element = page.locator("paywindow-checkout")
        await element.evaluate("e => e.setAttribute('gateways', 'payos,vnpay')")
        options = page.get_by_label("Retry with").locator("option")
        await expect(options).to_have_text(["PayOS", "VNPay"])
        await element.evaluate("e => e.setAttribute('lang', 'vi')")
        await expect(page.locator("#status-badge")).to_have_text("Chờ thanh toán")
        await expect(page.get_by_role("link", name="Thanh toán với MoMo")).to_be_visible()


async def test_pay(shop, browser):
    order, _, secret = await shop.order()
    async with checkout(browser, shop, order, secret) as page:
        await expect(page.locator("#retry-left")).to_have_text("3/3 retries left")
        await pay_through_popup(page, "Pay", "MoMo")
        await expect(page.locator("#status-badge")).to_have_text("Paid", timeout=5000)
        await expect(page.locator("#state-msg")).to_have_text("Thank you! The order is paid.")
        for gone in ("#countdown", "#pay-link", "#retry", "#cancel"):
            await expect(page.locator(gone)).to_be_hidden()
        await expect(page.locator("paywindow-checkout")).to_have_attribute("status", "paid")
        assert await events(page) == [["paid", order["orderId"]]]
        # The page's own handler (the tenth line) heard it too.
        await expect(page.get_by_role("link", name="Xem đơn hàng của bạn")).to_be_visible()
        await no_serious_axe_violations(page)
        await screenshot(page, "element-2-paid")


async def test_fail_then_retry_with_another_gateway_until_no_attempt_is_left(shop, browser):
    order, _, secret = await shop.order()
    async with checkout(browser, shop, order, secret) as page:
        gateways = ["MoMo", "VNPay", "MoMo", "VNPay"]  # the first attempt, then the 3 retries
        for n, gateway in enumerate(gateways):
            await pay_through_popup(page, "Fail", gateway)
            if n == len(gateways) - 1:
                break
            await expect(page.locator("#attempts")).to_contain_text(f"Attempt {n} · {gateway} · failed")
            await expect(page.locator("#state-msg")).to_contain_text("did not go through")
            await expect(page.locator("#pay-link")).to_be_hidden()
            if n == 0:
                await no_serious_axe_violations(page)
                await screenshot(page, "element-3-attempt-failed")
            retry_with = gateways[n + 1]
            # The element suggests another gateway than the one that failed.
            await expect(page.get_by_label("Retry with")).to_have_value(retry_with.lower())
            await page.get_by_role("button", name="Get a new link").click()
            await expect(page.locator("#retry-left")).to_have_text(
                f"{2 - n}/3 retries left" if n < 2 else "No retries left"
            )
            await expect(
                page.get_by_role("link", name=f"Open the {retry_with} payment page in a new tab")
            ).to_be_visible()
            if n == 0:
                await screenshot(page, "element-4-retried-with-vnpay")
        await expect(page.locator("#status-badge")).to_have_text("Payment failed", timeout=5000)
        await expect(page.locator("#state-msg")).to_have_text("This order could not be paid.")
        assert await events(page) == [["failed", order["orderId"]]]
        await screenshot(page, "element-5-failed")


async def test_cancel_with_the_keyboard(shop, browser):
    order, _, secret = await shop.order()
    async with checkout(browser, shop, order, secret, lang="vi") as page:
        await page.get_by_role("button", name="Hủy đơn").focus()
        await page.keyboard.press("Enter")
        # The question takes the focus on its safe answer; the shopper moves to "yes" and confirms.
        await expect(page.get_by_role("button", name="Không")).to_be_focused()
        await screenshot(page, "element-6-cancel-confirm")
        await page.keyboard.press("Shift+Tab")
        await expect(page.get_by_role("button", name="Có, hủy đơn")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#status-badge")).to_have_text("Đã hủy")
        await expect(page.locator("#state-msg")).to_have_text("Đơn hàng đã bị hủy, hàng đã được hoàn về kho.")
        assert await events(page) == [["cancelled", order["orderId"]]]
        await no_serious_axe_violations(page)
        await screenshot(page, "element-7-cancelled")


async def test_a_short_window_expires(shop, browser):
    order, _, secret = await shop.order(order_type="flash")  # a 3-second window
    async with checkout(browser, shop, order, secret) as page:
        await expect(page.get_by_role("timer")).to_have_text("00:00", timeout=5000)
        await expect(page.locator("#pay-link")).to_be_hidden()
        await screenshot(page, "element-8-time-up")
        await expect(page.locator("#status-badge")).to_have_text("Expired", timeout=20_000)
        await expect(page.locator("#state-msg")).to_have_text(
            "The payment window has closed. Please place a new order."
        )
        assert await events(page) == [["expired", order["orderId"]]]
        await screenshot(page, "element-9-expired")


async def test_comes_back_after_the_network_drops_and_after_the_stream_is_cut(shop, browser):
    order, headers, secret = await shop.order()
    cut = re.compile(
        r"ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_REFUSED"
    )  # the cut, as Chromium logs it
    async with checkout(browser, shop, order, secret, allow_console=cut) as page:
        await expect(page.locator("#live")).to_have_text("Live updates")
        # Offline: the element stops listening; the order changes meanwhile (a retry elsewhere).
        await page.context.set_offline(True)
        await expect(page.locator("#live")).to_have_text("Live updates lost — reconnecting…")
        retried = await shop.stack.http.post(
            f"/orders/{order['orderId']}/retry-payment", json={"gateway": "vnpay"}, headers=headers
        )
        assert retried.status_code == 200, retried.text
        await page.wait_for_timeout(1000)
        await expect(page.locator("#attempts")).not_to_contain_text("Attempt 1")  # nothing reached it
        await screenshot(page, "element-10-offline")
        await page.context.set_offline(False)
        # Back online: the order is read again, so the change made while away shows.
        await expect(page.locator("#attempts")).to_contain_text("Attempt 1 · VNPay · pending")
        await expect(page.locator("#live")).to_have_text("Live updates")

        # The API restarts: the stream is cut; the order is paid while nothing listens.
        await shop.stop_api()
        await expect(page.locator("#live")).to_have_text("Live updates lost — reconnecting…")
        latest = (await shop.stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
        await click(await open_pay_page(latest["payment"]["paymentUrl"]), "pay")
        await screenshot(page, "element-11-stream-cut")
        await shop.start_api()
        await expect(page.locator("#status-badge")).to_have_text("Paid", timeout=20_000)
        assert await events(page) == [["paid", order["orderId"]]]
        await screenshot(page, "element-12-paid-after-reconnect")


async def test_a_revoked_secret_is_told_to_the_host_page(shop, browser):
    order, headers, secret = await shop.order()
    revoked = await shop.stack.http.delete(f"/orders/{order['orderId']}/client-secret", headers=headers)
    assert revoked.status_code == 200
    async with new_page(browser, allow_http_errors=True) as page:
        await page.add_init_script(RECORDER)
        await page.goto(shop.page_url(order, secret))
        await expect(page.get_by_role("alert")).to_have_text(
            "This checkout was revoked. Please reload the page."
        )
        assert await events(page) == [["error", "CLIENT_SECRET_REVOKED"]]
        await screenshot(page, "element-13-revoked")
