"""The schema: one SQLModel table class per table, with its constraints and indexes.

These classes are the single definition of the tables the store reads and writes. Alembic
migrations (migrations/) are how a database gets there, and tests/store/test_schema.py fails when the
two disagree (Alembic's autogenerate comparison against a migrated database). What a model cannot
say lives only in the migrations: the triggers that refuse any UPDATE of `order_item` and any
UPDATE, DELETE or TRUNCATE of `audit_log`.

Table classes never travel as workflow payloads: workflows exchange the dataclasses of
domain/messages.py (SQLModel inside the workflow sandbox is a known source of mapper errors).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field
from sqlmodel import SQLModel as _SQLModel

from domain.statuses import NEEDS_PERSON, AttemptStatus, OrderStatus, SessionStatus
from store.status_sql import sql_in

if TYPE_CHECKING:
    # SQLModel gives every `table=True` class its `__table__` at run time but does not declare it, and the
    # store builds its SQL on those Table objects: declare it for the type checker only.
    class SQLModel(_SQLModel):
        __table__: ClassVar[Table]
else:
    SQLModel = _SQLModel


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


def _id() -> Any:
    return Field(default_factory=uuid.uuid4, sa_column=Column(Uuid, primary_key=True))


def _ref(target: str, *, nullable: bool = False, cascade: bool = True, unique: bool = False) -> Any:
    return Field(
        sa_column=Column(
            Uuid,
            ForeignKey(target, ondelete="CASCADE" if cascade else None),
            nullable=nullable,
            unique=unique,
        )
    )


def _text(*, nullable: bool = False, default: str | None = None) -> Any:
    server_default = text(f"'{default}'") if default is not None else None
    return Field(default=default, sa_column=Column(Text, nullable=nullable, server_default=server_default))


def _money(*, nullable: bool = False, default: int | None = None) -> Any:
    server_default = text(str(default)) if default is not None else None
    return Field(
        default=default, sa_column=Column(BigInteger, nullable=nullable, server_default=server_default)
    )


def _count(default: int | None = None) -> Any:
    server_default = text(str(default)) if default is not None else None
    return Field(default=default, sa_column=Column(Integer, nullable=False, server_default=server_default))


def _flag(default: bool = False) -> Any:
    return Field(
        default=default, sa_column=Column(Boolean, nullable=False, server_default=text(str(default).lower()))
    )


def _at(*, nullable: bool = False, now: bool = True) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=nullable, server_default=func.now() if now else None
        ),
    )


def _json(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONB, nullable=nullable))


# ---- the catalog ------------------------------------------------------------------------------------


class Product(SQLModel, table=True):
    __tablename__ = "product"
    __table_args__ = (CheckConstraint("length(name) > 0", name="product_name_check"),)

    id: uuid.UUID = _id()
    name: str = _text()
    description: str = _text(default="")
    created_at: datetime | None = _at()


class ProductVariant(SQLModel, table=True):
    __tablename__ = "product_variant"
    __table_args__ = (
        UniqueConstraint("sku", name="product_variant_sku_key"),
        CheckConstraint("price >= 0", name="product_variant_price_check"),
        CheckConstraint("stock_quantity >= 0", name="product_variant_stock_quantity_check"),
        Index("ix_product_variant_product", "product_id"),
    )

    id: uuid.UUID = _id()
    product_id: uuid.UUID = _ref("product.id", cascade=False)
    sku: str = _text()
    name: str = _text()
    price: int = _money()
    stock_quantity: int = _count()
    active: bool = _flag(True)  # false: withdrawn, takes no new orders (VARIANT_UNAVAILABLE)
    created_at: datetime | None = _at()
    updated_at: datetime | None = _at()


# ---- orders -------------------------------------------------------------------------------------------


class Order(SQLModel, table=True):
    __tablename__ = "order"
    __table_args__ = (
        UniqueConstraint("order_code", name="order_order_code_key"),
        CheckConstraint("order_code BETWEEN 100000000 AND 999999999", name="order_order_code_check"),
        CheckConstraint(_in("status", OrderStatus), name="order_status_check"),
        CheckConstraint("subtotal_amount >= 0", name="order_subtotal_amount_check"),
        CheckConstraint("discount_amount >= 0", name="order_discount_amount_check"),
        CheckConstraint("shipping_fee >= 0", name="order_shipping_fee_check"),
        CheckConstraint("grand_total >= 0", name="order_grand_total_check"),
        CheckConstraint("grand_total = subtotal_amount - discount_amount + shipping_fee", name="order_check"),
        Index("ix_order_customer_created", "customer_id", text("created_at DESC")),
        Index("ix_order_status_created", "status", text("created_at DESC")),
        Index("ix_order_created", text("created_at DESC")),
        # The archive and /metrics range-scan ended orders that are not archived.
        Index("ix_order_unarchived_ended", "ended_at", postgresql_where=text("NOT archived")),
    )

    id: uuid.UUID = _id()
    order_code: int = _count()
    customer_id: str = _text()
    status: str = _text()
    order_type: str = _text()
    currency_code: str = Field(
        default="VND", sa_column=Column(CHAR(3), nullable=False, server_default=text("'VND'"))
    )
    subtotal_amount: int = _money()
    discount_amount: int = _money(default=0)
    shipping_fee: int = _money(default=0)
    grand_total: int = _money()
    receiver_name: str = _text()
    receiver_phone: str = _text()
    receiver_address: str = _text()
    receiver_email: str | None = _text(nullable=True)
    request_hash: str = _text()
    end_reason: str | None = _text(nullable=True)
    late_payment: bool = _flag()
    archived: bool = _flag()
    created_at: datetime | None = _at()
    updated_at: datetime | None = _at()
    ended_at: datetime | None = _at(nullable=True, now=False)


class OrderItem(SQLModel, table=True):
    """A frozen line of the checkout: Postgres refuses any UPDATE (a trigger); an adjustment is a
    new record."""

    __tablename__ = "order_item"
    __table_args__ = (
        UniqueConstraint("order_id", "variant_id", name="order_item_order_id_variant_id_key"),
        CheckConstraint("quantity > 0", name="order_item_quantity_check"),
        CheckConstraint("unit_price >= 0", name="order_item_unit_price_check"),
        CheckConstraint("sub_total_amount = unit_price * quantity", name="order_item_check"),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = _ref("order.id")
    product_id: uuid.UUID = _ref("product.id", cascade=False)
    variant_id: uuid.UUID = _ref("product_variant.id", cascade=False)
    product_name: str = _text()
    variant_sku: str = _text()
    variant_name: str = _text()
    quantity: int = _count()
    unit_price: int = _money()
    sub_total_amount: int = _money()
    created_at: datetime | None = _at()


class OrderSession(SQLModel, table=True):
    __tablename__ = "order_session"
    __table_args__ = (
        CheckConstraint(_in("status", SessionStatus), name="order_session_status_check"),
        CheckConstraint("session_duration_minutes > 0", name="order_session_session_duration_minutes_check"),
        CheckConstraint("payment_attempts >= 0", name="order_session_payment_attempts_check"),
        CheckConstraint("max_payment_attempts >= 0", name="order_session_max_payment_attempts_check"),
        Index("ix_order_session_status_expires", "status", "expires_at"),
        Index("ix_order_session_expires", "expires_at"),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = _ref("order.id", unique=True)
    status: str = _text(default=SessionStatus.ACTIVE.value)
    session_duration_minutes: Decimal = Field(sa_column=Column(Numeric(10, 4), nullable=False))
    expires_at: datetime = _at(now=False)
    started_at: datetime = _at(now=False)
    payment_attempts: int = _count(default=0)
    max_payment_attempts: int = _count(default=3)
    last_payment_attempt: datetime | None = _at(nullable=True, now=False)
    metadata_: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSONB, nullable=True))
    created_at: datetime | None = _at()
    updated_at: datetime | None = _at()


# ---- payments -------------------------------------------------------------------------------------------


class Payment(SQLModel, table=True):
    """One payment attempt: a link at one gateway, and what became of its money."""

    __tablename__ = "payment"
    __table_args__ = (
        # An attempt's keys; a surplus row (`surplus_of`) shares them with its attempt (migration 0007).
        Index(
            "payment_order_id_attempt_no_key",
            "order_id",
            "attempt_no",
            unique=True,
            postgresql_where=text("surplus_of IS NULL"),
        ),
        Index(
            "payment_gateway_gateway_order_id_key",
            "gateway",
            "gateway_order_id",
            unique=True,
            postgresql_where=text("surplus_of IS NULL"),
        ),
        # An order's payments, surplus rows included (its detail, listings' payment status, reminders):
        # the partial unique keys above cannot serve a lookup that does not say `surplus_of IS NULL`.
        Index("ix_payment_order", "order_id", "attempt_no"),
        Index(
            "ix_payment_surplus_transfer",
            "gateway",
            "gateway_order_id",
            "transaction_id",
            unique=True,
            postgresql_where=text("surplus_of IS NOT NULL"),
        ),
        CheckConstraint("attempt_no >= 0", name="payment_attempt_no_check"),
        CheckConstraint("amount >= 0", name="payment_amount_check"),
        CheckConstraint(_in("status", AttemptStatus), name="payment_status_check"),
        Index(
            "ix_payment_needs_person",
            "status",
            postgresql_where=text(f"status IN {sql_in(NEEDS_PERSON)}"),
        ),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = _ref("order.id")
    attempt_no: int = _count()
    gateway: str = _text()
    gateway_order_id: str = _text()
    request_id: str = _text()
    amount: int = _money()
    status: str = _text(default=AttemptStatus.PENDING.value)
    result_code: str | None = _text(nullable=True)
    transaction_id: str | None = _text(nullable=True)
    payment_url: str = _text()
    expires_at: datetime = _at(now=False)
    raw_notification: dict[str, Any] | None = _json()
    review_reason: str | None = _text(nullable=True)  # needs_review: why the money could not pay
    received_amount: int | None = _money(nullable=True)  # needs_review: what the gateway reported
    cancel_failures: int = _count(default=0)
    cancel_error: str | None = _text(nullable=True)
    refund_note: str | None = _text(
        nullable=True
    )  # what the last refund said, or how it was refunded by hand
    refund_asked_at: datetime | None = _at(nullable=True, now=False)  # a gateway refund may be under way
    # A surplus row: money beside the attempt it names (a transfer beyond a paid price), for review.
    surplus_of: uuid.UUID | None = _ref("payment.id", nullable=True)
    created_at: datetime | None = _at()
    updated_at: datetime | None = _at()


class PaymentNotification(SQLModel, table=True):
    """The inbox of verified gateway verdicts: stored before the workflow is signalled. `order_id`
    is empty for a verified verdict that matches no attempt of ours (kept for a person)."""

    __tablename__ = "payment_notification"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="payment_notification_dedupe_key_key"),
        Index("ix_payment_notification_order", "order_id"),
        Index(
            "ix_payment_notification_undelivered",
            "received_at",
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID | None = _ref("order.id", nullable=True)
    gateway: str = _text()
    gateway_order_id: str = _text()
    dedupe_key: str = _text()
    outcome: str = _text()
    result_code: str = _text()
    amount: int | None = _money(nullable=True)
    transaction_id: str | None = _text(nullable=True)
    payload: dict[str, Any] = _json(nullable=False)
    received_at: datetime | None = _at()
    delivered_at: datetime | None = _at(nullable=True, now=False)


# ---- what we tell people and other systems ---------------------------------------------------------------


class Notification(SQLModel, table=True):
    """Messages to the shopper (reminders): the unique key makes each channel's send at most once."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("order_id", "kind", "channel", name="notification_order_id_kind_channel_key"),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = _ref("order.id")
    kind: str = _text()
    channel: str = _text()
    status: str = _text(default="sent")
    detail: str | None = _text(nullable=True)
    failures: int = _count(default=0)
    created_at: datetime | None = _at()
    updated_at: datetime | None = _at()


class OrderEvent(SQLModel, table=True):
    """The outbox: written in the same transaction as the change it reports, delivered by the relay."""

    __tablename__ = "order_event"
    __table_args__ = (
        Index("ix_order_event_undelivered", "order_id", postgresql_where=text("delivered_at IS NULL")),
        Index("ix_order_event_due", "next_attempt_at", postgresql_where=text("delivered_at IS NULL")),
    )

    id: uuid.UUID = _id()
    order_id: uuid.UUID = _ref("order.id")
    type: str = _text()
    payload: dict[str, Any] = _json(nullable=False)
    created_at: datetime | None = _at()
    delivered_at: datetime | None = _at(nullable=True, now=False)
    attempts: int = _count(default=0)
    next_attempt_at: datetime | None = _at()
    last_error: str | None = _text(nullable=True)


# ---- what operators did --------------------------------------------------------------------------------


class AuditLog(SQLModel, table=True):
    """Every operator action, written in the transaction that makes the change. Append-only: a
    trigger refuses UPDATE, DELETE and TRUNCATE. No foreign keys: the trail outlives its subjects."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint("length(actor) > 0", name="audit_log_actor_check"),
        Index("ix_audit_log_at", text("at DESC")),
        Index(
            "ix_audit_log_order", "order_id", text("at DESC"), postgresql_where=text("order_id IS NOT NULL")
        ),
        Index(
            "ix_audit_log_payment",
            "payment_id",
            text("at DESC"),
            postgresql_where=text("payment_id IS NOT NULL"),
        ),
        Index(
            "ix_audit_log_variant",
            "variant_id",
            text("at DESC"),
            postgresql_where=text("variant_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = _id()
    at: datetime | None = _at()
    actor: str = _text()
    action: str = _text()
    order_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    payment_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    variant_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    notification_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    note: str = _text(default="")
    detail: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'"))
    )


class ClientSecret(SQLModel, table=True):
    """A client secret minted for one order (api/client_secrets.py): the signed secret names this
    row, so revoking it here refuses the secret everywhere. The secret itself is never stored."""

    __tablename__ = "client_secret"
    __table_args__ = (Index("ix_client_secret_order", "order_id"),)

    id: uuid.UUID = _id()
    order_id: uuid.UUID = _ref("order.id")
    created_at: datetime | None = _at()
    expires_at: datetime | None = _at(now=False)
    revoked_at: datetime | None = _at(nullable=True, now=False)
