"""The chaos run's ledger walk (chaos/ledger.py) on hand-made ledgers and rows: each money invariant
holds on a clean record and fires on the one fault it exists for. Pure: no stack."""

from __future__ import annotations

from typing import Any

from chaos.desk import Desk, DeskAction
from chaos.ledger import HandRefund, LinkFailure, OurPayment, order_code_of, since, walk

PRICE = 150_000


def transfer(
    gid: str, amount: int = PRICE, gateway: str = "momo", at: str = "2026-01-01T10:00:00+00:00"
) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "gatewayOrderId": gid,
        "amount": amount,
        "transactionId": f"t-{gid}",
        "at": at,
    }


def refund(
    gid: str,
    *,
    accepted: bool = True,
    code: str = "0",
    duplicate: bool = False,
    amount: int = PRICE,
    gateway: str = "momo",
    at: str = "2026-01-01T10:05:00+00:00",
) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "gatewayOrderId": gid,
        "transactionId": f"t-{gid}",
        "requestId": f"r-{at}",
        "refundOrderId": f"rf-{gid}",
        "amount": amount,
        "accepted": accepted,
        "code": code,
        "duplicate": duplicate,
        "at": at,
    }


def create(
    gid: str, ok: bool = True, gateway: str = "momo", at: str = "2026-01-01T09:59:00+00:00"
) -> dict[str, Any]:
    return {"gateway": gateway, "gatewayOrderId": gid, "ok": ok, "code": "0" if ok else "99", "at": at}


def row(
    gid: str, status: str, order_status: str, *, gateway: str = "momo", received: int | None = None
) -> OurPayment:
    return OurPayment(
        gateway=gateway,
        gateway_order_id=gid,
        status=status,
        amount=PRICE,
        received_amount=received,
        order_status=order_status,
    )


def ledger(**lists: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {"transfers": [], "refunds": [], "creates": [], "queries": [], **lists}


def test_a_clean_record_breaks_nothing() -> None:
    record = ledger(
        transfers=[
            transfer("1-0"),
            transfer("2-0"),
            transfer("300", gateway="payos"),
            transfer("400", 50_000, "payos"),
        ],
        refunds=[refund("2-0")],
        creates=[create("1-0"), create("2-0"), create("3-0", ok=False)],
    )
    rows = [
        row("1-0", "success", "paid"),
        row("2-0", "refunded", "expired"),
        row("300", "refund_required", "expired", gateway="payos"),
        row("400", "needs_review", "expired", gateway="payos", received=50_000),
    ]
    report = walk(record, rows, desk=[rows[2], rows[3]], link_failures=[LinkFailure("o3", 3)])
    assert report.counts() == {
        "ledger_mismatches": 0,
        "double_refunds": 0,
        "manual_refund_invitations_for_returned_money": 0,
        "unconfirmed_link_failures": 0,
    }
    assert report.figures["taken_vnd"] == 3 * PRICE + 50_000
    assert report.figures["returned_vnd"] == PRICE
    assert report.figures["payments_taken"] == 4


def test_money_with_no_row_of_ours_is_a_mismatch() -> None:
    report = walk(ledger(transfers=[transfer("9-0")]), [])
    assert [m["difference"] for m in report.ledger_mismatches] == [PRICE]


def test_a_second_transfer_absorbed_by_a_paid_order_is_a_mismatch() -> None:
    record = ledger(transfers=[transfer("5", gateway="payos"), transfer("5", 20_000, "payos")])
    report = walk(record, [row("5", "success", "paid", gateway="payos")])
    assert [m["difference"] for m in report.ledger_mismatches] == [20_000]


def test_a_success_on_an_order_that_did_not_pay_is_a_mismatch() -> None:
    report = walk(ledger(transfers=[transfer("1-0")]), [row("1-0", "success", "expired")])
    assert len(report.ledger_mismatches) == 1


def test_a_refund_required_at_a_gateway_with_a_refund_api_is_a_mismatch() -> None:
    # MoMo's late money must have gone back through MoMo by the end; PayOS's waits for an operator.
    report = walk(ledger(transfers=[transfer("1-0")]), [row("1-0", "refund_required", "expired")])
    assert len(report.ledger_mismatches) == 1


def test_a_refunded_row_the_gateway_never_refunded_is_a_mismatch() -> None:
    report = walk(ledger(transfers=[transfer("1-0")]), [row("1-0", "refunded", "expired")])
    assert [m["difference"] for m in report.ledger_mismatches] == [PRICE]


def test_a_row_claiming_money_the_gateway_never_took_is_a_mismatch() -> None:
    report = walk(ledger(), [row("1-0", "success", "paid")])
    assert [m["difference"] for m in report.ledger_mismatches] == [-PRICE]


def test_a_refused_duplicate_refund_for_returned_money_counts() -> None:
    # Issue 17: MoMo refunded, the answer was lost, the resend got 41. Nothing moved twice, but the
    # second request was sent for money already back: it counts, whatever MoMo answered.
    record = ledger(
        transfers=[transfer("1-0")],
        refunds=[
            refund("1-0"),
            refund("1-0", accepted=False, code="41", duplicate=True, at="2026-01-01T10:05:01+00:00"),
        ],
    )
    report = walk(record, [row("1-0", "refunded", "expired")])
    assert [(d["how"], d["code"]) for d in report.double_refunds] == [("gateway", "41")]
    assert report.ledger_mismatches == []


def test_a_refused_refund_then_one_accepted_is_not_a_double() -> None:
    record = ledger(
        transfers=[transfer("1-0")],
        refunds=[refund("1-0", accepted=False, code="99"), refund("1-0", at="2026-01-01T10:06:00+00:00")],
    )
    assert walk(record, [row("1-0", "refunded", "expired")]).double_refunds == []


def test_a_hand_refund_after_the_gateway_refund_is_a_double() -> None:
    record = ledger(transfers=[transfer("1-0")], refunds=[refund("1-0")])
    hand = [HandRefund(gateway="momo", gateway_order_id="1-0", at="2026-01-01T11:00:00+00:00", amount=PRICE)]
    report = walk(record, [row("1-0", "refunded", "expired")], hand_refunds=hand)
    assert [d["how"] for d in report.double_refunds] == ["hand"]


def test_a_hand_refund_alone_returns_the_money() -> None:
    record = ledger(transfers=[transfer("7", gateway="payos")])
    hand = [HandRefund(gateway="payos", gateway_order_id="7", at="2026-01-01T11:00:00+00:00", amount=PRICE)]
    report = walk(record, [row("7", "refunded", "expired", gateway="payos")], hand_refunds=hand)
    assert report.counts()["ledger_mismatches"] == 0
    assert report.double_refunds == []


def test_two_accepted_refunds_are_a_double_and_a_mismatch() -> None:
    record = ledger(
        transfers=[transfer("1-0")], refunds=[refund("1-0"), refund("1-0", at="2026-01-01T10:07:00+00:00")]
    )
    report = walk(record, [row("1-0", "refunded", "expired")])
    assert len(report.double_refunds) == 1
    assert [m["difference"] for m in report.ledger_mismatches] == [-PRICE]


def test_the_desk_listing_returned_money_is_an_invitation() -> None:
    record = ledger(transfers=[transfer("1-0")], refunds=[refund("1-0")])
    stuck = row("1-0", "refund_required", "expired")  # "refused 41" although MoMo refunded
    report = walk(record, [stuck], desk=[stuck])
    assert [i["desk_status"] for i in report.manual_refund_invitations_for_returned_money] == [
        "refund_required"
    ]


def test_the_desk_listing_money_not_returned_is_no_invitation() -> None:
    record = ledger(transfers=[transfer("1-0")], refunds=[refund("1-0", accepted=False, code="99")])
    waiting = row("1-0", "needs_review", "expired")
    assert walk(record, [waiting], desk=[waiting]).manual_refund_invitations_for_returned_money == []


def test_a_link_failure_is_accepted_only_when_the_gateway_made_no_link() -> None:
    record = ledger(creates=[create("11-0"), create("1200", ok=False, gateway="payos")])
    report = walk(record, [], link_failures=[LinkFailure("o11", 11), LinkFailure("o12", 12)])
    assert [f["order_id"] for f in report.unconfirmed_link_failures] == ["o11"]


def test_order_codes_come_back_from_gateway_ids() -> None:
    assert order_code_of("momo", "123456789-2") == 123456789
    assert order_code_of("vnpay", "123456789-0") == 123456789
    assert order_code_of("payos", "12345678910") == 123456789  # attempt 10: a moved orderCode
    assert order_code_of("payos", "garbage") is None


def test_since_keeps_one_scenarios_part() -> None:
    record = ledger(transfers=[transfer("1-0", at="2026-01-01T09:00:00+00:00"), transfer("2-0")])
    from datetime import UTC, datetime

    part = since(record, datetime(2026, 1, 1, 9, 30, tzinfo=UTC))
    assert [t["gatewayOrderId"] for t in part["transfers"]] == ["2-0"]


def surplus(gid: str, amount: int, status: str = "needs_review") -> OurPayment:
    """A PayOS surplus row: beside the attempt, same gateway order id, the extra money."""
    return OurPayment(
        gateway="payos",
        gateway_order_id=gid,
        status=status,
        amount=amount,
        received_amount=amount,
        order_status="paid",
    )


def test_an_over_paid_link_kept_and_reviewed_balances() -> None:
    record = ledger(transfers=[transfer("8", gateway="payos"), transfer("8", 20_000, "payos")])
    rows = [row("8", "success", "paid", gateway="payos"), surplus("8", 20_000)]
    report = walk(record, rows, desk=[rows[1]])
    assert report.counts()["ledger_mismatches"] == 0
    assert report.manual_refund_invitations_for_returned_money == []


def test_the_surplus_returned_by_hand_once_balances_and_twice_is_a_double() -> None:
    record = ledger(transfers=[transfer("8", gateway="payos"), transfer("8", 20_000, "payos")])
    rows = [row("8", "success", "paid", gateway="payos"), surplus("8", 20_000, "refunded")]
    once = [HandRefund(gateway="payos", gateway_order_id="8", at="2026-01-01T11:00:00+00:00", amount=20_000)]
    assert walk(record, rows, hand_refunds=once).counts()["ledger_mismatches"] == 0
    assert walk(record, rows, hand_refunds=once).double_refunds == []
    twice = [
        *once,
        HandRefund(gateway="payos", gateway_order_id="8", at="2026-01-01T11:01:00+00:00", amount=20_000),
    ]
    report = walk(record, rows, hand_refunds=twice)
    assert [d["how"] for d in report.double_refunds] == ["hand"]
    assert [m["difference"] for m in report.ledger_mismatches] == [-20_000]


def test_a_refund_of_a_paid_orders_price_is_a_double() -> None:
    # Nothing of an exactly paid link is to be returned: asking the gateway for it is one too many.
    record = ledger(transfers=[transfer("1-0")], refunds=[refund("1-0", accepted=False, code="41")])
    assert len(walk(record, [row("1-0", "success", "paid")]).double_refunds) == 1


def desk_with(*actions: tuple[str, str, str, str, str | None]) -> Desk:
    desk = Desk(api=None, headers={})  # violations() reads only the actions
    for phase, action, desk_status, answer, after in actions:
        desk.actions.append(
            DeskAction(
                phase=phase,
                action=action,
                payment_id="p-1",
                gateway="payos",
                gateway_order_id="8",
                desk_status=desk_status,
                answer=answer,
                order_status_after=after,
            )
        )
    return desk


def test_the_desk_acting_on_an_order_still_open_is_a_violation() -> None:
    desk = desk_with(
        ("open", "mark-refunded", "needs_review", "200", "pending_payment"),
        ("open", "refund", "needs_review", "409 NOT_REFUNDABLE", "pending_payment"),
    )
    assert sorted(desk.violations()) == ["desk_acted_on_open_order", "desk_open_not_order_still_open"]


def test_the_desk_refusing_open_orders_and_asked_twice_refusing_is_clean() -> None:
    desk = desk_with(
        ("open", "mark-refunded", "needs_review", "409 ORDER_STILL_OPEN", "pending_payment"),
        ("open", "mark-refunded", "needs_review", "200", "expired"),  # ended before the click: raced
        ("after", "mark-refunded", "needs_review", "200", "expired"),
        ("again", "mark-refunded", "refunded", "409 NOT_REFUNDABLE", "expired"),
    )
    assert desk.violations() == {}
    assert desk.figures()["open_but_ended_before_the_action"] == 1


def test_the_desk_acting_twice_or_refusing_an_ended_order_is_a_violation() -> None:
    desk = desk_with(
        ("after", "refund", "refund_required", "502 REFUND_FAILED", "expired"),
        ("again", "mark-refunded", "refund_required", "200", "expired"),
    )
    assert sorted(desk.violations()) == ["desk_acted_twice", "desk_refused_ended_order"]
