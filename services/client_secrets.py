"""Order-scoped client secrets: what a shop's backend mints (`POST /orders/{ref}/client-secret`)
and hands to the shopper's browser, so the browser never holds the customer's JWT.

A secret is `pwcs_` + a JWT signed with a key derived from AUTH_JWT_SECRET (so it is never taken
for a bearer token, nor a bearer token for it), naming one order (id and code), its customer, and
a row in `client_secret` that can be revoked. It expires with the order's window plus
CLIENT_SECRET_MARGIN_MINUTES. It is good for that order's detail, session, retry and cancel (as
`Authorization: Bearer`) and its event stream (as `?clientSecret=`), nothing else: those routes take
the `OrderCaller` dependency, every other route reads only JWTs."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.settings import Settings
from services.caller import User
from services.errors import AppError, ErrorCode
from services.order_reads import find_order
from services.schemas import ClientSecretOut, RevokedOut
from store import client_secrets as minted

PREFIX = "pwcs_"
SCOPE = "order-client"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"paywindow client secrets", hashlib.sha256).digest()


def is_client_secret(token: str) -> bool:
    return token.startswith(PREFIX)


@dataclass(frozen=True)
class Grant:
    """What a verified secret allows: one order, read and acted on as its customer."""

    secret_id: uuid.UUID
    order_id: uuid.UUID
    order_code: str
    customer_id: str

    @property
    def user(self) -> User:
        return User(id=self.customer_id, role="customer")

    def covers(self, ref: str) -> bool:
        """`ref` (an order id or 9-digit code, as routes take it) names this grant's order."""
        if ref.isdigit() and len(ref) == 9:
            return ref == self.order_code
        try:
            return uuid.UUID(ref) == self.order_id
        except ValueError:
            return False


def refused(code: ErrorCode, message: str | None = None) -> AppError:
    """Every refusal carries the bearer challenge (the secret travels as a bearer token)."""
    return AppError(code, message, CHALLENGE)


def issue(jwt_secret: str, *, secret_id: uuid.UUID, row: Any, expires_at: datetime) -> str:
    claims = {
        "jti": str(secret_id),
        "ord": str(row.id),
        "code": f"{row.order_code:09d}",
        "sub": row.customer_id,
        "scope": SCOPE,
        "iat": int(datetime.now(UTC).timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return PREFIX + jwt.encode(claims, _key(jwt_secret), algorithm="HS256")


def read(jwt_secret: str, token: str) -> Grant:
    """The grant a secret carries, its signature (compared in constant time by PyJWT) and expiry
    checked; revocation is `verify`'s."""
    if not is_client_secret(token):
        raise refused(ErrorCode.INVALID_CLIENT_SECRET, "Not a client secret")
    try:
        required = ["jti", "ord", "code", "sub", "scope", "exp"]
        claims = jwt.decode(
            token[len(PREFIX) :], _key(jwt_secret), algorithms=["HS256"], options={"require": required}
        )
    except jwt.ExpiredSignatureError:
        raise refused(ErrorCode.CLIENT_SECRET_EXPIRED) from None
    except jwt.PyJWTError as err:
        raise refused(ErrorCode.INVALID_CLIENT_SECRET, f"Invalid client secret: {err}") from None
    if claims["scope"] != SCOPE:
        raise refused(ErrorCode.INVALID_CLIENT_SECRET, "Not a client secret")
    try:
        return Grant(
            secret_id=uuid.UUID(claims["jti"]),
            order_id=uuid.UUID(claims["ord"]),
            order_code=str(claims["code"]),
            customer_id=str(claims["sub"]),
        )
    except (ValueError, TypeError):
        raise refused(ErrorCode.INVALID_CLIENT_SECRET, "Invalid client secret claims") from None


async def verify(conn: AsyncConnection, jwt_secret: str, token: str, ref: str) -> User:
    """The caller a secret stands for on the route for order `ref`: refused for another order
    (before anything about that order is looked up), expired, forged or revoked."""
    grant = read(jwt_secret, token)
    if not grant.covers(ref):
        raise refused(ErrorCode.CLIENT_SECRET_WRONG_ORDER)
    row = await minted.find(conn, grant.secret_id)
    if row is None or row.order_id != grant.order_id:
        raise refused(ErrorCode.INVALID_CLIENT_SECRET, "Unknown client secret")
    if row.revoked_at is not None:
        raise refused(ErrorCode.CLIENT_SECRET_REVOKED)
    return grant.user


async def mint(conn: AsyncConnection, settings: Settings, row: Any) -> tuple[str, datetime]:
    """A secret for the order `row` (an order joined with its session), recorded so it can be
    revoked. It lasts until the window ends plus the margin; for a window already over, the margin
    from now (so a shopper coming back still sees how the order ended)."""
    now = datetime.now(UTC)
    expires_at = max(row.expires_at, now) + timedelta(minutes=settings.client_secret_margin_minutes)
    expires_at = expires_at.replace(microsecond=0)
    secret_id = uuid.uuid4()
    await minted.add(conn, secret_id=secret_id, order_id=row.id, expires_at=expires_at)
    return issue(settings.auth_jwt_secret, secret_id=secret_id, row=row, expires_at=expires_at), expires_at


async def revoke(conn: AsyncConnection, order_id: uuid.UUID) -> int:
    return await minted.revoke_all(conn, order_id)


async def mint_for(conn: AsyncConnection, settings: Settings, ref: str, user: User) -> ClientSecretOut:
    """A new secret for the order `ref` that `user` may see, committed. Earlier ones stay valid."""
    secret, expires_at = await mint(conn, settings, await find_order(conn, ref, user))
    await conn.commit()
    return ClientSecretOut(client_secret=secret, expires_at=expires_at)


async def revoke_for(conn: AsyncConnection, ref: str, user: User) -> RevokedOut:
    """Revoke every live secret of the order `ref`, committed."""
    revoked = await revoke(conn, (await find_order(conn, ref, user)).id)
    await conn.commit()
    return RevokedOut(revoked=revoked)
