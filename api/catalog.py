"""Writing the catalog (admin route and the demo loader share it)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import ApiError
from api.schemas import ProductCreate, ProductOut, VariantOut


async def create_product(conn: AsyncConnection, body: ProductCreate) -> ProductOut:
    pid = uuid.uuid4()
    variants = [VariantOut(id=uuid.uuid4(), **v.model_dump()) for v in body.variants]
    try:
        async with conn.begin():
            await conn.execute(
                text("INSERT INTO product (id, name, description) VALUES (:id, :name, :d)"),
                {"id": pid, "name": body.name, "d": body.description},
            )
            await conn.execute(
                text(
                    """
                    INSERT INTO product_variant (id, product_id, sku, name, price, stock_quantity)
                    VALUES (:id, :pid, :sku, :name, :price, :stock)
                    """
                ),
                [
                    {"id": v.id, "pid": pid, "sku": v.sku, "name": v.name, "price": v.price, "stock": v.stock_quantity}
                    for v in variants
                ],
            )
    except IntegrityError as err:
        if "sku" in str(err.orig):
            raise ApiError(409, "SKU_EXISTS", "A variant with one of these SKUs already exists") from None
        raise
    return ProductOut(id=pid, name=body.name, description=body.description, variants=variants)
