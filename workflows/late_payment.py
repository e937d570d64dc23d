"""LatePaymentWorkflow: money that arrived for an order that had already ended. One per payment
(id `late-<gateway>-<gatewayOrderId>`, and one per transfer for PayOS: `...-<reference>`), so however
often the notification comes, the decision and the refund happen once. Started by the order's workflow or, once that has finished, by the webhook."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():  # shared, not re-imported per instance (see order.py)
    from domain.messages import LateOutcome, LatePayment
    from domain.search import GATEWAY, LATE_PAYMENT
    from workflows import refund_policy, steps

DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@workflow.defn
class LatePaymentWorkflow:
    @workflow.run
    async def run(self, late: LatePayment) -> LateOutcome:
        workflow.upsert_search_attributes(
            [GATEWAY.value_set(late.gateway), LATE_PAYMENT.value_set("received")]
        )
        outcome = await workflow.execute_activity(
            steps.settle_late_payment,
            late,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        if outcome.state == "refund_required":
            workflow.upsert_search_attributes([LATE_PAYMENT.value_set("refund_required")])
            # Asked until the gateway shows the refund or definitely refuses it (then a person refunds):
            # never abandoned while a call of its own may still land (refund_policy.REFUND_ASKING).
            try:
                outcome = await workflow.execute_activity(
                    steps.refund_late_payment,
                    late,
                    start_to_close_timeout=refund_policy.REFUND_CALL_TIMEOUT,
                    heartbeat_timeout=refund_policy.REFUND_HEARTBEAT_TIMEOUT,
                    retry_policy=refund_policy.REFUND_ASKING,
                )
            except ActivityError as err:  # not retryable: the request never left
                workflow.logger.error("refund of %s could not be asked: %s", late.gateway_order_id, err)
                outcome = LateOutcome("refund_required", f"the refund could not be asked: {err.cause or err}")
        workflow.upsert_search_attributes([LATE_PAYMENT.value_set(outcome.state)])
        # Its order events (refund required, refunded) leave through the outbox relay.
        return outcome
