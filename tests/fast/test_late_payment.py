"""LatePaymentWorkflow: money for an ended order is decided once, and refunded only when the
decision says so."""

from __future__ import annotations

import pytest

from domain.messages import LateOutcome, LatePayment
from tests.fast.world import World
from tests.recorded import keep
from workflows import refund_policy
from workflows.late_payment import LatePaymentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def settle(world: World, scenario: str) -> LateOutcome:
    late = LatePayment(
        order_id="o-1",
        gateway="momo",
        gateway_order_id="123-0",
        amount=30_000,
        result_code="0",
        transaction_id="tx-1",
    )
    handle = await world.env.client.start_workflow(
        LatePaymentWorkflow.run, late, id=f"late-{world.queue}", task_queue=world.queue
    )
    outcome = await handle.result()
    await keep(handle, "late_payment", scenario)  # RECORD_HISTORIES: its release history (tests/recorded.py)
    return outcome


@pytest.mark.parametrize(
    ("decision", "refunds", "state"),
    [("refund_required", 1, "refunded"), ("needs_review", 0, "needs_review"), ("accepted", 0, "accepted")],
)
async def test_late_money_is_refunded_only_when_the_decision_requires_it(
    world: World, decision: str, refunds: int, state: str
) -> None:
    world.late_decision = decision
    assert (await settle(world, state)).state == state
    assert len(world.called("settle_late_payment")) == 1
    assert len(world.called("refund_late_payment")) == refunds


async def test_a_refund_whose_outcome_stays_unknown_is_asked_again_never_handed_to_a_person(
    world: World,
) -> None:
    """Before: after 30 tries the workflow ended "refund by hand" while its own call might still land."""
    world.refund_unknown = 40
    started = await world.env.get_current_time()
    outcome = await settle(world, "refund_unknown_then_refunded")
    assert outcome.state == "refunded"
    assert len(world.called("refund_late_payment")) == 41
    waited = await world.env.get_current_time() - started
    assert waited >= 10 * refund_policy.MAXIMUM_INTERVAL  # durable backoff, capped: asked for hours


async def test_a_refund_definitely_refused_ends_the_settlement_for_a_person(world: World) -> None:
    world.refund_refused = True
    outcome = await settle(world, "refused")
    assert (outcome.state, outcome.detail) == ("refund_required", "refused 1080")
    assert len(world.called("refund_late_payment")) == 1
