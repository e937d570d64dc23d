"""Catalog: public listing (variants still sold); admins add products with variants and stock, see
what open windows hold, and correct stock, prices and what is sold (services/catalog.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminUser, ConnDep, PageNumber, PageSize
from api.errors import error_responses, ok
from services import catalog
from services.schemas import Envelope, Page, ProductCreate, ProductOut, VariantPatch, VariantStockOut

router = APIRouter(tags=["products"])


@router.get("/products", response_model=Envelope[list[ProductOut]])
async def get_products(conn: ConnDep) -> Envelope[list[ProductOut]]:
    """The catalog: products with the variants still sold."""
    return ok(await catalog.list_products(conn))


@router.post(
    "/admin/products",
    status_code=201,
    response_model=Envelope[ProductOut],
    responses=error_responses(403, 409),
)
async def post_product(body: ProductCreate, _: AdminUser, conn: ConnDep) -> Envelope[ProductOut]:
    """Add a product with its variants and their stock (SKUs unique)."""
    return ok(await catalog.create_product(conn, body), "Product created")


@router.get("/admin/variants", response_model=Envelope[Page[VariantStockOut]], responses=error_responses(403))
async def get_variants(
    _: AdminUser,
    conn: ConnDep,
    page: PageNumber = 1,
    size: PageSize = 50,
    product_id: Annotated[uuid.UUID | None, Query(alias="productId")] = None,
    active: bool | None = None,
) -> Envelope[Page[VariantStockOut]]:
    """Every variant with stock on hand (free for new orders) and reserved (held by orders still
    pending payment), in catalog order."""
    return ok(await catalog.variants_page(conn, page, size, product_id, active))


@router.patch(
    "/admin/variants/{variant_id}",
    response_model=Envelope[VariantStockOut],
    responses=error_responses(403, 404, 409),
)
async def patch_variant(
    variant_id: uuid.UUID, body: VariantPatch, user: AdminUser, conn: ConnDep
) -> Envelope[VariantStockOut]:
    """Any of `stockDelta` (restock, or a count correction: never below zero), `price` (for orders
    placed from now on), `active` (false: new orders get VARIANT_UNAVAILABLE; placed ones are kept)."""
    return ok(await catalog.update_variant(conn, user, variant_id, body), "Variant updated")
