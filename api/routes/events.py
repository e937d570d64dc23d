"""`GET /orders/{ref}/events`: the order detail as Server-Sent Events, pushed on every change."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api import events
from api.auth import InvalidToken, User, read_token
from api.deps import current_user
from api.errors import ApiError, error_responses
from api.read import find_order

router = APIRouter(prefix="/orders", tags=["orders"])


def stream_user(request: Request, token: Annotated[str | None, Query(max_length=4096)] = None) -> User:
    """The bearer header, or `?token=` for browsers: EventSource cannot set headers."""
    if token is None or "authorization" in request.headers:
        return current_user(request)
    try:
        return read_token(request.app.state.settings.auth_jwt_secret, token)
    except InvalidToken as err:
        raise ApiError(401, "INVALID_TOKEN", f"Invalid token: {err}") from None


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def order_stream(hub: events.OrderEvents, order_id: str) -> AsyncIterator[str]:
    """The detail now, then after each change; a comment line keeps proxies from timing the
    stream out; the stream ends after a terminal status."""
    with hub.subscribe(order_id) as sub:  # before the first read, so no change slips between
        detail: dict[str, Any] | None = await hub.load(order_id)
        while True:
            if detail is None:
                yield ": heartbeat\n\n"
            else:
                yield sse("session", detail)
                if events.is_final(detail):
                    return
            detail = await sub.next(events.HEARTBEAT_SECONDS)


@router.get(
    "/{ref}/events",
    name="order_events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`session` events (the order detail)"},
        **error_responses(401, 404, 503),
    },
)
async def order_events(ref: str, request: Request, user: Annotated[User, Depends(stream_user)]) -> StreamingResponse:
    hub: events.OrderEvents | None = getattr(request.app.state, "order_events", None)
    if hub is None:
        raise ApiError(503, "EVENTS_UNAVAILABLE", "Live order events are not running")
    try:
        conn = await request.app.state.engine.connect()  # not ConnDep: a stream must not hold a pooled connection
    except OSError as err:
        raise ApiError(503, "DATABASE_UNAVAILABLE", f"Database unavailable: {err}") from None
    try:
        row = await find_order(conn, ref, user)
    finally:
        await conn.close()
    return StreamingResponse(
        order_stream(hub, str(row.id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
