"""The gateways' own record of what happened to money, as a bank statement would show it.

Chaos and the tests hold our rows against it: money taken is the sum of `transfers`, money returned the
sum of the `refunds` that were `accepted`. Every refund request is listed, refused and duplicate ones
too (`duplicate`: the request reused an id the gateway had already seen, so it could move nothing).
Served by GET /sandbox/ledger (docs/GATEWAYS.md, "The sandbox").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Ledger:
    transfers: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    creates: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)

    def transfer(self, *, gateway: str, gateway_order_id: str, amount: int, transaction_id: str) -> None:
        self.transfers.append(
            {
                "gateway": gateway,
                "gatewayOrderId": gateway_order_id,
                "amount": amount,
                "transactionId": transaction_id,
                "at": _now(),
            }
        )

    def refund(
        self,
        *,
        gateway: str,
        gateway_order_id: str | None,
        transaction_id: str | None,
        request_id: str | None,
        refund_order_id: str | None,
        amount: Any,
        accepted: bool,
        code: Any,
        duplicate: bool,
    ) -> None:
        self.refunds.append(
            {
                "gateway": gateway,
                "gatewayOrderId": gateway_order_id,
                "transactionId": transaction_id,
                "requestId": request_id,
                "refundOrderId": refund_order_id,
                "amount": amount,
                "accepted": accepted,
                "code": str(code),
                "duplicate": duplicate,
                "faulted": False,
                "at": _now(),
            }
        )

    def create(self, *, gateway: str, gateway_order_id: Any, ok: bool, code: Any) -> None:
        self.creates.append(
            {
                "gateway": gateway,
                "gatewayOrderId": str(gateway_order_id),
                "ok": ok,
                "code": str(code),
                "faulted": False,
                "at": _now(),
            }
        )

    def query(self, *, gateway: str, gateway_order_id: Any, code: Any, faulted: bool = False) -> None:
        self.queries.append(
            {
                "gateway": gateway,
                "gatewayOrderId": str(gateway_order_id),
                "code": str(code),
                "faulted": faulted,
                "at": _now(),
            }
        )

    def mark_lost(self, op: str) -> None:
        """The call just answered (a create, a query, a refund) never reaches the merchant in time
        (a fault): its entry says so, so a reader can tell what the merchant could have known."""
        entries = {"create": self.creates, "query": self.queries, "refund": self.refunds}.get(op)
        if entries:
            entries[-1]["faulted"] = True

    def as_json(self) -> dict[str, Any]:
        return {
            "transfers": self.transfers,
            "refunds": self.refunds,
            "creates": self.creates,
            "queries": self.queries,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat()
