"""The sandbox's shared vocabulary and its one in-memory store.

Everything lives in a plain dict inside this process: restarting the app forgets every
sandbox transaction, and two processes (e.g. several uvicorn workers) do not share them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

from devstack.sandbox.faults import FaultPlan
from devstack.sandbox.ledger import Ledger
from infra.settings import Settings


class TxnState(StrEnum):
    """What the simulated customer did; each gateway module turns it into its own codes."""

    PENDING = "pending"
    PROCESSING = "processing"  # the customer opened the link and is confirming: no verdict yet
    PAID = "paid"
    FAILED = "failed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


OPEN = "open"  # pay-page action: the customer starts confirming (PENDING -> PROCESSING)
ACTIONABLE = frozenset({TxnState.PENDING, TxnState.PROCESSING})
ACTIONS: dict[str, TxnState] = {
    "pay": TxnState.PAID,
    "fail": TxnState.FAILED,
    "decline": TxnState.DECLINED,
    "cancel": TxnState.CANCELLED,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SandboxTransaction:
    gateway: str
    id: str  # MoMo orderId, VNPay vnp_TxnRef, PayOS orderCode: also the pay-page token
    amount: int  # VND
    order_info: str
    created_at: datetime
    expires_at: datetime
    return_url: str
    notify_url: str | None  # where the server notification goes (None: nowhere)
    request: dict[str, Any]  # the merchant's create request, as received
    state: TxnState = TxnState.PENDING
    transaction_no: str = ""  # the gateway's own number, given when the customer acts
    finished_at: datetime | None = None
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # refund request id -> answer
    extra: dict[str, Any] = field(default_factory=dict)  # per-gateway details

    def refresh(self, now: datetime) -> None:
        """A pending transaction past its expiry becomes expired (checked lazily, on access)."""
        if self.state is TxnState.PENDING and now >= self.expires_at:
            self.state = TxnState.EXPIRED
            self.finished_at = self.expires_at

    @property
    def refunded(self) -> int:
        return sum(r["amount"] for r in self.refunds.values() if r.get("ok"))


@dataclass(frozen=True)
class Outbound:
    """One server-to-server notification: GET with query parameters or POST with JSON."""

    method: str
    url: str
    payload: dict[str, Any]


class GatewaySim(Protocol):
    """What the shared pay page needs from each simulated gateway."""

    name: str

    def result_code(self, txn: SandboxTransaction) -> str: ...

    def final_notification(self, txn: SandboxTransaction) -> Outbound | None: ...

    def stale_notification(self, txn: SandboxTransaction) -> Outbound | None:
        """An out-of-date notification to deliver after the final one, where the protocol has one."""
        ...

    def return_url(self, txn: SandboxTransaction) -> str | None: ...


class SandboxStore:
    def __init__(self) -> None:
        self.transactions: dict[tuple[str, str], SandboxTransaction] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.refund_requests: list[
            dict[str, Any]
        ] = []  # every refund request that named a payment, kept or not
        self.ledger = Ledger()  # the gateways' own record of money in and out (GET /sandbox/ledger)
        self.faults = FaultPlan()  # off until a test or chaos switches faults on (POST /sandbox/faults)
        # MoMo takes each orderId once (payments and refunds share the space) and each requestId once.
        self.momo_order_ids: set[str] = set()
        self.momo_request_ids: set[str] = set()
        self.vnpay_request_ids: set[str] = set()  # vnp_RequestId of refunds, taken once
        self._numbers = itertools.count(40_000_001)
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, txn: SandboxTransaction) -> None:
        self.transactions[(txn.gateway, txn.id)] = txn

    def get(self, gateway: str, txn_id: str) -> SandboxTransaction | None:
        return self.transactions.get((gateway, txn_id))

    def by_link_id(self, gateway: str, link_id: str) -> SandboxTransaction | None:
        """PayOS also names a link by its paymentLinkId (its checkout page's address)."""
        found = [t for t in self.of_gateway(gateway) if t.extra.get("paymentLinkId") == link_id]
        return found[0] if found else None

    def of_gateway(self, gateway: str) -> list[SandboxTransaction]:
        return [t for (g, _), t in self.transactions.items() if g == gateway]

    def next_number(self) -> str:
        return str(next(self._numbers))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run in the background; keep a reference so the task is not garbage-collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass
class Sandbox:
    """What every sandbox module is built from."""

    settings: Settings
    store: SandboxStore
    base_url: str  # public URL of the mounted sandbox, e.g. http://127.0.0.1:8000/sandbox
    vnpay_ipn_url: str  # VNPay's IPN URL is configured per merchant account, not per request
    payos_webhook_url: str  # likewise registered once with PayOS

    def pay_url(self, gateway: str, txn_id: str) -> str:
        return f"{self.base_url}/pay/{gateway}/{quote(txn_id, safe='')}"
