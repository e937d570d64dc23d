"""Cross-origin access for the routes <paywindow-checkout> calls from a shop's own domain, and
only those: ALLOWED_ORIGINS lists the shop origins (empty: no cross-origin answers at all).

The element authenticates with an order's client secret in a header (never a cookie), so no
credentials mode is needed. Everything else (listings, order creation, the secret's own mint,
webhooks, admin and desk routes) answers no preflight and carries no Access-Control-* header,
so a browser on another origin can never call it."""

from __future__ import annotations

import re

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# GET /orders/{ref}, GET .../session, GET .../events, POST .../retry-payment, POST .../cancel.
ELEMENT_PATHS = re.compile(r"^/api/v1/orders/[^/]+(?:/session|/events|/retry-payment|/cancel)?$")


class ElementCors:
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept", "Last-Event-ID"],
            max_age=600,
        )
        self.enabled = bool(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] == "http" and ELEMENT_PATHS.match(scope["path"]):
            return await self.cors(scope, receive, send)
        await self.app(scope, receive, send)
