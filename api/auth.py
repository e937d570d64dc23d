"""JWT HS256 bearer tokens: claims `sub` (customer id), `role` (customer | admin), `exp`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt

Role = Literal["customer", "admin"]
ROLES = ("customer", "admin")


@dataclass(frozen=True)
class User:
    id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class InvalidToken(Exception):
    pass


def issue_token(secret: str, sub: str, role: Role = "customer", ttl_seconds: int = 24 * 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256")


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
