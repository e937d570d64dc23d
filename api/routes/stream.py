"""`GET /orders/{ref}/events`: the order detail as Server-Sent Events, pushed on every change, and
`POST /orders/{ref}/events/token`, which mints the short-lived token a browser's EventSource puts in
the URL (it cannot send an Authorization header)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import STREAM_TTL_SECONDS, InvalidToken, User, issue_stream_token, read_stream_token
from api.deps import ConnDep, CurrentUser, bearer_user, db_conn
from api.errors import error_responses, ok
from services import client_secrets
from services import order_events as events  # the module: tests tune HEARTBEAT_SECONDS
from services.errors import AppError, ErrorCode
from services.order_reads import find_order
from services.schemas import Envelope, StreamTokenOut

router = APIRouter(prefix="/orders", tags=["orders"])


@dataclass(frozen=True)
class Watcher:
    user: User
    order_id: str | None  # set when a stream token names the one order it may watch


async def stream_watcher(
    ref: str,
    request: Request,
    token: Annotated[str | None, Query(max_length=4096)] = None,
    client_secret: Annotated[str | None, Query(alias="clientSecret", max_length=4096)] = None,
) -> Watcher:
    """The bearer header, `?token=` holding a stream token, or `?clientSecret=` holding the order's
    client secret (never a bearer token: those must not travel in URLs, which end up in logs and
    browser history)."""
    if client_secret is not None and "authorization" not in request.headers:
        async with db_conn(request) as conn:
            user = await client_secrets.verify(
                conn, request.app.state.settings.auth_jwt_secret, client_secret, ref
            )
        return Watcher(user, None)
    if token is None or "authorization" in request.headers:
        return Watcher(bearer_user(request), None)
    try:
        user, order_id = read_stream_token(request.app.state.settings.auth_jwt_secret, token)
    except InvalidToken as err:
        raise AppError(ErrorCode.INVALID_TOKEN, f"Invalid stream token: {err}") from None
    return Watcher(user, order_id)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def sse_stream(hub: events.OrderEvents, order_id: str) -> AsyncIterator[str]:
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
async def order_events(
    ref: str, request: Request, watcher: Annotated[Watcher, Depends(stream_watcher)]
) -> StreamingResponse:
    """The order detail as Server-Sent Events (`session`), pushed on every change, until it ends."""
    hub: events.OrderEvents | None = getattr(request.app.state, "order_events", None)
    if hub is None:
        raise AppError(ErrorCode.EVENTS_UNAVAILABLE)
    try:
        conn = (
            await request.app.state.engine.connect()
        )  # not ConnDep: a stream must not hold a pooled connection
    except OSError as err:
        raise AppError(ErrorCode.DATABASE_UNAVAILABLE, f"Database unavailable: {err}") from None
    try:
        row = await find_order(conn, ref, watcher.user)
    finally:
        await conn.close()
    if watcher.order_id is not None and watcher.order_id != str(row.id):
        raise AppError(ErrorCode.INVALID_TOKEN, "This stream token is for another order")
    return StreamingResponse(
        sse_stream(hub, str(row.id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{ref}/events/token", response_model=Envelope[StreamTokenOut], responses=error_responses(401, 404)
)
async def stream_token(
    ref: str, request: Request, user: CurrentUser, conn: ConnDep
) -> Envelope[StreamTokenOut]:
    """A token for `GET /orders/{ref}/events?token=...`: this order only, valid STREAM_TTL_SECONDS."""
    row = await find_order(conn, ref, user)
    token = issue_stream_token(request.app.state.settings.auth_jwt_secret, user, str(row.id))
    out = StreamTokenOut(
        token=token,
        expires_in=STREAM_TTL_SECONDS,
        events_url=f"{request.app.state.settings.api_prefix}/orders/{row.id}/events",
    )
    return ok(out)
