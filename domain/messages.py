"""Payloads exchanged with OrderWorkflow: one dataclass per input, signal, update and query,
so fields can be added later without breaking callers. Deterministic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from domain.operator_actions import OperatorAction
from domain.statuses import AttemptStatus, OrderStatus, PaymentOutcome, SessionStatus


@dataclass
class OrderLine:
    variant_id: str
    quantity: int


@dataclass
class Receiver:
    name: str
    phone: str
    address: str
    email: str | None = None  # reminders by e-mail go here


@dataclass
class OrderInput:
    order_id: str
    customer_id: str
    lines: list[OrderLine]
    gateway: str
    order_type: str
    receiver: Receiver
    duration_minutes: float
    max_attempts: int
    reminder_minutes: float
    grace_minutes: float
    request_hash: str
    client_ip: str = "127.0.0.1"
    late_payment_policy: str = "refund"


@dataclass
class CreateOrderInput:
    order_id: str
    customer_id: str
    lines: list[OrderLine]
    order_type: str
    receiver: Receiver
    started_at: datetime
    expires_at: datetime
    duration_minutes: float
    max_attempts: int
    request_hash: str
    gateway: str = ""  # its amount limits are checked before anything is written


@dataclass
class FrozenItem:
    product_id: str
    variant_id: str
    product_name: str
    variant_sku: str
    variant_name: str
    quantity: int
    unit_price: int
    sub_total_amount: int


@dataclass
class CreatedOrder:
    order_id: str
    order_code: int
    session_id: str
    customer_id: str
    subtotal_amount: int
    discount_amount: int
    shipping_fee: int
    grand_total: int
    currency_code: str
    items: list[FrozenItem]


@dataclass
class CreateOrderResult:
    order: CreatedOrder | None = None
    error: str | None = None  # OUT_OF_STOCK | VARIANT_NOT_FOUND | VARIANT_UNAVAILABLE | AMOUNT_OUT_OF_RANGE
    message: str = ""


@dataclass
class LinkInput:
    order_id: str
    order_code: int
    attempt_no: int
    gateway: str
    amount: int
    description: str
    created_at: datetime
    expires_at: datetime
    items: list[FrozenItem]
    client_ip: str = "127.0.0.1"


@dataclass
class Attempt:
    attempt_no: int
    gateway: str
    gateway_order_id: str
    request_id: str
    amount: int
    status: AttemptStatus
    payment_url: str
    created_at: datetime
    result_code: str | None = None
    transaction_id: str | None = None


@dataclass
class PaymentResult:
    """A verified gateway verdict (webhook, browser return or reconciliation query)."""

    gateway: str
    gateway_order_id: str
    outcome: PaymentOutcome
    result_code: str
    amount: int | None
    transaction_id: str | None = None


@dataclass
class AttemptUpdate:
    order_id: str
    attempt_no: int
    status: AttemptStatus
    result_code: str | None
    transaction_id: str | None = None
    received_amount: int | None = None  # the money the attempt received (a success: what paid the order)


@dataclass
class AuditEntry:
    """An operator's action, written to the audit trail in the transaction that makes the change.
    The id is chosen by the API, so an activity's retry writes it once. The order id is the one
    the change concerns (an activity fills it in from its own input)."""

    id: str
    actor: str  # the admin token's `sub`
    action: OperatorAction
    note: str = ""
    order_id: str | None = None
    payment_id: str | None = None
    variant_id: str | None = None
    notification_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransitionInput:
    order_id: str
    to_status: OrderStatus
    reason: str
    attempt: AttemptUpdate | None = None  # the attempt whose verdict caused it, if any
    audit: AuditEntry | None = None  # an operator's cancel: recorded with the transition


@dataclass
class TransitionResult:
    status: OrderStatus  # the order's status after the call
    transitioned: bool  # False when it had already left pending_payment, or an operator settled the attempt
    attempt_status: AttemptStatus | None = None  # the verdict's attempt as Postgres holds it after the call


@dataclass
class DeadlineInput:
    order_id: str
    expires_at: datetime
    audit: AuditEntry | None = None  # an operator's extend or expire: recorded with the new deadline


@dataclass
class ReminderInput:
    order_id: str
    order_code: int
    customer_id: str
    expires_at: datetime


@dataclass
class RetryRequest:
    gateway: str | None = None


@dataclass
class RetryResult:
    order_id: str
    payment_attempts: int
    max_payment_attempts: int
    remaining_attempts: int
    payment_url: str
    gateway: str
    attempt_no: int


@dataclass
class CancelRequest:
    reason: str = ""
    by: str = "customer"
    audit: AuditEntry | None = None  # set when an admin cancels


@dataclass
class ExtendRequest:
    minutes: float
    audit: AuditEntry | None = None


@dataclass
class ExpireRequest:
    audit: AuditEntry | None = None


@dataclass
class SessionView:
    """Everything the countdown needs, answered from workflow state without touching Postgres."""

    order_id: str
    order_code: int | None
    session_id: str | None
    status: SessionStatus
    order_status: OrderStatus
    started_at: datetime
    expires_at: datetime
    duration_minutes: float
    payment_attempts: int
    max_payment_attempts: int
    last_payment_attempt: datetime | None
    end_reason: str | None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class Creation:
    """Answer to the `created` update: the frozen order and its first payment link, or why not."""

    error: str | None = None
    message: str = ""
    order: CreatedOrder | None = None
    session: SessionView | None = None
    # The body hash of the request that started the workflow: a concurrent create with the same
    # Idempotency-Key but another body joins this workflow, and is refused by comparing it.
    request_hash: str = ""


@dataclass
class OrderOutcome:
    order_id: str
    status: str  # an OrderStatus, or `rejected`: the order was never made
    reason: str


@dataclass
class AttemptRef:
    """An attempt by its gateway's id, within one order."""

    order_id: str
    gateway: str
    gateway_order_id: str


@dataclass
class ReconcileInput:
    order_id: str
    attempts: list[Attempt]


@dataclass
class Reconciled:
    results: list[PaymentResult]  # the inbox's verified notifications + the gateways' answers
    in_flight: bool  # some attempt is still being paid (or its gateway could not be asked)
    unanswered: list[str] = field(default_factory=list)  # gateway order ids whose gateway said nothing


@dataclass
class ReviewInput:
    """Verified money that cannot pay the order, and why (domain.money.money_problem)."""

    order_id: str
    gateway: str
    gateway_order_id: str
    reason: str
    amount: int | None
    result_code: str
    transaction_id: str | None = None
    # Money beside the attempt (a transfer beyond a paid price, or after an operator settled the
    # attempt): a review row of its own for `amount`, the attempt left as it is.
    surplus: bool = False

    @classmethod
    def for_result(
        cls, result: GatewayAnswer, *, order_id: str, reason: str, amount: int | None, surplus: bool = False
    ) -> ReviewInput:
        """The review of the money a gateway's answer reports (a verdict, a late payment)."""
        return cls(
            order_id=order_id,
            gateway=result.gateway,
            gateway_order_id=result.gateway_order_id,
            reason=reason,
            amount=amount,
            result_code=result.result_code,
            transaction_id=result.transaction_id,
            surplus=surplus,
        )


class GatewayAnswer(Protocol):
    """What names one gateway answer: PaymentResult, LatePayment, gateways' GatewayResult."""

    @property
    def gateway(self) -> str: ...
    @property
    def gateway_order_id(self) -> str: ...
    @property
    def result_code(self) -> str: ...
    @property
    def transaction_id(self) -> str | None: ...


@dataclass
class CancelLinksInput:
    order_id: str
    attempts: list[Attempt]
    reason: str


@dataclass
class LatePayment:
    """A verified success for an order that had already ended (or was paid by another attempt)."""

    order_id: str
    gateway: str
    gateway_order_id: str
    amount: int | None
    result_code: str
    transaction_id: str | None
    policy: str = "refund"  # refund | accept_if_available
    outcome: PaymentOutcome = PaymentOutcome.SUCCESS  # or UNDERPAID: money that arrived, whatever its amount


@dataclass
class LateOutcome:
    state: str  # accepted | refund_required | refunded | already_settled | needs_review
    detail: str = ""


@dataclass
class RefundRequest:
    """An operator's refund of one payment through its gateway (RefundWorkflow)."""

    payment_id: str
    amount: int  # what goes back: the attempt's amount, or what the gateway reported receiving
    requested_by: str  # the operator's `sub`
    audit_id: str  # the audit entry of the request


@dataclass
class RefundOutcome:
    state: str  # refunded | refused | not_refundable
    detail: str = ""


@dataclass
class ArchiveInput:
    older_than_days: float = 30  # ARCHIVE_AFTER_DAYS
    batch_size: int = 1000  # ARCHIVE_BATCH_SIZE: rows per transaction


@dataclass
class ArchiveResult:
    archived: int  # orders marked archived by this run
    batches: int  # transactions that archived at least one order
    held_for_refund: int  # old enough, but kept visible: a late payment still awaits its refund
    cutoff: datetime  # orders that ended before this were eligible
