"""The verdict table (domain/verdicts.py), row by row: a pure function, no server."""

from __future__ import annotations

import pytest

from domain.statuses import AttemptStatus as A
from domain.statuses import OrderStatus as O
from domain.verdicts import Act, Received, Verdict, decide

OPEN, PAID, EXPIRED = O.PENDING_PAYMENT, O.PAID, O.EXPIRED
PRICE = 30_000


def row(
    outcome: str,
    attempt: str | None = "pending",
    order: O = OPEN,
    received: int | None = PRICE,
    new_money: int = PRICE,
    retries_left: bool = True,
) -> Verdict:
    return decide(
        outcome,
        attempt_status=attempt,
        order_status=order,
        expected=PRICE if attempt else None,
        received=received,
        new_money=new_money,
        retries_left=retries_left,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # money while the order is open
        (("success",), Verdict(Act.PAY, A.SUCCESS, O.PAID)),
        (("success", "needs_review"), Verdict(Act.PAY, A.SUCCESS, O.PAID)),  # a top-up completes it
        (("success", "failed"), Verdict(Act.PAY, A.SUCCESS, O.PAID)),
        (
            ("success", "pending", OPEN, 1_000),
            Verdict(Act.REVIEW, reason="underpaid: received 1000 of 30000 VND"),
        ),
        (
            ("success", "pending", OPEN, 31_000),
            Verdict(Act.REVIEW, reason="overpaid: received 31000 of 30000 VND"),
        ),
        (("success", "pending", OPEN, None), Verdict(Act.REVIEW, reason="success without an amount")),
        (("underpaid",), Verdict(Act.REVIEW, reason="underpaid: received 30000 of 30000 VND")),
        (("success", None), Verdict(Act.REVIEW, reason="payment for an attempt the order does not know")),
        # money beside a paid attempt or an operator's decision: its own review row
        (
            ("success", "success", PAID, 35_000, 5_000),
            Verdict(Act.SURPLUS, reason="surplus: received 5000 VND beyond the price"),
        ),
        (("success", "success", PAID, PRICE, 0), Verdict(Act.IGNORE)),
        (
            ("success", "refunded", OPEN, PRICE, 20_000),
            Verdict(Act.SURPLUS, reason="received 20000 VND after the payment was refunded"),
        ),
        (
            ("success", "refund_required", OPEN, PRICE, 20_000),
            Verdict(Act.SURPLUS, reason="received 20000 VND after the payment was refund_required"),
        ),
        (("success", "refunded", OPEN, PRICE, 0), Verdict(Act.IGNORE)),
        # money for an order that ended otherwise: settled on its own
        (("success", "expired", EXPIRED), Verdict(Act.SETTLE_LATE)),
        (("success", "cancelled", PAID), Verdict(Act.SETTLE_LATE)),
        (("underpaid", "needs_review", EXPIRED, PRICE, 10_000), Verdict(Act.SETTLE_LATE)),
        (("success", "expired", EXPIRED, PRICE, 0), Verdict(Act.IGNORE)),
        # verdicts without money
        (("cancelled",), Verdict(Act.CANCEL, A.CANCELLED, O.CANCELLED)),
        (("failed",), Verdict(Act.END_ATTEMPT, A.FAILED)),
        (("system_error",), Verdict(Act.END_ATTEMPT, A.SYSTEM_ERROR)),
        (("failed", "pending", OPEN, None, 0, False), Verdict(Act.FAIL, A.FAILED, O.FAILED)),
        (("system_error", "pending", OPEN, None, 0, False), Verdict(Act.FAIL, A.SYSTEM_ERROR, O.FAILED)),
        (
            ("expired", "pending", OPEN, None, 0, False),
            Verdict(Act.END_ATTEMPT, A.EXPIRED),
        ),  # never fails the order
        (("failed", "needs_review"), Verdict(Act.IGNORE)),  # an attempt holding money is not downgraded
        (("cancelled", "pending", EXPIRED), Verdict(Act.IGNORE)),
        (("failed", None), Verdict(Act.IGNORE)),
        # answers that decide nothing
        (("processing",), Verdict(Act.NOTE)),
        (("pending",), Verdict(Act.NOTE)),
        (("not_found",), Verdict(Act.NOTE)),
        (("unknown", "pending", OPEN, None, 0, False), Verdict(Act.IGNORE)),  # not a verdict: like no answer
        (("processing", "pending", EXPIRED), Verdict(Act.IGNORE)),
    ],
)
def test_the_verdict_table(args: tuple, expected: Verdict) -> None:
    assert row(*args) == expected


def test_payos_transfers_add_up_and_a_query_reports_the_running_total() -> None:
    money = Received()
    assert money.take("payos", "00", 10_000, "ref-1") == 10_000
    money.hand_on()  # the short transfer went to review
    assert money.take("payos", "00", 20_000, "ref-2") == PRICE
    assert money.new_money("payos", paid_by_it=False) == 20_000
    assert money.take("payos", "00", 20_000, "ref-2") == PRICE  # the same transfer again counts once
    assert money.take("payos", "PAID", PRICE, "ref-2") == PRICE  # the link's total, not another transfer
    money.hand_on()
    assert money.take("payos", "00", 5_000, "ref-3") == 35_000
    assert money.new_money("payos", paid_by_it=True) == 5_000


def test_a_single_payment_verdict_restates_the_whole_payment() -> None:
    money = Received()
    assert money.take("momo", "0", 1_000, "tx-short") == 1_000
    money.hand_on()
    assert money.take("momo", "0", PRICE, "tx-full") == PRICE  # another claim, not a top-up
    assert money.new_money("momo", paid_by_it=False) == PRICE
    money.hand_on()
    assert money.new_money("momo", paid_by_it=False) == 0
    assert money.take("momo", "0", None, "tx") is None
