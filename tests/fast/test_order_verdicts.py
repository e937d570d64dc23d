"""The gateway's verdicts, signalled: what pays, what goes to review, what ends an attempt or the
order, what is applied once, and money for an order that has already ended."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from domain.messages import Attempt, AttemptUpdate, LatePayment
from tests.fast.world import World, refused
from tests.recorded import keep

pytestmark = pytest.mark.asyncio(loop_scope="session")
STRANGER = Attempt(
    attempt_no=7,
    gateway="momo",
    gateway_order_id="999-7",
    request_id="r",
    amount=30_000,
    status="pending",
    payment_url="u",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)  # not ours


async def test_a_success_for_the_exact_amount_pays(world: World) -> None:
    order = await world.start()
    await order.verdict("success", 30_000)
    assert await order.outcome() == ("paid", "paid_via_momo")
    [transition] = world.called("transition_order")
    gid = order.attempt.gateway_order_id
    assert transition.attempt == AttemptUpdate(
        order_id=order.id,
        attempt_no=0,
        status="success",
        result_code="0",
        transaction_id=f"tx-{gid}",
        received_amount=30_000,
    )
    view = await order.view()
    assert (view.status, view.attempts[0].status) == ("completed", "success")


@pytest.mark.parametrize(
    ("outcome", "amount", "unknown", "reason"),
    [
        ("success", 1_000, False, "underpaid: received 1000 of 30000 VND"),
        ("success", 31_000, False, "overpaid: received 31000 of 30000 VND"),
        ("success", None, False, "success without an amount"),
        ("underpaid", 30_000, False, "underpaid: received 30000 of 30000 VND"),
        ("success", 30_000, True, "payment for an attempt the order does not know"),
    ],
)
async def test_money_that_cannot_pay_goes_to_review_and_the_order_stays_unpaid(
    world: World, outcome: str, amount: int | None, unknown: bool, reason: str
) -> None:
    order = await world.start()
    await order.verdict(outcome, amount, attempt=STRANGER if unknown else None)
    assert await order.outcome() == ("expired", "payment_window_closed")
    assert [r.reason for r in world.called("flag_for_review")] == [reason]
    assert (await order.view()).attempts[0].status == ("expired" if unknown else "needs_review")


async def test_money_for_an_attempt_a_lost_update_made_pays_the_order(world: World) -> None:
    """A retry's link stored in Postgres (and shown on the order) whose update was lost with its
    workflow task: the workflow never heard of it, the shopper paid it in time."""
    order = await world.start()
    lost = replace(order.attempt, attempt_no=1, gateway_order_id=f"{order.attempt.gateway_order_id[:-2]}-1")
    world.links[lost.gateway_order_id] = (order.id, lost)
    await order.verdict("success", 30_000, attempt=lost)
    assert await order.outcome() == ("paid", "paid_via_momo")
    assert [r.gateway_order_id for r in world.called("find_attempt")] == [lost.gateway_order_id]
    [transition] = world.called("transition_order")
    assert transition.attempt.attempt_no == 1 and transition.attempt.status == "success"
    assert not world.called("flag_for_review")
    assert [a.attempt_no for a in (await order.view()).attempts] == [0, 1]
    await keep(order.handle, "order", "adopted_attempt")


async def test_a_stored_attempt_for_other_money_is_not_adopted(world: World) -> None:
    order = await world.start()
    other = replace(order.attempt, attempt_no=1, gateway_order_id="123456789-1", amount=10_000)
    world.links[other.gateway_order_id] = (order.id, other)
    await order.verdict("success", 10_000, attempt=other)
    assert await order.outcome() == ("expired", "payment_window_closed")
    assert [r.reason for r in world.called("flag_for_review")] == [
        "payment for an attempt the order does not know"
    ]


async def test_duplicate_verdicts_are_applied_once_and_another_amount_is_another_verdict(
    world: World,
) -> None:
    order = await world.start()
    for _ in range(2):
        await order.verdict("failed", code="1001")
        await order.verdict("success", 1_000)
    await order.verdict("success", 30_000)  # same transaction, the right amount: pays
    assert await order.outcome() == ("paid", "paid_via_momo")
    assert len(world.called("record_attempt")) == 1 and len(world.called("flag_for_review")) == 1
    await keep(order.handle, "order", "needs_review_wrong_amount")


async def test_cancelled_at_the_gateway_cancels_the_order(world: World) -> None:
    order = await world.start()
    await order.verdict("cancelled", code="1006")
    assert await order.outcome() == ("cancelled", "cancelled_at_gateway_1006")


async def test_a_failed_attempt_with_retries_left_keeps_the_order_open(world: World) -> None:
    order = await world.start(max_attempts=1)
    await order.verdict("failed", code="1001")
    view = await order.until(lambda v: v.attempts[0].status == "failed")
    assert view.order_status == "pending_payment"
    assert world.called("record_attempt") == [
        AttemptUpdate(
            order_id=order.id,
            attempt_no=0,
            status="failed",
            result_code="1001",
            transaction_id=f"tx-{order.attempt.gateway_order_id}",
        )
    ]
    assert await order.outcome() == ("expired", "payment_window_closed")


async def test_the_last_allowed_attempt_failing_fails_the_order(world: World) -> None:
    order = await world.start(max_attempts=1)
    await order.verdict("failed", code="1001")
    retry = await order.retry()
    assert retry.remaining_attempts == 0
    second = (await order.view()).attempts[1]
    await order.verdict("system_error", code="99", attempt=second)
    assert await order.outcome() == ("failed", "max_attempts_failed")
    [transition] = world.called("transition_order")
    update = transition.attempt
    assert update is not None and (update.attempt_no, update.status) == (1, "system_error")


async def test_an_unknown_answer_on_the_last_attempt_is_no_answer_and_never_fails_the_order(
    world: World,
) -> None:
    """A `99` or a code the adapter does not know (PaymentOutcome.UNKNOWN) is not a verdict."""
    order = await world.start(max_attempts=0)
    await order.verdict("unknown", code="99")
    await order.verdict("system_error", code="98", attempt=STRANGER)  # not ours: nothing either
    assert await order.outcome() == ("expired", "payment_window_closed")
    assert [t.to_status for t in world.called("transition_order")] == ["expired"]
    assert world.called("record_attempt") == [] and (await order.view()).attempts[0].result_code != "99"


async def test_verdicts_that_decide_nothing_only_note_the_result_code(world: World) -> None:
    order = await world.start()
    await order.verdict("failed", attempt=STRANGER)  # no attempt of ours, no money: ignored
    await order.verdict("processing", code="7000")
    view = await order.until(lambda v: v.attempts[0].result_code == "7000")
    assert (view.order_status, view.attempts[0].status) == ("pending_payment", "pending")
    assert world.called("record_attempt") == [] and world.called("flag_for_review") == []


async def test_a_success_for_an_order_postgres_already_ended_is_settled_late(world: World) -> None:
    order = await world.start()
    world.orders[order.id] = "expired"  # a workflow task that expired it was lost after its transition
    await order.verdict("success", 30_000)
    status, _ = await order.outcome()
    assert status == "expired"
    gid = order.attempt.gateway_order_id
    assert world.called("request_late_settlement") == [
        LatePayment(
            order_id=order.id,
            gateway="momo",
            gateway_order_id=gid,
            amount=30_000,
            result_code="0",
            transaction_id=f"tx-{gid}",
        )
    ]


async def test_a_paid_payos_order_cancels_its_other_link_and_settles_money_on_it_late(world: World) -> None:
    world.cancel_fails = True  # keeps the ended workflow open (cancellation retried beside it)
    order = await world.start(gateway="payos")
    second = (await order.retry()).attempt_no
    await order.verdict("success", attempt=(await order.view()).attempts[second])
    await order.until(lambda v: v.order_status == "paid")
    [cancel] = await world.eventually("cancel_open_links")
    assert [a.gateway_order_id for a in cancel.attempts] == [order.attempt.gateway_order_id]
    assert await refused(order.cancel()) == "PAYMENT_ALREADY_PROCESSED"
    assert await refused(order.retry()) == "SESSION_NOT_ACTIVE"
    await order.verdict("success")  # the first link was paid too
    assert await order.outcome() == ("paid", "paid_via_payos")
    [late] = world.called("request_late_settlement")
    assert late.gateway_order_id == order.attempt.gateway_order_id
