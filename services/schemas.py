"""Request and response shapes (camelCase on the wire). Money is StrictInt VND: a float or a
numeric string is refused, never rounded."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from domain.gateways import GATEWAY_NAMES
from domain.statuses import AttemptStatus, OrderStatus

# The names come from the core, so a new gateway or status is added in one place. A Literal built from
# values at run time is opaque to the type checker: it sees the strings they are.
if TYPE_CHECKING:
    GatewayName = str
    OrderStatusName = str
    AttemptStatusName = str
else:
    GatewayName = Literal[GATEWAY_NAMES]
    OrderStatusName = Literal[tuple(s.value for s in OrderStatus)]
    AttemptStatusName = Literal[tuple(s.value for s in AttemptStatus)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]  # an operator's why
MAX_STOCK = 10**9  # units of one variant on hand, at most
T = TypeVar("T")


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """Postgres text cannot hold NUL: refused here (422), not by a statement (500)."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


# ---- requests -------------------------------------------------------------------------------------


class VariantCreate(Camel):
    sku: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    name: Name
    price: Annotated[StrictInt, Field(ge=0, le=10**12)]
    stock_quantity: Annotated[StrictInt, Field(ge=0, le=MAX_STOCK)]


class ProductCreate(Camel):
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    variants: Annotated[list[VariantCreate], Field(min_length=1, max_length=100)]

    @field_validator("variants")
    @classmethod
    def _unique_skus(cls, v: list[VariantCreate]) -> list[VariantCreate]:
        if len({x.sku for x in v}) != len(v):
            raise ValueError("variant SKUs must be unique")
        return v


class OrderItemIn(Camel):
    variant_id: uuid.UUID
    quantity: Annotated[StrictInt, Field(ge=1, le=1000)]


class ReceiverIn(Camel):
    name: Name
    phone: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 .-]{6,18}[0-9]$")]
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    email: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$"),
        ]
        | None
    ) = None


class OrderCreate(Camel):
    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=50)]
    gateway: GatewayName
    order_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    receiver: ReceiverIn


class RetryIn(Camel):
    gateway: GatewayName | None = None


class CancelIn(Camel):
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class ExtendIn(Camel):
    minutes: Annotated[float, Field(ge=-10080, le=10080)]
    note: Note = ""

    @field_validator("minutes")
    @classmethod
    def _non_zero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("minutes must not be zero")
        return v


class ExpireIn(Camel):
    note: Note = ""


class NoteIn(Camel):
    note: Note = ""


class MarkRefundedIn(Camel):
    reference: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    note: Note = ""


class VariantPatch(Camel):
    """Any of: a stock correction (added or taken away), a price for orders placed from now on,
    withdrawing (or bringing back) the variant."""

    stock_delta: Annotated[StrictInt, Field(ge=-MAX_STOCK, le=MAX_STOCK)] | None = None
    price: Annotated[StrictInt, Field(ge=0, le=10**12)] | None = None
    active: StrictBool | None = None
    note: Note = ""

    @model_validator(mode="after")
    def _changes_something(self) -> VariantPatch:
        if not self.stock_delta and self.price is None and self.active is None:
            raise ValueError("give at least one of stockDelta (not zero), price, active")
        return self


# ---- responses ------------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Envelope(BaseModel, Generic[T]):
    """Every success: `{success: true, message, data}`."""

    success: Literal[True]
    message: str
    data: T


class ErrorOut(BaseModel):
    """Every failure: `{success: false, message, error}` with an error code."""

    success: Literal[False]
    message: str
    error: str


class VariantOut(Out):
    id: uuid.UUID
    sku: str
    name: str
    price: int
    stock_quantity: int


class ProductOut(Out):
    id: uuid.UUID
    name: str
    description: str
    variants: list[VariantOut]


class ItemOut(Out):
    product_id: uuid.UUID
    variant_id: uuid.UUID
    product_name: str
    variant_sku: str
    variant_name: str
    quantity: int
    unit_price: int
    sub_total_amount: int


class SessionOut(Out):
    session_id: uuid.UUID
    order_id: uuid.UUID
    status: str
    expires_at: datetime
    started_at: datetime
    duration_minutes: float
    timeout_minutes: float
    remaining_seconds: int
    remaining_minutes: float
    minutes_elapsed: float
    is_expired: bool
    payment_attempts: int
    max_payment_attempts: int
    remaining_attempts: int
    last_payment_attempt: datetime | None
    can_retry: bool


class AttemptOut(Out):
    attempt_no: int
    gateway: str
    gateway_order_id: str
    request_id: str
    status: str
    amount: int
    payment_url: str
    result_code: str | None
    transaction_id: str | None
    expires_at: datetime
    created_at: datetime
    review_reason: str | None = None  # why verified money could not pay the order (needs_review)
    received_amount: int | None = None  # what the gateway reported receiving, when it was not the amount


class ReceiverOut(Out):
    name: str
    phone: str
    address: str
    email: str | None = None


class PaymentSummary(Out):
    gateway: str
    payment_url: str
    status: str


class OrderOut(Out):
    order_id: uuid.UUID
    order_code: int
    customer_id: str
    status: str
    payment_status: str | None
    order_type: str
    currency_code: str
    subtotal_amount: int
    discount_amount: int
    shipping_fee: int
    grand_total: int
    receiver: ReceiverOut
    items: list[ItemOut]
    session: SessionOut
    payment: PaymentSummary | None
    attempts: list[AttemptOut]
    late_payment: bool
    end_reason: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None


class OrderSummary(Out):
    order_id: uuid.UUID
    order_code: int
    customer_id: str
    status: str
    payment_status: str | None
    order_type: str
    grand_total: int
    currency_code: str
    late_payment: bool
    expires_at: datetime
    created_at: datetime


class Page(Out, Generic[T]):
    items: list[T]
    page: int
    size: int
    total: int


class RetryOut(Out):
    order_id: uuid.UUID
    payment_attempts: int
    max_payment_attempts: int
    remaining_attempts: int
    payment_url: str
    gateway: str


class ClientSecretOut(Out):
    client_secret: str  # `Authorization: Bearer <it>`; on the event stream `?clientSecret=<it>`
    expires_at: datetime


class RevokedOut(Out):
    revoked: int  # how many live secrets of the order were revoked


class StreamTokenOut(Out):
    token: str
    expires_in: int  # seconds; checked when a stream opens
    events_url: str


# ---- the operators' desk --------------------------------------------------------------------------


class DeskPaymentOut(Out):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    order_code: int
    order_status: str
    attempt_no: int
    gateway: str
    gateway_order_id: str
    transaction_id: str | None
    amount: int
    received_amount: int | None
    status: str
    reason: str | None  # what the last refund said, or why the money is under review
    refund_asked: bool  # a gateway refund was asked and not refused: it may have happened, none by hand
    updated_at: datetime


class NotificationOut(Out):
    notification_id: uuid.UUID
    order_id: uuid.UUID | None  # None: verified money that matches no attempt of ours
    order_code: int | None
    gateway: str
    gateway_order_id: str
    outcome: str
    result_code: str
    amount: int | None
    transaction_id: str | None
    received_at: datetime
    delivered_at: datetime | None


class AuditOut(Out):
    audit_id: uuid.UUID
    at: datetime
    actor: str
    action: str
    order_id: uuid.UUID | None
    order_code: int | None
    payment_id: uuid.UUID | None
    variant_id: uuid.UUID | None
    notification_id: uuid.UUID | None
    note: str
    detail: dict[str, Any]


class VariantStockOut(Out):
    variant_id: uuid.UUID
    product_id: uuid.UUID
    product_name: str
    sku: str
    name: str
    price: int
    active: bool
    on_hand: int  # free for new orders
    reserved: int  # held by orders still pending payment
    updated_at: datetime
