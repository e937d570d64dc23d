"""Catalog upkeep by operators, over HTTP on the shared stack (each test reads only its own product):
stock corrected atomically and never below zero, prices that change new orders only, withdrawn
variants that take no new orders while placed ones go on, and an audit entry for every change,
written in its transaction."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Stack
from tests.helpers import click, open_pay_page, wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="session")


def admin(stack: Stack) -> dict[str, str]:
    return stack.auth("catalog-admin", "admin")


async def patch(
    stack: Stack, variant_id: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    return await stack.http.patch(f"/admin/variants/{variant_id}", json=body, headers=headers or admin(stack))


async def listed(stack: Stack, product_id: str) -> dict:
    r = await stack.http.get("/admin/variants", params={"productId": product_id}, headers=admin(stack))
    assert r.status_code == 200, r.text
    [variant] = r.json()["data"]["items"]
    return variant


async def trail(stack: Stack, variant_id: str) -> list[dict]:
    r = await stack.http.get(
        "/admin/audit", params={"variantId": variant_id, "size": 100}, headers=admin(stack)
    )
    return r.json()["data"]["items"]


async def test_restock_and_corrections_are_atomic_and_never_below_zero(stack: Stack) -> None:
    product = await stack.product(stock=3)
    vid = product["variants"][0]["id"]
    r = await patch(stack, vid, {"stockDelta": 5, "note": "delivery 42"})
    assert r.status_code == 200, r.text
    assert (r.json()["data"]["onHand"], r.json()["data"]["reserved"]) == (8, 0)
    shopper = stack.auth()
    assert (await stack.order(shopper, vid, 2)).status_code == 201
    variant = await listed(stack, product["id"])
    assert (variant["onHand"], variant["reserved"], variant["active"], variant["sku"]) == (
        6,
        2,
        True,
        product["variants"][0]["sku"],
    )

    r = await patch(stack, vid, {"stockDelta": -7})
    assert r.status_code == 409 and r.json()["error"] == "STOCK_WOULD_GO_NEGATIVE", r.text
    assert await stack.stock(vid) == 6
    answers = await asyncio.gather(*(patch(stack, vid, {"stockDelta": -1}) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [200] * 6 + [409] * 4
    assert await stack.stock(vid) == 0

    entries = await trail(stack, vid)
    assert len(entries) == 7 and {e["action"] for e in entries} == {"variant.update"}
    first = entries[-1]
    assert first["note"] == "delivery 42" and first["actor"] == "catalog-admin"
    assert first["detail"]["stockDelta"] == 5
    assert first["detail"]["before"]["stockQuantity"] == 3 and first["detail"]["after"]["stockQuantity"] == 8


async def test_a_new_price_is_for_new_orders_only(stack: Stack) -> None:
    product = await stack.product(stock=5, price=50_000)
    vid = product["variants"][0]["id"]
    shopper = stack.auth()
    before = (await stack.order(shopper, vid, 1)).json()["data"]
    r = await patch(stack, vid, {"price": 70_000, "note": "new season"})
    assert r.status_code == 200 and r.json()["data"]["price"] == 70_000, r.text
    after = (await stack.order(shopper, vid, 1)).json()["data"]
    kept = (await stack.http.get(f"/orders/{before['orderId']}", headers=shopper)).json()["data"]
    assert (kept["items"][0]["unitPrice"], kept["grandTotal"]) == (50_000, 50_000)
    assert (after["items"][0]["unitPrice"], after["grandTotal"]) == (70_000, 70_000)
    catalog = (await stack.http.get("/products")).json()["data"]
    assert next(p for p in catalog if p["id"] == product["id"])["variants"][0]["price"] == 70_000
    [entry] = await trail(stack, vid)
    assert (entry["detail"]["before"]["price"], entry["detail"]["after"]["price"]) == (50_000, 70_000)


async def test_a_withdrawn_variant_takes_no_new_orders_and_placed_ones_go_on(stack: Stack) -> None:
    product = await stack.product(stock=5)
    vid = product["variants"][0]["id"]
    shopper = stack.auth()
    placed = (await stack.order(shopper, vid, 1)).json()["data"]
    r = await patch(stack, vid, {"active": False, "note": "recalled"})
    assert r.status_code == 200 and r.json()["data"]["active"] is False, r.text

    r = await stack.order(shopper, vid, 1)
    assert r.status_code == 409 and r.json()["error"] == "VARIANT_UNAVAILABLE", r.text
    assert product["id"] not in {p["id"] for p in (await stack.http.get("/products")).json()["data"]}
    assert await stack.stock(vid) == 4  # the refusal took nothing
    await click(await open_pay_page(placed["attempts"][0]["paymentUrl"]), "pay")
    await wait_for_status(stack, placed["orderId"], shopper, "paid")  # the placed order is untouched

    assert (await patch(stack, vid, {"active": True})).status_code == 200
    assert (await stack.order(shopper, vid, 1)).status_code == 201
    assert [e["detail"]["after"]["active"] for e in await trail(stack, vid)] == [True, False]


async def test_bad_corrections_get_clear_errors(stack: Stack) -> None:
    product = await stack.product(stock=5)
    vid = product["variants"][0]["id"]
    for body in (
        {},
        {"stockDelta": 0},
        {"note": "nothing"},
        {"price": -1},
        {"price": "100"},
        {"price": 1.5},
        {"active": "yes"},
        {"stock": 1},
        {"stockDelta": 10**10},
    ):
        r = await patch(stack, vid, body)
        assert r.status_code == 422 and r.json()["error"] == "VALIDATION_ERROR" and r.json()["message"], (
            body,
            r.text,
        )
    r = await patch(stack, vid, {"stockDelta": 10**9})  # valid alone, but more than a variant may hold
    assert (
        r.status_code == 422
        and r.json()["error"] == "VALIDATION_ERROR"
        and "1,000,000,000" in r.json()["message"]
    )
    r = await patch(stack, str(uuid.uuid4()), {"stockDelta": 1})
    assert r.status_code == 404 and r.json()["error"] == "VARIANT_NOT_FOUND"
    assert (await patch(stack, "not-a-variant", {"stockDelta": 1})).status_code == 422
    shopper = stack.auth()
    assert (await patch(stack, vid, {"stockDelta": 1}, headers=shopper)).status_code == 403
    assert (await stack.http.get("/admin/variants", headers=shopper)).status_code == 403
    assert await stack.stock(vid) == 5 and await trail(stack, vid) == []


async def test_a_correction_that_fails_leaves_no_audit_entry(stack: Stack) -> None:
    """The entry is written first, in the correction's transaction: kill the change and it is gone."""
    product = await stack.product(stock=5)
    vid = uuid.UUID(product["variants"][0]["id"])  # a UUID: safe to write into the DDL
    name = f"refuse_{vid.hex[:12]}"
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
        )
        await conn.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON product_variant FOR EACH ROW "
                f"WHEN (OLD.id = '{vid}') EXECUTE FUNCTION {name}()"
            )
        )
    try:
        r = await patch(stack, str(vid), {"stockDelta": 3, "note": "will fail"})
        assert r.status_code == 500 and r.json()["error"] == "INTERNAL_ERROR", r.text
    finally:
        async with stack.engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER {name} ON product_variant"))
            await conn.execute(text(f"DROP FUNCTION {name}()"))
    assert await stack.stock(str(vid)) == 5 and await trail(stack, str(vid)) == []
    assert (await patch(stack, str(vid), {"stockDelta": 3})).status_code == 200
    assert await stack.stock(str(vid)) == 8 and len(await trail(stack, str(vid))) == 1
