"""Stock: the one home for taking `product_variant.stock_quantity` at checkout.

Giving stock back happens in `store.orders.transition`, in the same statement as the guarded
transition, so it can happen at most once per order.
"""

from __future__ import annotations

from sqlalchemy import case, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from domain.checkout import Rejected, ReservedLine, merge_lines
from domain.messages import OrderLine
from store.tables import Order, OrderItem, Product, ProductVariant

variant, product, order = ProductVariant.__table__, Product.__table__, Order.__table__


async def reserve(
    conn: AsyncConnection, lines: list[OrderLine], unless_made: str | None = None
) -> list[ReservedLine] | None:
    """Lock the variants (in id order, so concurrent checkouts cannot deadlock), check that each is
    still sold and in stock, take it and return the prices read from the catalog at this instant.
    Raises Rejected. None, taking nothing, when the order `unless_made` exists already (an earlier
    try of the step made it): the same statement that locks the variants says so."""
    wanted = merge_lines(lines)
    ids = sorted(wanted)
    made = exists().where(order.c.id == unless_made) if unless_made else literal(False)
    locked = (
        select(
            variant.c.id,
            variant.c.product_id,
            variant.c.sku,
            variant.c.name,
            variant.c.price,
            variant.c.stock_quantity,
            variant.c.active,
            product.c.name.label("product_name"),
            made.label("made"),
        )
        .join(product, product.c.id == variant.c.product_id)
        .where(variant.c.id.in_(ids))
        .order_by(variant.c.id)
        .with_for_update(of=variant)
    )
    rows = (await conn.execute(locked)).all()
    if rows and rows[0].made:
        return None
    found = {r.id: r for r in rows}
    for vid in ids:
        if vid not in found:
            raise Rejected("VARIANT_NOT_FOUND", f"Variant {vid} not found")
    withdrawn = [found[vid].sku for vid in ids if not found[vid].active]
    if withdrawn:
        raise Rejected("VARIANT_UNAVAILABLE", f"No longer sold: {', '.join(withdrawn)}")
    short = [found[vid].sku for vid in ids if found[vid].stock_quantity < wanted[vid]]
    if short:
        raise Rejected("OUT_OF_STOCK", f"Not enough stock for {', '.join(short)}")
    taken = case({vid: wanted[vid] for vid in ids}, value=variant.c.id)
    await conn.execute(
        update(variant)
        .where(variant.c.id.in_(ids))
        .values(stock_quantity=variant.c.stock_quantity - taken, updated_at=func.now())
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


async def reserve_again(conn: AsyncConnection, order_id: str) -> bool:
    """An expired order's items, reserved anew (a late payment accepted); False when any is short."""
    items = (
        await conn.execute(
            select(col(OrderItem.variant_id), col(OrderItem.quantity)).where(
                col(OrderItem.order_id) == order_id
            )
        )
    ).all()
    try:
        async with conn.begin_nested():
            await reserve(conn, [OrderLine(str(i.variant_id), i.quantity) for i in items])  # never None here
    except Rejected:
        return False
    return True
