"""The money invariants, walked over the gateways' own record (the sandbox's `GET /sandbox/ledger`),
not over our rows: a VND the gateway took with no row of ours is seen, and every refund request the
gateway received counts, the ones it refused included.

Pure: hand it the ledger, our payment rows, the operators' hand refunds (audit log), what the desk
lists, and the orders that ended `payment_link_unavailable`; it returns what is wrong.

  ledger_mismatches   per gateway payment (gateway, gatewayOrderId): the VND taken (sum of transfers)
                      must equal what our rows account for: the price of a paid order's `success`
                      attempt + money held for a person (`needs_review`; `refund_required` only at a
                      gateway without a refund API, PayOS) + money returned (accepted gateway refunds
                      and refunds an operator marked done by hand). Any difference, either way.
  double_refunds      a refund request (gateway refund, accepted or refused; or a hand refund) made
                      when the money taken beyond a paid order's price was already returned in full.
  manual_refund_invitations_for_returned_money
                      a payment the desk lists (refund_required / needs_review, which is also what
                      mark-refunded accepts once no refund runs) whose money the ledger shows returned
                      (all of what was taken beyond a paid order's price).
  unconfirmed_link_failures
                      an order ended `payment_link_unavailable` while the ledger shows a link of it
                      was created and its answer reached us (`creates[].ok`, not `faulted`): a
                      create whose answer was lost or too slow failed from our side (MoMo's link,
                      which cannot be looked up with its URL, was never shown to anyone).
A gateway payment may have several rows of ours: the attempt, and PayOS surplus rows beside it
(`surplus_of`, same gateway order id, `needs_review` for a transfer beyond the price).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.statuses import NEEDS_PERSON

# PayOS has no refund API: its late money waits for an operator's bank transfer (then mark-refunded).
NO_REFUND_API = ("payos",)
PAYOS_ATTEMPTS_PER_ORDER = 100  # gateways/payos.py: orderCode = order_code * 100 + attempt_no (+ moves)

Key = tuple[str, str]  # (gateway, gatewayOrderId)


@dataclass(frozen=True)
class OurPayment:
    """One payment row of ours with its order's status."""

    gateway: str
    gateway_order_id: str
    status: str
    amount: int  # the attempt's price
    received_amount: int | None  # what the gateway reported receiving, when it differs or is known
    order_status: str
    order_id: str = ""


@dataclass(frozen=True)
class HandRefund:
    """An operator's mark-refunded (audit `payment.mark_refunded`): money sent back outside the gateway."""

    gateway: str
    gateway_order_id: str
    at: str  # ISO time
    amount: int  # what the marked row held (its received amount, else its amount)


@dataclass(frozen=True)
class LinkFailure:
    """An order that ended `payment_link_unavailable`."""

    order_id: str
    order_code: int


@dataclass
class LedgerReport:
    ledger_mismatches: list[dict[str, Any]] = field(default_factory=list)
    double_refunds: list[dict[str, Any]] = field(default_factory=list)
    manual_refund_invitations_for_returned_money: list[dict[str, Any]] = field(default_factory=list)
    unconfirmed_link_failures: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "ledger_mismatches": len(self.ledger_mismatches),
            "double_refunds": len(self.double_refunds),
            "manual_refund_invitations_for_returned_money": len(
                self.manual_refund_invitations_for_returned_money
            ),
            "unconfirmed_link_failures": len(self.unconfirmed_link_failures),
        }


def order_code_of(gateway: str, gateway_order_id: str) -> int | None:
    """The order code a gateway id was made from (gateways/*.make_gateway_order_id)."""
    try:
        if gateway == "payos":
            return int(gateway_order_id) // PAYOS_ATTEMPTS_PER_ORDER
        return int(gateway_order_id.split("-", 1)[0])
    except ValueError:
        return None


def _at(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # the sandbox writes UTC


def since(ledger: dict[str, list[dict[str, Any]]], start: datetime) -> dict[str, list[dict[str, Any]]]:
    """The part of the record made at or after `start` (one scenario's, as scenarios run one by one)."""
    return {name: [e for e in entries if _at(e["at"]) >= start] for name, entries in ledger.items()}


def keys_of(ledger: dict[str, list[dict[str, Any]]]) -> set[Key]:
    return {
        (e["gateway"], str(e["gatewayOrderId"]))
        for name in ("transfers", "refunds")
        for e in ledger.get(name, [])
    }


def _held(row: OurPayment) -> int:
    held = row.status == "needs_review" or (row.status == "refund_required" and row.gateway in NO_REFUND_API)
    if not held:
        return 0
    return row.received_amount if row.received_amount is not None else row.amount


def walk(
    ledger: dict[str, list[dict[str, Any]]],
    payments: list[OurPayment],
    hand_refunds: Sequence[HandRefund] = (),
    desk: Sequence[OurPayment] = (),
    link_failures: Sequence[LinkFailure] = (),
) -> LedgerReport:
    """Every gateway payment in the ledger or in our rows, held against our rows."""
    report = LedgerReport()
    transfers: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    refunds: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for t in ledger.get("transfers", []):
        transfers[(t["gateway"], str(t["gatewayOrderId"]))].append(t)
    for r in ledger.get("refunds", []):
        refunds[(r["gateway"], str(r["gatewayOrderId"]))].append(r)
    rows: dict[Key, list[OurPayment]] = defaultdict(list)
    for p in payments:
        rows[(p.gateway, p.gateway_order_id)].append(p)
    by_hand: dict[Key, list[HandRefund]] = defaultdict(list)
    for h in hand_refunds:
        by_hand[(h.gateway, h.gateway_order_id)].append(h)

    returned: dict[Key, int] = {}
    taken_of: dict[Key, int] = {}
    kept_of: dict[Key, int] = {}
    totals: dict[str, int] = defaultdict(int)
    for key in sorted(set(transfers) | set(refunds) | set(rows) | set(by_hand)):
        ours = rows.get(key, [])
        taken = sum(int(t["amount"]) for t in transfers.get(key, []))
        kept = sum(p.amount for p in ours if p.status == "success" and p.order_status == "paid")
        held = sum(_held(p) for p in ours)
        # Refund requests and hand refunds in time order: one made once the money is all back is a
        # double refund, whatever the gateway answered (a refused resend was still sent).
        events: list[tuple[datetime, str, Any]] = [(_at(r["at"]), "gateway", r) for r in refunds.get(key, [])]
        events += [(_at(h.at), "hand", h) for h in by_hand.get(key, [])]
        back = 0
        returnable = taken - kept
        for at, how, event in sorted(events, key=lambda e: e[0]):
            if taken > 0 and back >= returnable:
                report.double_refunds.append(
                    {
                        "gateway": key[0],
                        "gateway_order_id": key[1],
                        "how": how,
                        "at": at.isoformat(),
                        "taken": taken,
                        "kept": kept,
                        "returned_before": back,
                        **(
                            {
                                "accepted": event.get("accepted"),
                                "code": event.get("code"),
                                "duplicate": event.get("duplicate"),
                            }
                            if how == "gateway"
                            else {}
                        ),
                    }
                )
            if how == "gateway" and event.get("accepted"):
                back += int(event.get("amount") or 0)
            elif how == "hand":
                back += event.amount
        accounted = kept + held + back
        returned[key], taken_of[key], kept_of[key] = back, taken, kept
        totals["taken_vnd"] += taken
        totals["kept_vnd"] += kept
        totals["held_vnd"] += held
        totals["returned_vnd"] += back
        if accounted != taken:
            report.ledger_mismatches.append(
                {
                    "gateway": key[0],
                    "gateway_order_id": key[1],
                    "taken": taken,
                    "kept": kept,
                    "held": held,
                    "returned": back,
                    "difference": taken - accounted,
                    "ours": [(p.status, p.amount, p.received_amount, p.order_status) for p in ours],
                }
            )
            totals["mismatch_vnd"] += abs(taken - accounted)

    for p in desk:
        key = (p.gateway, p.gateway_order_id)
        back, returnable = returned.get(key, 0), taken_of.get(key, 0) - kept_of.get(key, 0)
        if p.status in NEEDS_PERSON and back > 0 and back >= returnable:
            report.manual_refund_invitations_for_returned_money.append(
                {
                    "gateway": key[0],
                    "gateway_order_id": key[1],
                    "desk_status": p.status,
                    "returned": back,
                    "taken": taken_of.get(key, 0),
                }
            )

    made = {
        order_code_of(c["gateway"], str(c["gatewayOrderId"]))
        for c in ledger.get("creates", [])
        if c.get("ok") and not c.get("faulted")
    }
    for f in link_failures:
        if f.order_code in made:
            report.unconfirmed_link_failures.append({"order_id": f.order_id, "order_code": f.order_code})

    all_refunds = ledger.get("refunds", [])
    report.figures = {
        **totals,
        "transfers": len(ledger.get("transfers", [])),
        "payments_taken": sum(1 for k, v in transfers.items() if v),
        "refund_requests": len(all_refunds),
        "refunds_accepted": sum(1 for r in all_refunds if r.get("accepted")),
        "refund_answers_duplicate": sum(1 for r in all_refunds if r.get("duplicate")),
        "creates": len(ledger.get("creates", [])),
        "creates_failed": sum(1 for c in ledger.get("creates", []) if not c.get("ok")),
        "queries": len(ledger.get("queries", [])),
        "queries_faulted": sum(1 for q in ledger.get("queries", []) if q.get("faulted")),
        "hand_refunds": len(hand_refunds),
    }
    return report
