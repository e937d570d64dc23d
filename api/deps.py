"""Dependencies routes declare: settings, a DB connection, the Temporal client, the caller; and the
paging parameters every listing takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client

from api.auth import InvalidToken, User, read_token
from infra.db import db_unavailable
from infra.settings import Settings
from infra.temporal import connect
from services import client_secrets
from services.errors import AppError, ErrorCode

# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def` dependency in
# a worker thread, a thread hop per dependency per request (~10 % of the API's CPU on a create).


CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


@asynccontextmanager
async def db_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for a short piece of work (a 503 when Postgres is unreachable)."""
    try:
        conn = await request.app.state.engine.connect()
    except Exception as err:
        if not db_unavailable(err):
            raise
        raise AppError(ErrorCode.DATABASE_UNAVAILABLE, f"Database unavailable: {err}") from None
    try:
        yield conn
    finally:
        await conn.close()


async def get_conn(request: Request) -> AsyncIterator[AsyncConnection]:
    async with db_conn(request) as conn:
        yield conn


async def get_engine(request: Request) -> AsyncEngine:
    """The pool itself, for a service that opens its connection only when it needs one."""
    return request.app.state.engine


async def get_temporal(request: Request) -> Client:
    state = request.app.state
    if state.temporal is None:
        try:
            state.temporal = await connect(state.settings)
        except Exception as err:  # noqa: BLE001 - any connect failure means "try later"
            # Not an RPCError the handler would see: the connect itself failed (any way it can).
            raise AppError(ErrorCode.TEMPORAL_UNAVAILABLE, f"Workflow service unavailable: {err}") from None
    return state.temporal


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AppError(ErrorCode.UNAUTHORIZED, headers=CHALLENGE)
    return token.strip()


def bearer_user(request: Request) -> User:
    """The caller of a JWT; a client secret is refused here (it is only good on OrderCaller routes)."""
    token = bearer_token(request)
    try:
        return read_token(request.app.state.settings.auth_jwt_secret, token)
    except InvalidToken as err:
        raise AppError(ErrorCode.INVALID_TOKEN, f"Invalid token: {err}", CHALLENGE) from None


async def current_user(request: Request) -> User:
    return bearer_user(request)


async def order_caller(
    ref: str, request: Request, conn: Annotated[AsyncConnection, Depends(get_conn)]
) -> User:
    """The caller on a route for one order `ref`: a JWT, or a client secret minted for that order."""
    token = bearer_token(request)
    if client_secrets.is_client_secret(token):
        return await client_secrets.verify(conn, request.app.state.settings.auth_jwt_secret, token, ref)
    return bearer_user(request)


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise AppError(ErrorCode.FORBIDDEN, "Admin role required")
    return user


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ConnDep = Annotated[AsyncConnection, Depends(get_conn)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
CurrentUser = Annotated[User, Depends(current_user)]
OrderCaller = Annotated[User, Depends(order_caller)]  # JWT or that order's client secret
AdminUser = Annotated[User, Depends(admin_user)]
PageNumber = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]
