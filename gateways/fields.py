"""Reading and cleaning the values that travel in gateway messages.

Shared by the adapters and the sandbox so that "what is a well-formed integer" and
"what text may go into a signed field" have a single answer.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from gateways.base import InvalidSignature


def int_field(payload: Mapping[str, Any], key: str) -> int:
    """An integer sent as a JSON number or a decimal string; anything else is malformed."""
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    raise InvalidSignature(f"field {key!r} is missing or not an integer")


def str_field(payload: Mapping[str, Any], key: str) -> str:
    """A present string (may be empty); numbers are accepted as their decimal text."""
    value = payload.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidSignature(f"field {key!r} is missing or not a string")


def signed_text(value: Any) -> str:
    """How a raw value is written into a `key=value` canonical string (null -> "")."""
    return "" if value is None else str(value)


def plain_ascii(text: str, *, keep: str = " ", max_len: int | None = None) -> str:
    """Strip Vietnamese accents and drop every character that is not a letter, digit or in `keep`.

    VNPay refuses accents and special characters in vnp_OrderInfo, and bank-transfer
    descriptions (PayOS) only carry plain letters and digits.
    """
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in keep))
    kept = " ".join(kept.split()) if " " in keep else kept
    return kept[:max_len] if max_len is not None else kept
