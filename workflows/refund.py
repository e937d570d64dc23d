"""RefundWorkflow: an operator's refund of one payment through its gateway (id `refund-<paymentId>`).

The API records the request (audit trail) and starts this; the refund itself runs in the worker, like
the late-payment settlement's, with the same idempotency key at the gateway (`rf-<order>-<attempt>`).
Concurrent requests join the running workflow; a later one (after a refusal) starts a new run, which
finds the payment refunded or asks again under the same key. Either way one payment is refunded once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():  # shared, not re-imported per instance (see order.py)
    from domain.messages import RefundOutcome, RefundRequest
    from workflows import steps

# An operator is waiting: a gateway that cannot be reached is asked again for ~10 minutes, after
# which the desk shows what it said and the operator may ask again (same key) or refund by hand.
OPERATOR_REFUND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2), maximum_attempts=10
)


@workflow.defn
class RefundWorkflow:
    @workflow.run
    async def run(self, req: RefundRequest) -> RefundOutcome:
        try:
            return await workflow.execute_activity(
                steps.refund_payment,
                req,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=OPERATOR_REFUND_RETRY,
            )
        except ActivityError as err:
            workflow.logger.error("refund of payment %s gave up: %s", req.payment_id, err)
            return RefundOutcome(
                "unreachable", "the gateway could not be reached: ask again later or refund by hand"
            )
