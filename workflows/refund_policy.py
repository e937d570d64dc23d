"""How a refund is asked of its gateway, for RefundWorkflow and LatePaymentWorkflow alike.

A refund activity ends on the gateway's verdict (refunded, refused). When the gateway has not made the
outcome known (no answer, a duplicate-id answer, a refund still in progress) the activity fails with
REFUND_UNKNOWN and Temporal asks again on this backoff: durable (timers in the server), capped at
MAXIMUM_INTERVAL between asks, and without end, because giving up would hand to a person money that a
call of ours may still be returning (docs/GATEWAYS.md, "Refunds"). Each call is bounded well inside
the start-to-close (gateways/http.py, call_budget) and heartbeats, so a dead worker is noticed in
HEARTBEAT_TIMEOUT rather than a whole call.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

REFUND_CALL_TIMEOUT = timedelta(seconds=60)
REFUND_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
MAXIMUM_INTERVAL = timedelta(minutes=30)
REFUND_ASKING = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=MAXIMUM_INTERVAL,
    maximum_attempts=0,  # unlimited: only a verdict ends it
)
