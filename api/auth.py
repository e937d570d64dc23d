"""JWT HS256 bearer tokens: claims `sub` (customer id), `role` (customer | admin), `exp`.

Stream tokens are a second kind: minted by an authenticated call for one order's live events
(`EventSource` cannot send a header, so the token travels in the URL). They last minutes, name the
order (`ord`), and are signed with a key derived from AUTH_JWT_SECRET, so neither kind of token is
ever accepted as the other: a full bearer token in a URL is refused."""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt

from services.caller import ROLES, Role, User


class InvalidToken(Exception):
    pass


def issue_token(secret: str, sub: str, role: Role = "customer", ttl_seconds: int = 24 * 3600) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256"
    )


def read_token(secret: str, token: str) -> User:
    try:
        # algorithms pinned: "none" and asymmetric confusions are refused by PyJWT here.
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]})
    except jwt.PyJWTError as err:
        raise InvalidToken(str(err)) from None
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or not sub or len(sub) > 128 or role not in ROLES:
        raise InvalidToken("bad sub or role claim")
    return User(id=sub, role=role)


STREAM_SCOPE = "order-events"
STREAM_TTL_SECONDS = 300


def _stream_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"paywindow stream tokens", hashlib.sha256).digest()


def issue_stream_token(secret: str, user: User, order_id: str, ttl_seconds: int = STREAM_TTL_SECONDS) -> str:
    now = int(time.time())
    claims = {
        "sub": user.id,
        "role": user.role,
        "ord": order_id,
        "scope": STREAM_SCOPE,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, _stream_key(secret), algorithm="HS256")


def read_stream_token(secret: str, token: str) -> tuple[User, str]:
    """The caller and the one order the token lets them watch."""
    try:
        required = ["sub", "role", "ord", "scope", "exp"]
        claims = jwt.decode(token, _stream_key(secret), algorithms=["HS256"], options={"require": required})
    except jwt.PyJWTError as err:
        raise InvalidToken(f"{err} (streams take a token from POST /orders/{{ref}}/events/token)") from None
    sub, role, order_id = claims.get("sub"), claims.get("role"), claims.get("ord")
    if claims.get("scope") != STREAM_SCOPE or not isinstance(sub, str) or role not in ROLES:
        raise InvalidToken("not a stream token")
    if not isinstance(order_id, str):
        raise InvalidToken("not a stream token")
    return User(id=sub, role=role), order_id
