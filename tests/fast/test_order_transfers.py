"""Money counted per transfer (PayOS: one link can take several transfers, each reported by its own
webhook), and an operator's decision about an attempt's money standing against the workflow."""

from __future__ import annotations

import pytest

from tests.fast.world import World
from tests.recorded import keep

pytestmark = pytest.mark.asyncio(loop_scope="session")
PRICE = 30_000


async def test_transfers_that_add_up_to_the_price_pay_the_order(world: World) -> None:
    order = await world.start(gateway="payos")
    await order.transfer(10_000, "ref-1")
    view = await order.until(lambda v: v.attempts[0].status == "needs_review")
    assert view.order_status == "pending_payment"
    [short] = world.called("flag_for_review")
    assert (short.amount, short.reason, short.surplus) == (
        10_000,
        "underpaid: received 10000 of 30000 VND",
        False,
    )
    await order.transfer(10_000, "ref-1")  # the same transfer again: counted once
    await order.transfer(PRICE - 10_000, "ref-2")  # the top-up
    assert await order.outcome() == ("paid", "paid_via_payos")
    [transition] = world.called("transition_order")
    assert transition.attempt.received_amount == PRICE and transition.attempt.transaction_id == "ref-2"
    assert len(world.called("flag_for_review")) == 1
    await keep(order.handle, "order", "payos_paid_in_two_parts")


async def test_a_transfer_beyond_the_price_of_a_paid_link_goes_to_review_for_the_extra(world: World) -> None:
    world.cancel_fails = True  # its other link's cancellation keeps the paid workflow open a while
    order = await world.start(gateway="payos")
    await order.retry()
    await order.transfer(PRICE, "ref-1")
    await order.until(lambda v: v.order_status == "paid")
    await order.transfer(5_000, "ref-2")
    await order.transfer(5_000, "ref-2")  # repeated: one surplus
    await order.transfer(7_000, "ref-3")
    assert await order.outcome() == ("paid", "paid_via_payos")
    surplus = [(r.amount, r.transaction_id, r.surplus) for r in world.called("flag_for_review")]
    assert surplus == [(5_000, "ref-2", True), (7_000, "ref-3", True)]
    assert world.called("request_late_settlement") == []
    await keep(order.handle, "order", "payos_overpaid_after_paid")


async def test_every_transfer_after_the_order_ended_is_settled(world: World) -> None:
    order = await world.start(gateway="payos")
    await order.transfer(10_000, "ref-1")
    await order.until(lambda v: v.attempts[0].status == "needs_review")
    world.orders[order.id] = "expired"  # ended in Postgres; the workflow learns it at its transition
    await order.transfer(20_000, "ref-2")
    await order.transfer(4_000, "ref-3")
    assert (await order.outcome())[0] == "expired"
    late = [(x.amount, x.transaction_id) for x in world.called("request_late_settlement")]
    assert late == [(20_000, "ref-2"), (4_000, "ref-3")]  # each transfer, for its own amount


async def test_an_operators_refund_stands_and_later_money_never_pays_with_it(world: World) -> None:
    """An operator marked the short transfer refunded while the order was open; the shopper then
    paid the rest. The workflow, holding the attempt as needs_review, must not pay the order."""
    order = await world.start(gateway="payos")
    await order.transfer(10_000, "ref-1")
    await order.until(lambda v: v.attempts[0].status == "needs_review")
    world.settled[order.attempt.gateway_order_id] = "refunded"
    await order.transfer(PRICE - 10_000, "ref-2")
    view = await order.until(lambda v: v.attempts[0].status == "refunded")
    assert view.order_status == "pending_payment"
    surplus = [(r.amount, r.transaction_id, r.surplus) for r in world.called("flag_for_review")]
    assert surplus == [(10_000, "ref-1", False), (20_000, "ref-2", True)]
    await order.transfer(1_000, "ref-3")
    assert await order.outcome() == ("expired", "payment_window_closed")
    assert [r.amount for r in world.called("flag_for_review")][2:] == [1_000]
    await keep(order.handle, "order", "operator_refunded_then_paid")
