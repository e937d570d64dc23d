"""The activities the workflows call, by name and type: what the SDK needs to name them, and
nothing more. The workflows import this module, never activities/ (I/O, the store, the gateway
adapters); the worker registers the implementations (activities/) under the same names, and
tests/test_layers.py checks that every step here has its implementation with the same types.
"""

from __future__ import annotations

from temporalio import activity

from domain.messages import (
    ArchiveInput,
    ArchiveResult,
    Attempt,
    AttemptRef,
    AttemptUpdate,
    CancelLinksInput,
    CreateOrderInput,
    CreateOrderResult,
    DeadlineInput,
    LateOutcome,
    LatePayment,
    LinkInput,
    PaymentResult,
    Reconciled,
    ReconcileInput,
    RefundOutcome,
    RefundRequest,
    ReminderInput,
    ReviewInput,
    TransitionInput,
    TransitionResult,
)

DECLARED = "a declaration: the worker runs this step's implementation (activities/)"


# ---- the order's critical path (local activities) ------------------------------------------------


@activity.defn
async def create_order(inp: CreateOrderInput) -> CreateOrderResult:
    """Freeze the snapshot and reserve stock in one transaction (or write nothing)."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def create_payment_link(inp: LinkInput) -> Attempt:
    """Ask the attempt's gateway for a payment link and store it."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def record_attempt(update: AttemptUpdate) -> None:
    """An attempt's verdict that does not end the order."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def find_attempt(ref: AttemptRef) -> Attempt | None:
    """The attempt Postgres holds for this order under that gateway id, if any."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def flag_for_review(inp: ReviewInput) -> bool:
    """Verified money that cannot pay the order: its attempt becomes needs_review."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def reconcile(inp: ReconcileInput) -> Reconciled:
    """Before the window closes: the inbox, then every open attempt as its gateway sees it."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def transition_order(inp: TransitionInput) -> TransitionResult:
    """The guarded terminal transition (restock included)."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def set_deadline(inp: DeadlineInput) -> None:
    """A moved deadline, in Postgres."""
    raise NotImplementedError(DECLARED)


# ---- beside the order ----------------------------------------------------------------------------


@activity.defn
async def send_reminder(inp: ReminderInput) -> list[str]:
    """The payment reminder, once per channel, while the order waits for payment."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def cancel_open_links(inp: CancelLinksInput) -> int:
    """Cancel an ended order's unpaid links at gateways that can."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def confirm_attempts(inp: ReconcileInput) -> list[PaymentResult]:
    """After a close the gateway was silent for: ask until it answers."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def deliver_order_events(order_id: str) -> int:
    """Legacy (before critical-path-v1): deliver one order's events from the workflow."""
    raise NotImplementedError(DECLARED)


# ---- late payments ---------------------------------------------------------------------------------


@activity.defn
async def request_late_settlement(late: LatePayment) -> None:
    """Start the settlement of money for an ended order (its own workflow)."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def settle_late_payment(late: LatePayment) -> LateOutcome:
    """Decide, once, what late money becomes."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def refund_late_payment(late: LatePayment) -> LateOutcome:
    """Refund late money through its gateway, exactly once."""
    raise NotImplementedError(DECLARED)


@activity.defn
async def refund_payment(req: RefundRequest) -> RefundOutcome:
    """An operator's refund of one payment, under the same key as the late settlement's."""
    raise NotImplementedError(DECLARED)


# ---- housekeeping ---------------------------------------------------------------------------------


@activity.defn
async def archive_ended_orders(inp: ArchiveInput) -> ArchiveResult:
    """Mark orders that ended long ago archived, in batches."""
    raise NotImplementedError(DECLARED)
