"""Per-client request limit for the public API (429 + Retry-After). Fixed one-minute windows kept
in memory: enough to blunt scraping and credential stuffing on one replica; put a shared limiter
(e.g. at the load balancer) in front of many replicas. Gateway webhooks and browser returns are
never limited: dropping a payment notification costs more than serving it."""

from __future__ import annotations

import math
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import fail

EXEMPT_PREFIXES = ("/api/v1/webhooks/", "/api/v1/payments/")


class RateLimit:
    def __init__(self, app: ASGIApp, per_minute: int, prefix: str = "/api/v1/") -> None:
        self.app, self.per_minute, self.prefix = app, per_minute, prefix
        self.windows: dict[str, tuple[int, int]] = {}  # client -> (window number, count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or self.per_minute <= 0
            or not path.startswith(self.prefix)
            or path.startswith(EXEMPT_PREFIXES)
        ):
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
                429, "RATE_LIMITED", f"Too many requests; retry in {retry_after} s", {"Retry-After": str(retry_after)}
            )
            return await response(scope, receive, send)
        await self.app(scope, receive, send)
