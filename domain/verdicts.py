"""What a gateway's verdict does to an attempt and to its order: the order workflow's decision
table, as one pure function (no I/O, no Temporal), so the table can be read and tested whole.

Money is counted per attempt (`Received`): MoMo and VNPay report one payment, so each verdict
states what the attempt received; a PayOS webhook reports one transfer of its own (several can
pay one link), while a PayOS query reports the link's running total (docs/GATEWAYS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from domain.money import money_problem
from domain.statuses import SETTLED_MONEY, AttemptStatus, OrderStatus, PaymentOutcome

# Gateways whose notifications each report one transfer, not the payment's state.
PER_TRANSFER = frozenset({"payos"})
TRANSFER_CODE = (
    "00"  # a PayOS webhook's `code` for a received transfer (its queries answer the link's status)
)
# Attempt verdicts that end an attempt without ending the order (while retries remain).
ATTEMPT_FAILURES = frozenset({PaymentOutcome.FAILED, PaymentOutcome.SYSTEM_ERROR})
# Answers that decide nothing: the attempt keeps its status (UNKNOWN is treated like no answer).
UNDECIDED = frozenset(
    {PaymentOutcome.PENDING, PaymentOutcome.PROCESSING, PaymentOutcome.NOT_FOUND, PaymentOutcome.UNKNOWN}
)


def is_transfer(gateway: str, result_code: str) -> bool:
    """A notification that reports one transfer (its amount is that transfer's, not a total)."""
    return gateway in PER_TRANSFER and result_code == TRANSFER_CODE


@dataclass
class Received:
    """The money reported on one attempt: transfers by their reference, the largest running total
    a query reported, and what has already been handed on (paid the order, flagged, settled late)."""

    transfers: dict[str, int] = field(default_factory=dict)
    reported: int = 0
    accounted: int = 0

    @property
    def total(self) -> int:
        return max(sum(self.transfers.values()), self.reported)

    def take(
        self, gateway: str, result_code: str, amount: int | None, transaction_id: str | None
    ) -> int | None:
        """Count one money event; the attempt's received total as it now stands (None: no amount)."""
        if amount is None:
            return None
        if is_transfer(gateway, result_code):
            self.transfers[transaction_id or f"#{len(self.transfers)}"] = amount
        elif gateway in PER_TRANSFER:
            self.reported = max(self.reported, amount)
        else:  # one payment per attempt: each verdict states the whole of it
            self.reported = amount
            self.transfers.clear()
        return self.total

    def new_money(self, gateway: str, paid_by_it: bool) -> int:
        """What has not been handed on yet. A single-payment verdict restates the whole payment, so
        it is new unless it is what was handed on (paid, flagged or settled) already."""
        if gateway in PER_TRANSFER or paid_by_it:
            return max(0, self.total - self.accounted)
        return 0 if self.total == self.accounted else self.total

    def hand_on(self) -> None:
        """The money as it stands now has a home (the paid order, a review row, a settlement)."""
        self.accounted = self.total


class Act(StrEnum):
    PAY = "pay"  # the attempt pays the order
    REVIEW = "review"  # money that cannot pay the order: the attempt goes to needs_review
    SURPLUS = "surplus"  # money beyond a paid price (or beside an operator's decision): its own review row
    SETTLE_LATE = "settle_late"  # money for an order that has ended otherwise: its own settlement
    CANCEL = "cancel"  # the shopper cancelled at the gateway: the order is cancelled
    FAIL = "fail"  # the last attempt failed: the order fails
    END_ATTEMPT = "end_attempt"  # the attempt ended, the order stays open (a retry may follow)
    NOTE = "note"  # nothing final: the attempt only keeps the result code
    IGNORE = "ignore"


@dataclass(frozen=True)
class Verdict:
    act: Act
    attempt_status: AttemptStatus | None = None  # what the attempt becomes (PAY, CANCEL, FAIL, END_ATTEMPT)
    order_status: OrderStatus | None = None  # what the order becomes (PAY, CANCEL, FAIL)
    reason: str = ""  # why money goes to review


def decide(
    outcome: PaymentOutcome | str,
    *,
    attempt_status: AttemptStatus | None,
    order_status: OrderStatus,
    expected: int | None,
    received: int | None,
    new_money: int,
    retries_left: bool,
) -> Verdict:
    """The verdict table. `attempt_status` None: no attempt of this order's. `expected`: the
    attempt's amount; `received`: the attempt's money as it now stands; `new_money`: the part of
    it not yet handed on (paid, flagged or settled); `retries_left`: False on the last attempt."""
    outcome = PaymentOutcome(outcome)
    if outcome.carries_money:
        return _money(outcome, attempt_status, order_status, expected, received, new_money)
    if attempt_status is None or outcome is PaymentOutcome.UNKNOWN:
        return Verdict(Act.IGNORE)  # no attempt of ours, or not a verdict at all (like no answer)
    if order_status.is_terminal:
        return Verdict(Act.IGNORE)  # an ended order is never reopened or downgraded
    if outcome in UNDECIDED:
        return Verdict(Act.NOTE)
    if attempt_status != AttemptStatus.PENDING:
        return Verdict(Act.IGNORE)  # an attempt that holds money or ended already is not downgraded
    if outcome is PaymentOutcome.CANCELLED:
        return Verdict(Act.CANCEL, AttemptStatus.CANCELLED, OrderStatus.CANCELLED)
    if outcome is PaymentOutcome.EXPIRED:
        return Verdict(Act.END_ATTEMPT, AttemptStatus.EXPIRED)
    status = AttemptStatus(outcome.value)
    if outcome in ATTEMPT_FAILURES and not retries_left:
        return Verdict(Act.FAIL, status, OrderStatus.FAILED)
    return Verdict(Act.END_ATTEMPT, status)


def _money(
    outcome: PaymentOutcome,
    attempt_status: AttemptStatus | None,
    order_status: OrderStatus,
    expected: int | None,
    received: int | None,
    new_money: int,
) -> Verdict:
    if attempt_status is None:
        return Verdict(Act.REVIEW, reason=money_problem(outcome, received, None) or "")
    if attempt_status in SETTLED_MONEY:
        # The order's own money is counted (or an operator decided about it): anything new is the
        # shopper's, kept apart for a person, and never pays the order.
        if new_money <= 0:
            return Verdict(Act.IGNORE)
        if attempt_status == AttemptStatus.SUCCESS:
            return Verdict(Act.SURPLUS, reason=f"surplus: received {new_money} VND beyond the price")
        return Verdict(Act.SURPLUS, reason=f"received {new_money} VND after the payment was {attempt_status}")
    if order_status.is_terminal:
        return Verdict(Act.SETTLE_LATE) if new_money > 0 else Verdict(Act.IGNORE)
    problem = money_problem(outcome, received, expected)
    if problem:
        return Verdict(Act.REVIEW, reason=problem)
    return Verdict(Act.PAY, AttemptStatus.SUCCESS, OrderStatus.PAID)
