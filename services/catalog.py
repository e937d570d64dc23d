"""Writing and reading the catalog (the admin routes, the catalog page and the demo loader), and
its upkeep by operators: stock corrections, prices, withdrawn variants, each audited."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.operator_actions import OperatorAction
from services.audit import audit_entry
from services.caller import User
from services.errors import AppError, ErrorCode
from services.schemas import (
    MAX_STOCK,
    Page,
    ProductCreate,
    ProductOut,
    VariantOut,
    VariantPatch,
    VariantStockOut,
)
from store import audit, catalog


async def create_product(conn: AsyncConnection, body: ProductCreate) -> ProductOut:
    product_id = uuid.uuid4()
    variants = [VariantOut(id=uuid.uuid4(), **v.model_dump()) for v in body.variants]
    new = [
        catalog.NewVariant(id=v.id, sku=v.sku, name=v.name, price=v.price, stock_quantity=v.stock_quantity)
        for v in variants
    ]
    try:
        await catalog.create_product(conn, product_id, body.name, body.description, new)
    except catalog.SkuExists:
        raise AppError(ErrorCode.SKU_EXISTS) from None
    return ProductOut(id=product_id, name=body.name, description=body.description, variants=variants)


async def list_products(conn: AsyncConnection) -> list[ProductOut]:
    products: dict[uuid.UUID, ProductOut] = {}
    for r in await catalog.products_with_variants(conn):
        product = products.setdefault(
            r.pid, ProductOut(id=r.pid, name=r.pname, description=r.description, variants=[])
        )
        product.variants.append(
            VariantOut(id=r.id, sku=r.sku, name=r.name, price=r.price, stock_quantity=r.stock_quantity)
        )
    return list(products.values())


def variant_stock(row: Any) -> VariantStockOut:
    return VariantStockOut(
        variant_id=row.id,
        product_id=row.product_id,
        product_name=row.product_name,
        sku=row.sku,
        name=row.name,
        price=row.price,
        active=row.active,
        on_hand=row.stock_quantity,
        reserved=row.reserved,
        updated_at=row.updated_at,
    )


async def variants_page(
    conn: AsyncConnection, page: int, size: int, product_id: uuid.UUID | None, active: bool | None
) -> Page[VariantStockOut]:
    total, rows = await catalog.variants_with_stock(
        conn, size, (page - 1) * size, product_id=product_id, active=active
    )
    return Page(items=[variant_stock(r) for r in rows], page=page, size=size, total=total)


def _state(row: Any) -> dict[str, Any]:
    return {"stockQuantity": row.stock_quantity, "price": row.price, "active": row.active}


async def update_variant(
    conn: AsyncConnection, user: User, variant_id: uuid.UUID, body: VariantPatch
) -> VariantStockOut:
    """One transaction: the variant locked (checkouts wait), the correction checked, the audit entry
    with the state before and after, the change. Orders already placed keep their frozen items."""
    change = catalog.VariantChange(stock_delta=body.stock_delta or 0, price=body.price, active=body.active)
    async with conn.begin():
        before = await catalog.lock_variant(conn, variant_id)
        if before is None:
            raise AppError(ErrorCode.VARIANT_NOT_FOUND, f"Variant {variant_id} not found")
        if before.stock_quantity + change.stock_delta < 0:
            raise AppError(
                ErrorCode.STOCK_WOULD_GO_NEGATIVE,
                f"{before.sku} has {before.stock_quantity} on hand; taking {-change.stock_delta} would go below zero",
            )
        if before.stock_quantity + change.stock_delta > MAX_STOCK:
            raise AppError(
                ErrorCode.VALIDATION_ERROR, f"{before.sku} would hold more than {MAX_STOCK:,} units"
            )
        after = {**_state(before), "stockQuantity": before.stock_quantity + change.stock_delta}
        after |= {k: v for k, v in (("price", change.price), ("active", change.active)) if v is not None}
        detail = {
            "sku": before.sku,
            "stockDelta": change.stock_delta,
            "before": _state(before),
            "after": after,
        }
        await audit.record(
            conn,
            audit_entry(user, OperatorAction.VARIANT_UPDATE, body.note, variant_id=variant_id, detail=detail),
        )
        await catalog.change_variant(conn, variant_id, change)
    _, rows = await catalog.variants_with_stock(conn, 1, 0, variant_id=variant_id)
    return variant_stock(rows[0])
