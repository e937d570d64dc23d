"""Catalog: public listing; admins add products with variants and stock."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.catalog import create_product, list_products
from api.deps import AdminUser, ConnDep
from api.errors import error_responses, ok
from api.schemas import Envelope, ProductCreate, ProductOut

router = APIRouter(tags=["products"])


@router.get("/products", response_model=Envelope[list[ProductOut]])
async def get_products(conn: ConnDep) -> JSONResponse:
    return ok(await list_products(conn))


@router.post(
    "/admin/products", status_code=201, response_model=Envelope[ProductOut], responses=error_responses(403, 409)
)
async def post_product(body: ProductCreate, _: AdminUser, conn: ConnDep) -> JSONResponse:
    return ok(await create_product(conn, body), "Product created", 201)
