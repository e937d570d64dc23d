"""SQLModel tables. The Alembic migrations in migrations/ are the source of truth for the schema
(checks, triggers, indexes); these classes mirror them for typed queries in the API and activities.

Table classes never travel as workflow payloads: workflows exchange the dataclasses in
workflows/messages.py.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, Numeric, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _ts(nullable: bool = False, default_now: bool = True) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=func.now() if default_now else None,
        ),
    )


def _money() -> Any:
    return Field(sa_column=Column(BigInteger, nullable=False))


class Product(SQLModel, table=True):
    __tablename__ = "product"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    description: str = ""
    created_at: datetime | None = _ts()


class ProductVariant(SQLModel, table=True):
    __tablename__ = "product_variant"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    product_id: uuid.UUID = Field(foreign_key="product.id")
    sku: str = Field(unique=True)
    name: str
    price: int = _money()
    stock_quantity: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class Order(SQLModel, table=True):
    __tablename__ = "order"
    id: uuid.UUID = Field(primary_key=True)
    order_code: int = Field(sa_column=Column(Integer, nullable=False, unique=True))
    customer_id: str
    status: str
    order_type: str
    currency_code: str = "VND"
    subtotal_amount: int = _money()
    discount_amount: int = _money()
    shipping_fee: int = _money()
    grand_total: int = _money()
    receiver_name: str
    receiver_phone: str
    receiver_address: str
    request_hash: str
    end_reason: str | None = None
    late_payment: bool = False
    archived: bool = False
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    ended_at: datetime | None = _ts(nullable=True, default_now=False)


class OrderItem(SQLModel, table=True):
    __tablename__ = "order_item"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="order.id")
    product_id: uuid.UUID = Field(foreign_key="product.id")
    variant_id: uuid.UUID = Field(foreign_key="product_variant.id")
    product_name: str
    variant_sku: str
    variant_name: str
    quantity: int
    unit_price: int = _money()
    sub_total_amount: int = _money()
    created_at: datetime | None = _ts()


class OrderSession(SQLModel, table=True):
    __tablename__ = "order_session"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="order.id", unique=True)
    status: str = "active"
    session_duration_minutes: float = Field(sa_column=Column(Numeric(10, 4), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    payment_attempts: int = 0
    max_payment_attempts: int = 3
    last_payment_attempt: datetime | None = _ts(nullable=True, default_now=False)
    metadata_: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSONB))
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class Payment(SQLModel, table=True):
    __tablename__ = "payment"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="order.id")
    attempt_no: int
    gateway: str
    gateway_order_id: str
    request_id: str
    amount: int = _money()
    status: str = "pending"
    result_code: str | None = None
    transaction_id: str | None = None
    payment_url: str
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    raw_notification: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    created_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()


class PaymentNotification(SQLModel, table=True):
    """Inbox of verified gateway notifications: persisted before the workflow is signalled."""

    __tablename__ = "payment_notification"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="order.id")
    gateway: str
    gateway_order_id: str
    dedupe_key: str = Field(unique=True)
    outcome: str
    result_code: str
    amount: int | None = Field(default=None, sa_column=Column(BigInteger))
    transaction_id: str | None = None
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    received_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts(nullable=True, default_now=False)


class Notification(SQLModel, table=True):
    """Messages sent to the shopper (reminders); the unique key makes sending at-most-once."""

    __tablename__ = "notification"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="order.id")
    kind: str
    channel: str
    status: str = "sent"
    created_at: datetime | None = _ts()
