"""Starting the settlement of a late payment: the one place that does it, for the webhook (when
the order's workflow has finished) and for the order's workflow (through an activity)."""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.temporal import late_workflow_id
from workflows.messages import LatePayment

log = logging.getLogger(__name__)


async def start_settlement(client: Client, task_queue: str, late: LatePayment) -> None:
    """One LatePaymentWorkflow per attempt: however often the money is reported, it is settled once."""
    try:
        await client.start_workflow(
            "LatePaymentWorkflow",  # by name: the workflow module imports these activities
            late,
            id=late_workflow_id(late.gateway, late.gateway_order_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return  # settled already
    log.error("late payment for order %s via %s %s", late.order_id, late.gateway, late.gateway_order_id)
