"""The catalog: products and their variants (price in VND, stock on hand, active or withdrawn), and
the operators' view of it (what open windows hold) and their corrections."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.statuses import OrderStatus
from store.pages import page_of
from store.tables import Order, OrderItem, Product, ProductVariant

product, variant, order, item = (
    Product.__table__,
    ProductVariant.__table__,
    Order.__table__,
    OrderItem.__table__,
)


class SkuExists(Exception):
    """A variant with one of these SKUs is in the catalog already."""


@dataclass(frozen=True)
class NewVariant:
    id: uuid.UUID
    sku: str
    name: str
    price: int
    stock_quantity: int


async def create_product(
    conn: AsyncConnection, product_id: uuid.UUID, name: str, description: str, variants: list[NewVariant]
) -> None:
    """One transaction: the product and every variant, or nothing (SkuExists)."""
    try:
        async with conn.begin():
            await conn.execute(insert(product).values(id=product_id, name=name, description=description))
            await conn.execute(
                insert(variant),
                [{"product_id": product_id, **vars(v)} for v in variants],
            )
    except IntegrityError as err:
        if "sku" in str(err.orig):
            raise SkuExists(str(err.orig)) from None
        raise


async def products_with_variants(conn: AsyncConnection) -> list[Any]:
    """Every variant with its product's id, name and description, products in creation order.
    The catalog page reads all of it on purpose (a shop's catalog, not its orders)."""
    rows = await conn.execute(
        select(
            product.c.id.label("pid"),
            product.c.name.label("pname"),
            product.c.description,
            variant.c.id,
            variant.c.sku,
            variant.c.name,
            variant.c.price,
            variant.c.stock_quantity,
        )
        .join(variant, variant.c.product_id == product.c.id)
        .where(variant.c.active)
        .order_by(product.c.created_at, product.c.name, variant.c.sku)
    )
    return list(rows.all())


# ---- the operators' view and corrections ----------------------------------------------------------


async def variants_with_stock(
    conn: AsyncConnection,
    limit: int,
    offset: int,
    *,
    variant_id: uuid.UUID | None = None,
    product_id: uuid.UUID | None = None,
    active: bool | None = None,
) -> tuple[int, list[Any]]:
    """Variants with their product, stock on hand (free for new orders) and `reserved` (units held
    by orders still pending payment), in catalog order, and how many match. The reserved sums start
    from the pending orders (ix_order_status_created), so their cost is that of the open windows."""
    conditions: list[ColumnElement[bool]] = []
    if variant_id is not None:
        conditions.append(variant.c.id == variant_id)
    if product_id is not None:
        conditions.append(variant.c.product_id == product_id)
    if active is not None:
        conditions.append(variant.c.active == active)
    held = (
        select(item.c.variant_id, func.sum(item.c.quantity).label("reserved"))
        .join(order, order.c.id == item.c.order_id)
        .where(order.c.status == OrderStatus.PENDING_PAYMENT.value)
        .group_by(item.c.variant_id)
        .subquery()
    )
    query = (
        select(
            variant, product.c.name.label("product_name"), func.coalesce(held.c.reserved, 0).label("reserved")
        )
        .join(product, product.c.id == variant.c.product_id)
        .outerjoin(held, held.c.variant_id == variant.c.id)
    )
    catalog_order = (product.c.created_at, product.c.name, variant.c.sku)
    return await page_of(conn, query, variant, conditions, catalog_order, limit, offset)


@dataclass(frozen=True)
class VariantChange:
    stock_delta: int = 0  # units added (restock) or taken away (a count correction)
    price: int | None = None  # for orders placed from now on: placed ones keep their frozen items
    active: bool | None = None  # False: withdrawn, refused at the reservation (VARIANT_UNAVAILABLE)


class StockWouldGoNegative(Exception):
    """The correction would take more units away than are on hand."""


async def lock_variant(conn: AsyncConnection, variant_id: uuid.UUID) -> Any:
    """The variant as it is, locked for a correction (None: no such variant). Checkouts lock the same
    row (store.inventory.reserve), so a correction and a reservation never interleave."""
    return (await conn.execute(select(variant).where(variant.c.id == variant_id).with_for_update())).first()


async def change_variant(conn: AsyncConnection, variant_id: uuid.UUID, change: VariantChange) -> Any:
    """Apply a correction in one statement; the stock moves by a delta (never set from a value read
    earlier) and never below zero. Raises StockWouldGoNegative."""
    values: dict[str, Any] = {"updated_at": func.now()}
    if change.stock_delta:
        values["stock_quantity"] = variant.c.stock_quantity + change.stock_delta
    if change.price is not None:
        values["price"] = change.price
    if change.active is not None:
        values["active"] = change.active
    row = (
        await conn.execute(
            update(variant)
            .where(variant.c.id == variant_id, variant.c.stock_quantity + change.stock_delta >= 0)
            .values(**values)
            .returning(variant)
        )
    ).first()
    if row is None:
        raise StockWouldGoNegative(str(variant_id))
    return row
