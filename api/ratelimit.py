"""Per-client request limits (429 + Retry-After). Fixed one-minute windows kept in memory: enough to
blunt scraping, credential stuffing and replay floods on one replica; put a shared limiter (e.g. at
the load balancer) in front of many replicas.

Two limits: the public API (`RATE_LIMIT_PER_MINUTE`), and browser returns from the gateways
(`RETURN_RATE_LIMIT_PER_MINUTE`, separate and lower: a person comes back from a gateway a few times
an hour, and a flood of replayed returns would otherwise cost a gateway query or a signal each).
Gateway webhooks are never limited: dropping a payment notification costs more than serving it, and
a replayed one is answered from the inbox without touching its order."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import fail
from services.errors import ErrorCode

API_PREFIX = "/api/v1/"
WEBHOOKS = "/api/v1/webhooks/"
RETURNS = "/api/v1/payments/"


def api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) and not path.startswith((WEBHOOKS, RETURNS))


def return_path(path: str) -> bool:
    return path.startswith(RETURNS)


class RateLimit:
    def __init__(self, app: ASGIApp, per_minute: int, applies: Callable[[str], bool] = api_path) -> None:
        self.app, self.per_minute, self.applies = app, per_minute, applies
        self.windows: dict[str, tuple[int, int]] = {}  # client -> (window number, count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.per_minute <= 0 or not self.applies(scope.get("path", "")):
            return await self.app(scope, receive, send)
        now = time.monotonic()
        window = int(now // 60)
        client = (scope.get("client") or ("?", 0))[0]
        start, count = self.windows.get(client, (window, 0))
        count = count + 1 if start == window else 1
        self.windows[client] = (window, count)
        if len(self.windows) > 50_000:  # forget finished windows so memory stays bounded
            self.windows = {k: v for k, v in self.windows.items() if v[0] == window}
        if count > self.per_minute:
            retry_after = max(1, math.ceil(60 - now % 60))
            response = fail(
                ErrorCode.RATE_LIMITED,
                f"Too many requests; retry in {retry_after} s",
                {"Retry-After": str(retry_after)},
            )
            return await response(scope, receive, send)
        await self.app(scope, receive, send)
