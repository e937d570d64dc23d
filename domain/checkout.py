"""Checkout vocabulary: a refusal with its code, a cart's lines merged per variant, a line as the
catalog priced it at the moment it was reserved."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from domain.messages import OrderLine


class Rejected(Exception):
    """Checkout refused (OUT_OF_STOCK, VARIANT_NOT_FOUND, VARIANT_UNAVAILABLE, AMOUNT_OUT_OF_RANGE);
    raised inside the transaction so nothing is left behind."""

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
