"""Stock reservation, the one home for changing `product_variant.stock_quantity` at checkout.

Restoring stock happens inside `activities.orders.TRANSITION_SQL`, in the same statement as the
guarded transition, so it can run at most once per order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from workflows.messages import OrderLine


class Rejected(Exception):
    """Checkout refused; raised inside the transaction so nothing is left behind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReservedLine:
    product_id: str
    variant_id: str
    product_name: str
    variant_sku: str
    variant_name: str
    quantity: int
    unit_price: int


def merge_lines(lines: list[OrderLine]) -> dict[uuid.UUID, int]:
    """One entry per variant (quantities summed), so each variant is locked and reserved once."""
    merged: dict[uuid.UUID, int] = {}
    for line in lines:
        try:
            vid = uuid.UUID(line.variant_id)
        except ValueError:
            raise Rejected("VARIANT_NOT_FOUND", f"Variant {line.variant_id} not found") from None
        merged[vid] = merged.get(vid, 0) + line.quantity
    return merged


async def reserve(conn: AsyncConnection, lines: list[OrderLine]) -> list[ReservedLine]:
    """Lock the variants (in id order, so concurrent checkouts cannot deadlock), check stock,
    decrement it and return the prices read from the catalog at this instant."""
    wanted = merge_lines(lines)
    ids = sorted(wanted)
    rows = (
        await conn.execute(
            text(
                """
                SELECT v.id, v.product_id, v.sku, v.name, v.price, v.stock_quantity, p.name AS product_name
                FROM product_variant v JOIN product p ON p.id = v.product_id
                WHERE v.id = ANY(:ids) ORDER BY v.id FOR UPDATE OF v
                """
            ),
            {"ids": ids},
        )
    ).all()
    found = {r.id: r for r in rows}
    for vid in ids:
        if vid not in found:
            raise Rejected("VARIANT_NOT_FOUND", f"Variant {vid} not found")
    short = [found[vid].sku for vid in ids if found[vid].stock_quantity < wanted[vid]]
    if short:
        raise Rejected("OUT_OF_STOCK", f"Not enough stock for {', '.join(short)}")
    await conn.execute(
        text(
            """
            UPDATE product_variant v SET stock_quantity = v.stock_quantity - d.qty, updated_at = now()
            FROM unnest(CAST(:ids AS uuid[]), CAST(:qtys AS int[])) AS d(id, qty) WHERE v.id = d.id
            """
        ),
        {"ids": ids, "qtys": [wanted[vid] for vid in ids]},
    )
    return [
        ReservedLine(
            product_id=str(found[vid].product_id),
            variant_id=str(vid),
            product_name=found[vid].product_name,
            variant_sku=found[vid].sku,
            variant_name=found[vid].name,
            quantity=wanted[vid],
            unit_price=int(found[vid].price),
        )
        for vid in ids
    ]
