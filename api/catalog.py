"""Writing and reading the catalog (the admin route, the catalog page and the demo loader)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import ApiError
from api.schemas import ProductCreate, ProductOut, VariantOut
from store import catalog


async def create_product(conn: AsyncConnection, body: ProductCreate) -> ProductOut:
    product_id = uuid.uuid4()
    variants = [VariantOut(id=uuid.uuid4(), **v.model_dump()) for v in body.variants]
    new = [catalog.NewVariant(v.id, v.sku, v.name, v.price, v.stock_quantity) for v in variants]
    try:
        await catalog.create_product(conn, product_id, body.name, body.description, new)
    except catalog.SkuExists:
        raise ApiError(409, "SKU_EXISTS", "A variant with one of these SKUs already exists") from None
    return ProductOut(id=product_id, name=body.name, description=body.description, variants=variants)


async def list_products(conn: AsyncConnection) -> list[ProductOut]:
    products: dict[uuid.UUID, ProductOut] = {}
    for r in await catalog.products_with_variants(conn):
        product = products.setdefault(r.pid, ProductOut(id=r.pid, name=r.pname, description=r.description, variants=[]))
        product.variants.append(
            VariantOut(id=r.id, sku=r.sku, name=r.name, price=r.price, stock_quantity=r.stock_quantity)
        )
    return list(products.values())
