"""Who is asking: the caller every service acts for. The transports establish it (api/auth.py reads
JWTs, services/client_secrets.py an order's client secret); services only read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["customer", "admin"]
ROLES = ("customer", "admin")


@dataclass(frozen=True)
class User:
    id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
