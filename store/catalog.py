"""The catalog: products and their variants (price in VND, stock on hand)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.tables import Product, ProductVariant

product, variant = Product.__table__, ProductVariant.__table__


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
        select(product.c.id.label("pid"), product.c.name.label("pname"), product.c.description, variant.c.id,
               variant.c.sku, variant.c.name, variant.c.price, variant.c.stock_quantity)
        .join(variant, variant.c.product_id == product.c.id)
        .order_by(product.c.created_at, product.c.name, variant.c.sku)
    )  # fmt: skip
    return list(rows.all())
