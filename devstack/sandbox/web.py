"""Request helpers shared by the sandbox routes."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request


async def json_body(request: Request) -> dict[str, Any] | None:
    """The JSON object in the body, or None when it is missing or not an object."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"
