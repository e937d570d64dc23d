"""The one small interface every payment gateway adapter implements.

Adapters speak the gateway's exact protocol (GATEWAYS.md) and translate its answers into
`GatewayResult`, so the workflow only ever sees our own vocabulary (`PaymentOutcome`).
Amounts are integer VND; datetimes are timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from domain.statuses import PaymentOutcome


class InvalidSignature(Exception):
    """The payload's signature (or shape) does not verify: change nothing, answer 4xx."""


class GatewayError(Exception):
    """No answer from the gateway (transport, timeout, 5xx, garbage), or one that is not a verdict:
    nothing is decided from it; ask again (docs/GATEWAYS.md)."""


@dataclass(frozen=True)
class LinkItem:
    name: str
    quantity: int
    price: int


@dataclass(frozen=True)
class LinkRequest:
    gateway_order_id: str  # unique per attempt at the gateway (see make_gateway_order_id)
    request_id: str  # idempotency key of this create call
    amount: int  # VND
    description: str
    created_at: datetime
    expires_at: datetime  # our deadline; sent where the gateway supports a link expiry
    return_url: str  # browser return (ours)
    ipn_url: str  # server-to-server notification (ours)
    client_ip: str = "127.0.0.1"
    items: tuple[LinkItem, ...] = ()
    lang: str = "vi"


@dataclass(frozen=True)
class PaymentLink:
    gateway_order_id: str
    request_id: str
    payment_url: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayResult:
    """A verified notification, browser return or query answer, in our terms."""

    gateway: str
    gateway_order_id: str
    outcome: PaymentOutcome
    result_code: str
    amount: int | None
    transaction_id: str | None = None
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


class RefundState(StrEnum):
    """Where one payment's refund stands, as the gateway shows it (docs/GATEWAYS.md, "Refunds")."""

    REFUNDED = "refunded"  # the gateway shows the refund done
    REFUSED = "refused"  # a definite no: a person must send the money back
    UNKNOWN = "unknown"  # no verdict (no answer, a duplicate-id answer, in progress): ask again later
    NONE = "none"  # lookup only: the gateway shows no refund of this payment


@dataclass(frozen=True)
class RefundResult:
    state: RefundState
    refund_id: str | None
    result_code: str
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state is RefundState.REFUNDED


class PaymentGateway(Protocol):
    name: str

    def make_gateway_order_id(self, order_code: int, attempt_no: int) -> str: ...

    async def create_link(self, req: LinkRequest) -> PaymentLink: ...

    def verify_notification(self, payload: Mapping[str, Any]) -> GatewayResult:
        """Server notification (IPN / webhook). Raises InvalidSignature."""
        ...

    def verify_return(self, params: Mapping[str, Any]) -> GatewayResult:
        """Browser return query parameters. Raises InvalidSignature."""
        ...

    async def query(self, gateway_order_id: str, *, created_at: datetime) -> GatewayResult:
        """The payment as the gateway sees it. An answer that is not a verdict comes back with outcome
        UNKNOWN; no answer at all raises GatewayError."""
        ...

    async def cancel(self, gateway_order_id: str, reason: str) -> bool:
        """Cancel an unpaid link; False when the gateway has no such API."""
        ...

    async def refund(
        self,
        *,
        gateway_order_id: str,
        transaction_id: str,
        amount: int,
        idempotency_key: str,
        description: str,
        paid_at: datetime | None = None,
        created_at: datetime | None = None,  # the link's created_at: VNPay's vnp_TransactionDate
    ) -> RefundResult:
        """Refund under `idempotency_key`, asking before concluding: the gateway's refunds of this
        payment are looked up first (a refund already there is never asked again), and every answer
        but a plain yes or a definite no is looked up again. Never raises for the gateway's silence:
        that is RefundState.UNKNOWN. ValueError: our record cannot make a valid request."""
        ...
