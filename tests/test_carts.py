"""Carts of several lines on the real stack (API -> Temporal dev server -> worker -> Postgres): totals
and frozen items per line, every line's stock reserved in one statement, two carts racing over the
same variants in opposite orders (locks taken in id order: no deadlock, stock conserved), one line
short refusing the whole cart with no line's stock moved, and an ended order giving every line back
exactly once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import own_stack
from tests.helpers import wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="session")
RECEIVER = {"name": "Nguyễn Văn A", "phone": "0901234567", "address": "1 Lê Lợi, Q1, HCMC"}


async def cart(
    stack: Any, headers: dict[str, str], lines: list[tuple[str, int]], **extra: Any
) -> httpx.Response:
    body = {
        "items": [{"variantId": vid, "quantity": qty} for vid, qty in lines],
        "gateway": "momo",
        "receiver": RECEIVER,
        **extra,
    }
    return await stack.http.post("/orders", json=body, headers=headers)


async def variants(stack: Any, stocks_and_prices: list[tuple[int, int]]) -> list[str]:
    """One product per (stock, price): variants of different products, as a real cart holds."""
    made = [await stack.product(stock=stock, price=price) for stock, price in stocks_and_prices]
    return [p["variants"][0]["id"] for p in made]


async def test_a_cart_of_three_lines_freezes_each_line_and_reserves_each_stock(stack):
    a, b, c = await variants(stack, [(10, 45_000), (4, 12_000), (7, 3_500)])
    headers = stack.auth(f"cart-{uuid.uuid4().hex[:6]}")
    r = await cart(stack, headers, [(a, 2), (b, 4), (c, 1)])
    assert r.status_code == 201, r.text
    order = r.json()["data"]
    total = 2 * 45_000 + 4 * 12_000 + 1 * 3_500
    assert order["subtotalAmount"] == order["grandTotal"] == total
    lines = {i["variantId"]: (i["quantity"], i["unitPrice"]) for i in order["items"]}
    assert lines == {a: (2, 45_000), b: (4, 12_000), c: (1, 3_500)}
    assert [await stack.stock(v) for v in (a, b, c)] == [8, 0, 6]
    # The link asks the gateway for the cart's total, not one line's.
    async with stack.engine.connect() as conn:
        frozen = (
            await conn.execute(
                text("SELECT variant_id::text, quantity, unit_price FROM order_item WHERE order_id = :id"),
                {"id": order["orderId"]},
            )
        ).all()
        link = (
            await conn.execute(
                text("SELECT amount FROM payment WHERE order_id = :id"), {"id": order["orderId"]}
            )
        ).scalar_one()
    assert {r.variant_id: (r.quantity, r.unit_price) for r in frozen} == lines
    assert link == total
    # A price change after the order does not reach its frozen items.
    r = await stack.http.patch(
        f"/admin/variants/{a}", json={"price": 99_000}, headers=stack.auth("ops", "admin")
    )
    assert r.status_code == 200, r.text
    detail = (await stack.http.get(f"/orders/{order['orderId']}", headers=headers)).json()["data"]
    assert (
        detail["grandTotal"] == total
        and {i["variantId"]: i["unitPrice"] for i in detail["items"]}[a] == 45_000
    )


async def test_one_line_short_refuses_the_cart_and_moves_no_line(stack):
    a, b, c = await variants(stack, [(5, 20_000), (1, 20_000), (5, 20_000)])
    headers = stack.auth(f"short-{uuid.uuid4().hex[:6]}")
    for lines in (
        [(a, 2), (b, 2), (c, 2)],
        [(c, 5), (a, 5), (b, 2)],
        [(a, 1), (b, 1), (b, 1)],
    ):  # b twice: 2 of 1
        r = await cart(stack, headers, lines)
        assert r.status_code == 409 and r.json()["error"] == "OUT_OF_STOCK", r.text
        assert [await stack.stock(v) for v in (a, b, c)] == [5, 1, 5], lines
    async with stack.engine.connect() as conn:
        items = (
            await conn.execute(
                text("SELECT count(*) FROM order_item WHERE variant_id = ANY(:v)"), {"v": [a, b, c]}
            )
        ).scalar_one()
    assert items == 0
    # The same cart with enough of every line goes through, taking each line once.
    r = await cart(stack, headers, [(a, 2), (b, 1), (c, 2)])
    assert r.status_code == 201, r.text
    assert [await stack.stock(v) for v in (a, b, c)] == [3, 0, 3]


async def test_carts_racing_over_the_same_variants_in_opposite_orders(pg_url, dev_env):
    """Sixteen carts at once, half listing (a, b, c), half (c, b, a), for ten units of each: ten
    orders, six refusals, every unit accounted for, and Postgres saw no deadlock (its own counter,
    in a database of this test's own)."""
    async with own_stack(pg_url, dev_env) as s:
        a, b, c = await variants(s, [(10, 10_000), (10, 20_000), (10, 30_000)])
        forward, backward = [(a, 1), (b, 1), (c, 1)], [(c, 1), (b, 1), (a, 1)]
        answers = await asyncio.gather(
            *(cart(s, s.auth(f"racer-{i}"), forward if i % 2 else backward) for i in range(16))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 10 + [409] * 6, [r.text for r in answers if r.status_code not in (201, 409)]
        assert all(r.json()["error"] == "OUT_OF_STOCK" for r in answers if r.status_code == 409)
        assert [await s.stock(v) for v in (a, b, c)] == [0, 0, 0]
        async with s.engine.connect() as conn:
            reserved = dict(
                (
                    await conn.execute(
                        text(
                            'SELECT i.variant_id::text, sum(i.quantity) FROM order_item i JOIN "order" o '
                            "ON o.id = i.order_id WHERE o.status = 'pending_payment' GROUP BY i.variant_id"
                        )
                    )
                ).all()
            )
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        assert reserved == {a: 10, b: 10, c: 10}
        # A deadlock would have been retried by the activity and hidden from the answers; Postgres
        # counts it. Its statistics are flushed by each backend within a second of the transaction.
        await asyncio.sleep(1.5)  # bounded observation window for a count that must stay 0
        async with s.engine.connect() as conn:
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            deadlocks = (
                await conn.execute(
                    text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
                )
            ).scalar_one()
        assert deadlocks == 0
        # Cancelling every order gives each line back once: the catalog is whole again.
        for r in answers:
            if r.status_code == 201:
                order = r.json()["data"]
                done = await s.http.post(
                    f"/orders/{order['orderId']}/cancel", headers=s.auth(order["customerId"])
                )
                assert done.status_code == 200, done.text
        assert [await s.stock(v) for v in (a, b, c)] == [10, 10, 10]


async def test_expiry_and_cancel_give_every_line_back_exactly_once(stack):
    a, b = await variants(stack, [(6, 15_000), (6, 25_000)])
    headers = stack.auth(f"restock-{uuid.uuid4().hex[:6]}")
    expiring = await cart(stack, headers, [(a, 2), (b, 3)], orderType="flash")  # a 3-second window
    cancelled = await cart(stack, headers, [(b, 1), (a, 1)])
    assert expiring.status_code == cancelled.status_code == 201, (expiring.text, cancelled.text)
    assert [await stack.stock(v) for v in (a, b)] == [3, 2]
    cid = cancelled.json()["data"]["orderId"]
    assert (await stack.http.post(f"/orders/{cid}/cancel", headers=headers)).status_code == 200
    assert [await stack.stock(v) for v in (a, b)] == [4, 3]
    assert (await stack.http.post(f"/orders/{cid}/cancel", headers=headers)).status_code == 409
    await wait_for_status(stack, expiring.json()["data"]["orderId"], headers, "expired", timeout=20)
    assert [await stack.stock(v) for v in (a, b)] == [6, 6]
    # A second close (an operator's expire on the ended order) gives nothing back twice.
    eid = expiring.json()["data"]["orderId"]
    r = await stack.http.post(f"/admin/orders/{eid}/expire", headers=stack.auth("ops", "admin"))
    assert r.status_code == 409 and r.json()["error"] == "ORDER_NOT_PENDING"
    assert [await stack.stock(v) for v in (a, b)] == [6, 6]
