"""RefundWorkflow: an operator's refund ends only on the gateway's verdict (refunded, refused); an
outcome the gateway has not made known is asked again, durably, never handed to a person."""

from __future__ import annotations

import pytest

from domain.messages import RefundOutcome, RefundRequest
from tests.fast.world import World
from tests.recorded import keep
from workflows import refund_policy
from workflows.refund import RefundWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def refund(world: World, scenario: str) -> RefundOutcome:
    req = RefundRequest(payment_id="p-1", amount=30_000, requested_by="ops", audit_id="a-1")
    handle = await world.env.client.start_workflow(
        RefundWorkflow.run, req, id=f"refund-{world.queue}", task_queue=world.queue
    )
    outcome = await handle.result()
    await keep(handle, "refund", scenario)  # RECORD_HISTORIES: its release history (tests/recorded.py)
    return outcome


async def test_a_refund_the_gateway_shows_ends_refunded(world: World) -> None:
    assert await refund(world, "refunded") == RefundOutcome("refunded", "refund of 30000")
    assert len(world.called("refund_payment")) == 1


async def test_a_refund_whose_outcome_is_unknown_is_asked_again_until_the_gateway_shows_it(
    world: World,
) -> None:
    world.refund_unknown = 12
    started = await world.env.get_current_time()
    assert (await refund(world, "unknown_then_refunded")).state == "refunded"
    assert len(world.called("refund_payment")) == 13
    assert await world.env.get_current_time() - started >= refund_policy.MAXIMUM_INTERVAL  # durable backoff


async def test_a_refund_definitely_refused_ends_for_a_person(world: World) -> None:
    world.refund_refused = True
    assert await refund(world, "refused") == RefundOutcome("refused", "refused 1080")
    assert len(world.called("refund_payment")) == 1
