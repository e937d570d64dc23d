"""RefundWorkflow: an operator's refund of one payment through its gateway (id `refund-<paymentId>`).

The API records the request (audit trail) and starts this; the refund itself runs in the worker, like
the late-payment settlement's, with the same idempotency key at the gateway (`rf-<order>-<attempt>`).
Concurrent requests join the running workflow; a later one (after a refusal) starts a new run, which
finds the payment refunded or asks again under the same key. Either way one payment is refunded once.

It ends only on the gateway's verdict: refunded (the gateway shows it) or refused (a definite no, then
a person sends the money back). While the outcome is unknown (no answer, a duplicate-id answer, a
refund in progress) it keeps asking, durably (refund_policy.REFUND_ASKING): while it runs the desk offers no
manual refund, since a call of its own may still land (docs/GATEWAYS.md, "Refunds").
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():  # shared, not re-imported per instance (see order.py)
    from domain.messages import RefundOutcome, RefundRequest
    from workflows import refund_policy, steps


@workflow.defn
class RefundWorkflow:
    @workflow.run
    async def run(self, req: RefundRequest) -> RefundOutcome:
        try:
            return await workflow.execute_activity(
                steps.refund_payment,
                req,
                start_to_close_timeout=refund_policy.REFUND_CALL_TIMEOUT,
                heartbeat_timeout=refund_policy.REFUND_HEARTBEAT_TIMEOUT,
                retry_policy=refund_policy.REFUND_ASKING,
            )
        except ActivityError as err:  # not retryable: the request never left (e.g. no such gateway here)
            workflow.logger.error("refund of payment %s could not be asked: %s", req.payment_id, err)
            return RefundOutcome("not_refundable", f"the refund could not be asked: {err.cause or err}")
