"""The store's statements against real Postgres, without workflows or HTTP: the rules that live in
SQL (one transition, one restock, stock never below zero, money review that never overrides
settled money, the inbox's deduplication, the outbox's leases and capped backoff)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from devstack.migrate import upgrade
from domain.checkout import Rejected
from domain.messages import (
    AttemptUpdate,
    CreateOrderInput,
    LinkInput,
    OrderLine,
    PaymentResult,
    Receiver,
    ReviewInput,
)
from domain.statuses import OrderStatus
from infra.db import async_url
from store import catalog, inventory, orders, outbox, payments
from tests.conftest import fresh_database

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database of its own: the session's relays deliver every event of the shared one."""
    url = await fresh_database(pg_url)
    await asyncio.to_thread(upgrade, async_url(url))  # alembic's env.py runs its own event loop
    engine = create_async_engine(async_url(url), pool_size=5)
    yield engine
    await engine.dispose()


async def variant(engine: AsyncEngine, stock: int, price: int = 40_000) -> str:
    vid = uuid.uuid4()
    new = [
        catalog.NewVariant(
            id=vid, sku=f"S-{uuid.uuid4().hex[:10]}", name="V", price=price, stock_quantity=stock
        )
    ]
    async with engine.connect() as conn:
        await catalog.create_product(conn, uuid.uuid4(), "Store test", "", new)
    return str(vid)


async def stock(engine: AsyncEngine, vid: str) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(text("SELECT stock_quantity FROM product_variant WHERE id = :v"), {"v": vid})
        ).scalar_one()


async def new_order(engine: AsyncEngine, vid: str, qty: int = 1) -> str:
    now = datetime.now(UTC)
    inp = CreateOrderInput(
        order_id=str(uuid.uuid4()),
        customer_id="store",
        lines=[OrderLine(vid, qty)],
        order_type="normal",
        receiver=Receiver(name="A", phone="0901234567", address="HCMC"),
        started_at=now,
        expires_at=now + timedelta(minutes=15),
        duration_minutes=15,
        max_attempts=3,
        request_hash="h",
        gateway="momo",
    )
    async with engine.begin() as conn:
        lines = await inventory.reserve(conn, inp.lines)
        await orders.create(conn, inp, lines)
    return inp.order_id


async def add_attempt(engine: AsyncEngine, order_id: str, n: int = 0, amount: int = 40_000) -> str:
    now = datetime.now(UTC)
    gid = f"{uuid.uuid4().hex[:9]}-{n}"
    inp = LinkInput(
        order_id=order_id,
        order_code=123456789,
        attempt_no=n,
        gateway="momo",
        amount=amount,
        description="d",
        created_at=now,
        expires_at=now + timedelta(minutes=15),
        items=[],
    )
    async with engine.begin() as conn:
        await payments.store_link(conn, inp, gid, f"{order_id}-{n}", "https://pay.example/x")
    return gid


async def events_of(engine: AsyncEngine, order_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT type FROM order_event WHERE order_id = :id ORDER BY created_at"), {"id": order_id}
        )
        return [r.type for r in rows]


async def test_one_transition_one_restock_one_event(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=5)
    oid = await new_order(engine, vid, qty=2)
    assert await stock(engine, vid) == 3
    async with engine.begin() as conn:
        first = await orders.transition(conn, oid, OrderStatus.EXPIRED, "payment_window_closed", None)
    async with engine.begin() as conn:
        again = await orders.transition(conn, oid, OrderStatus.CANCELLED, "too late", None)
    assert (first.moved, first.status) == (True, "expired")
    assert (again.moved, again.status) == (False, "expired")  # the guard: a no-op, no second restock
    assert await stock(engine, vid) == 5
    assert await events_of(engine, oid) == ["order.created", "order.expired"]


async def test_paid_keeps_the_stock_sold_and_records_the_verdict(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=2)
    oid = await new_order(engine, vid)
    gid = await add_attempt(engine, oid)
    verdict = AttemptUpdate(
        order_id=oid, attempt_no=0, status="success", result_code="0", transaction_id="tx-1"
    )
    async with engine.begin() as conn:
        moved = await orders.transition(conn, oid, OrderStatus.PAID, "paid_via_momo", verdict)
    assert moved.moved and await stock(engine, vid) == 1
    async with engine.connect() as conn:
        row = await payments.by_gateway_id(conn, "momo", gid)
    assert (row.status, row.transaction_id) == ("success", "tx-1")


async def test_racing_for_the_last_units_never_goes_below_zero(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=3)

    async def buy() -> bool:
        try:
            await new_order(engine, vid, qty=2)
        except Rejected as refused:
            assert refused.code == "OUT_OF_STOCK"
            return False
        return True

    made = await asyncio.gather(*(buy() for _ in range(4)))
    assert made.count(True) == 1 and await stock(engine, vid) == 1


async def test_review_never_overrides_settled_money(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=3)
    oid = await new_order(engine, vid)
    gid = await add_attempt(engine, oid)
    review = ReviewInput(
        order_id=oid,
        gateway="momo",
        gateway_order_id=gid,
        reason="underpaid: received 1000 of 40000 VND",
        amount=1_000,
        result_code="0",
        transaction_id="tx-short",
    )
    async with engine.begin() as conn:
        assert await payments.flag(conn, review) is True
        assert await payments.flag(conn, review) is False  # the same reason again: nothing new
    async with engine.begin() as conn:
        await orders.transition(
            conn,
            oid,
            OrderStatus.PAID,
            "paid",
            AttemptUpdate(
                order_id=oid, attempt_no=0, status="success", result_code="0", transaction_id="tx-2"
            ),
        )
    async with engine.begin() as conn:
        assert (
            await payments.flag(
                conn,
                ReviewInput(
                    order_id=oid,
                    gateway="momo",
                    gateway_order_id=gid,
                    reason="overpaid",
                    amount=90_000,
                    result_code="0",
                ),
            )
            is False
        )
        row = await payments.by_gateway_id(conn, "momo", gid)
    assert row.status == "success"
    assert (await events_of(engine, oid)).count("payment.needs_review") == 1


async def test_the_inbox_keeps_a_verdict_once_and_knows_what_was_handed_on(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=3)
    oid = await new_order(engine, vid)
    gid = await add_attempt(engine, oid)
    verdict = PaymentResult(
        gateway="momo",
        gateway_order_id=gid,
        outcome="success",
        result_code="0",
        amount=40_000,
        transaction_id="tx-9",
    )
    key = payments.dedupe_key("momo", gid, "success", "tx-9", "0", 40_000)
    other_amount = payments.dedupe_key("momo", gid, "success", "tx-9", "0", 1_000)
    assert key != other_amount  # another amount is another claim, kept apart
    async with engine.begin() as conn:
        assert await payments.store_verdict(conn, oid, verdict, key, {"a": 1}) == (True, True)
        assert await payments.store_verdict(conn, oid, verdict, key, {"a": 1}) == (False, True)
        await payments.mark_delivered(conn, key)
        assert await payments.store_verdict(conn, oid, verdict, key, {"a": 1}) == (False, False)
    async with engine.begin() as conn:
        taken = await payments.take_inbox(conn, oid)
    assert taken == [verdict]


async def test_the_outbox_leases_skip_locked_and_back_off_to_the_cap(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=3)
    oid = await new_order(engine, vid)  # writes order.created
    async with engine.begin() as a, engine.begin() as b:
        first = await outbox.claim_due(a, batch=10_000, lease_s=60)
        second = await outbox.claim_due(b, batch=10_000, lease_s=60)  # waits for nothing: SKIP LOCKED
    mine = [e for e in first + second if str(e.order_id) == oid]
    assert len(mine) == 1
    assert not {e.id for e in first} & {e.id for e in second}
    async with engine.begin() as conn:
        for _ in range(8):  # 2^attempts grows past the cap
            await outbox.failed(conn, {mine[0].id: "receiver down"}, cap_s=5)
        due = (
            await conn.execute(
                text(
                    "SELECT attempts, next_attempt_at - now() AS wait, last_error FROM order_event WHERE id = :id"
                ),
                {"id": mine[0].id},
            )
        ).one()
    assert due.attempts == 8 and due.last_error == "receiver down"
    assert due.wait <= timedelta(seconds=5)
    async with engine.begin() as conn:
        await outbox.delivered(conn, [e.id for e in first + second])
        undelivered = await outbox.undelivered_of(conn, oid)
    assert undelivered == []


async def test_listing_filters_by_payment_status(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=5)
    customer = f"lister-{uuid.uuid4().hex[:6]}"
    ids = []
    for _ in range(2):
        oid = await new_order(engine, vid)
        async with engine.begin() as conn:
            await conn.execute(
                text('UPDATE "order" SET customer_id = :c WHERE id = :id'), {"c": customer, "id": oid}
            )
        ids.append(oid)
    gid = await add_attempt(engine, ids[1])
    async with engine.begin() as conn:
        await payments.flag(
            conn,
            ReviewInput(
                order_id=ids[1],
                gateway="momo",
                gateway_order_id=gid,
                reason="success without an amount",
                amount=None,
                result_code="0",
            ),
        )
        total, rows = await orders.listing(
            conn, orders.OrderFilter(customer_id=customer, payment_status="needs_review"), ("success",), 10, 0
        )
        everything = await orders.listing(
            conn, orders.OrderFilter(customer_id=customer), ("needs_review",), 10, 0
        )
    assert total == 1 and [str(r.id) for r in rows] == [ids[1]]
    assert everything[0] == 2
    statuses: dict[str, Any] = {str(r.id): r.payment_status for r in everything[1]}
    assert statuses == {ids[0]: None, ids[1]: "needs_review"}


# ---- an operator's decision stands; money beside an attempt --------------------------------------------


async def set_status(engine: AsyncEngine, gid: str, status: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE payment SET status = :s WHERE gateway_order_id = :g AND surplus_of IS NULL"),
            {"s": status, "g": gid},
        )


@pytest.mark.parametrize("settled", ["refunded", "refund_required"])
async def test_the_transition_never_pays_with_nor_overwrites_money_an_operator_settled(
    engine: AsyncEngine, settled: str
) -> None:
    vid = await variant(engine, stock=2)
    oid = await new_order(engine, vid)
    gid = await add_attempt(engine, oid)
    await set_status(engine, gid, settled)
    paid = AttemptUpdate(
        order_id=oid,
        attempt_no=0,
        status="success",
        result_code="00",
        transaction_id="ref-2",
        received_amount=40_000,
    )
    async with engine.begin() as conn:
        refused = await orders.transition(conn, oid, OrderStatus.PAID, "paid_via_payos", paid)
    assert (refused.moved, refused.status, refused.attempt_status) == (False, "pending_payment", settled)
    assert await stock(engine, vid) == 1  # still reserved: the order is open
    rest = ReviewInput(
        order_id=oid,
        gateway="momo",
        gateway_order_id=gid,
        reason="received after the payment was settled",
        amount=20_000,
        result_code="00",
        transaction_id="ref-2",
        surplus=True,
    )
    failed = AttemptUpdate(order_id=oid, attempt_no=0, status="failed", result_code="1", transaction_id=None)
    async with engine.begin() as conn:  # another ending moves the order, and leaves the attempt as it is
        assert await payments.flag(conn, rest) is True
        moved = await orders.transition(conn, oid, OrderStatus.FAILED, "max_attempts_failed", failed)
        row = await payments.by_gateway_id(conn, "momo", gid)
        surplus = (
            await conn.execute(text("SELECT status FROM payment WHERE surplus_of = :p"), {"p": row.id})
        ).scalar_one()
    assert (moved.moved, moved.status, moved.attempt_status) == (True, "failed", settled)
    assert row.status == settled and await stock(engine, vid) == 2
    assert surplus == "needs_review"  # nor is a surplus row touched


async def test_paid_records_what_was_received(engine: AsyncEngine) -> None:
    vid = await variant(engine, stock=2)
    oid = await new_order(engine, vid)
    gid = await add_attempt(engine, oid)
    async with engine.begin() as conn:
        moved = await orders.transition(
            conn,
            oid,
            OrderStatus.PAID,
            "paid",
            AttemptUpdate(
                order_id=oid,
                attempt_no=0,
                status="success",
                result_code="00",
                transaction_id="ref-2",
                received_amount=40_000,
            ),
        )
        row = await payments.by_gateway_id(conn, "momo", gid)
    assert (moved.moved, moved.attempt_status) == (True, "success")
    assert (row.status, row.received_amount, row.transaction_id) == ("success", 40_000, "ref-2")


async def test_a_surplus_gets_its_own_review_row_once_per_transfer_and_the_attempt_stays(
    engine: AsyncEngine,
) -> None:
    vid = await variant(engine, stock=2)
    oid = await new_order(engine, vid)
    gid = await add_attempt(engine, oid)
    async with engine.begin() as conn:
        await orders.transition(
            conn,
            oid,
            OrderStatus.PAID,
            "paid",
            AttemptUpdate(
                order_id=oid,
                attempt_no=0,
                status="success",
                result_code="00",
                transaction_id="r1",
                received_amount=40_000,
            ),
        )
    extra = ReviewInput(
        order_id=oid,
        gateway="momo",
        gateway_order_id=gid,
        reason="surplus: received 5000 VND beyond the price",
        amount=5_000,
        result_code="00",
        transaction_id="r2",
        surplus=True,
    )
    async with engine.begin() as conn:
        assert await payments.flag(conn, extra) is True
        assert await payments.flag(conn, extra) is False  # the same transfer again: one row
        assert (
            await payments.flag(
                conn,
                ReviewInput(
                    order_id=oid,
                    gateway="momo",
                    gateway_order_id=gid,
                    reason="surplus",
                    amount=7_000,
                    result_code="00",
                    transaction_id="r3",
                    surplus=True,
                ),
            )
            is True
        )
        row = await payments.by_gateway_id(conn, "momo", gid)
        rows = (
            await conn.execute(
                text(
                    "SELECT status, amount, received_amount, transaction_id, surplus_of FROM payment "
                    "WHERE order_id = :id AND surplus_of IS NOT NULL ORDER BY transaction_id"
                ),
                {"id": oid},
            )
        ).all()
    assert (row.status, row.received_amount) == ("success", 40_000)
    assert [tuple(r)[:4] for r in rows] == [
        ("needs_review", 5_000, 5_000, "r2"),
        ("needs_review", 7_000, 7_000, "r3"),
    ]
    assert {r.surplus_of for r in rows} == {row.id}
    async with engine.connect() as conn:
        matched = await payments.match(conn, "momo", gid)
        desk_total, _ = await payments.desk(conn, payments.DeskFilter(), 50, 0)
    assert matched is not None and matched.attempt_status == "success"  # the attempt, not its surplus
    assert desk_total >= 2
