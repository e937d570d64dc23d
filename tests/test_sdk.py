"""`/sdk/paywindow-checkout.js`: served as a cacheable, revalidated, cross-origin-loadable module;
the versioned copy beside it is immutable; unknown versions are 404."""

from __future__ import annotations

import re

import httpx
import pytest

from api.routes.sdk import ELEMENT

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_element_is_served_cacheable_with_an_etag_and_a_pinned_copy(stack):
    version = re.search(r'export const VERSION = "([\d.]+)";', ELEMENT.read_text()).group(1)
    async with httpx.AsyncClient(base_url=stack.base) as http:
        latest = await http.get("/sdk/paywindow-checkout.js", headers={"Origin": "https://shop.example"})
        assert latest.status_code == 200 and latest.headers["content-type"].startswith("text/javascript")
        assert latest.content == ELEMENT.read_bytes()
        assert latest.headers["cache-control"] == "public, max-age=300, must-revalidate"
        assert latest.headers["access-control-allow-origin"] == "*"  # module scripts load with CORS
        assert latest.headers["x-paywindow-sdk-version"] == version
        etag = latest.headers["etag"]
        again = await http.get("/sdk/paywindow-checkout.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and not again.content and again.headers["etag"] == etag

        pinned = await http.get(f"/sdk/paywindow-checkout@{version}.js")
        assert pinned.status_code == 200 and pinned.content == latest.content
        assert "immutable" in pinned.headers["cache-control"] and pinned.headers["etag"] == etag
        for unknown in ("0.0.1", "latest", "..%2f..%2fapp", "1.0.0.js"):
            assert (await http.get(f"/sdk/paywindow-checkout@{unknown}.js")).status_code == 404, unknown
        assert (await http.get("/sdk/other.js")).status_code == 404
