"""A small demo catalog, loaded once into an empty database by `make dev`."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.catalog import create_product
from services.schemas import ProductCreate

DEMO_CATALOG = [
    {
        "name": "Cà phê sữa đá (Iced milk coffee)",
        "description": "Robusta from Đắk Lắk with condensed milk.",
        "variants": [
            {"sku": "CF-SUA-M", "name": "Medium", "price": 29000, "stockQuantity": 50},
            {"sku": "CF-SUA-L", "name": "Large", "price": 35000, "stockQuantity": 30},
        ],
    },
    {
        "name": "Áo thun Paywindow (T-shirt)",
        "description": "Cotton tee.",
        "variants": [
            {"sku": "TEE-S", "name": "S", "price": 150000, "stockQuantity": 10},
            {"sku": "TEE-M", "name": "M", "price": 150000, "stockQuantity": 5},
        ],
    },
    {
        "name": "Bánh mì đặc biệt",
        "description": "The works.",
        "variants": [{"sku": "BM-DB", "name": "Regular", "price": 25000, "stockQuantity": 100}],
    },
]


async def load_demo_catalog(engine: AsyncEngine) -> bool:
    """Returns True when it loaded the catalog, False when products already existed."""
    async with engine.connect() as conn:
        if (await conn.execute(text("SELECT count(*) FROM product"))).scalar_one():
            return False
        await conn.rollback()
        for product in DEMO_CATALOG:
            await create_product(conn, ProductCreate.model_validate(product))
    return True
