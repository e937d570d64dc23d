"""Outbound HTTP clients: one kept-alive client per gateway, and short-lived ones for webhooks.

A gateway is called for every order (its link, the reconciliation at the deadline, refunds), so each
process keeps one client per gateway per event loop: calls reuse warm TCP/TLS connections instead of
paying a new client and a handshake each time. The pool is bounded (LIMITS). A connection the
gateway closed while it sat idle in our pool (the gateway restarted, or its idle timeout is shorter
than ours) fails as we send on it: the gateway hung up without an answer. That request is sent once
more on a fresh connection (RetryStaleConnection), and a refused connect is tried once more
(`retries=1`). Either may repeat a request the gateway did act on, as the Temporal activity's own
retry may: every call carries our ids (orderId / requestId, vnp_TxnRef, orderCode, the refund key),
on which the gateways deduplicate. Every other failure is the caller's.

Every adapter call, resends and follow-up lookups included, runs under one overall deadline
(`within`), sized by `call_budget` to end well inside the Temporal activity that makes it: a call
must never outlive its activity (the server would then retry or give up while it may still land).

Clients are per event loop because an httpx pool belongs to the loop it was opened on (the worker
and the API each have one loop; tests open many); a closed loop's clients are dropped. Building the
TLS context is the expensive part of a client (~20 ms of CPU: the CA bundle is parsed), so there is
one per process. With tracing on (infra/tracing.py) every request is a client span and carries
`traceparent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import certifi
import httpx
from temporalio import activity

from gateways.base import GatewayError
from infra.tracing import trace_client

TLS = ssl.create_default_context(cafile=certifi.where())
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)

_shared: dict[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = {}
# Of the time an activity has left, the share one gateway call may use: the rest is for recording
# what it said (and for a slow event loop). Below MIN_CALL_SECONDS a call is not worth starting.
CALL_SHARE = 0.75
MIN_CALL_SECONDS = 1.0


class RetryStaleConnection(httpx.AsyncBaseTransport):
    """Send a request once more when the server dropped the connection without answering."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx.RemoteProtocolError:  # "Server disconnected without sending a response"
            return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def call_budget(default: float) -> float:
    """Seconds one whole adapter call may take: `default`, or less when it runs in an activity whose
    start-to-close leaves less (CALL_SHARE of what remains of it)."""
    if not activity.in_activity():
        return default
    info = activity.info()
    if info.start_to_close_timeout is None:
        return default
    elapsed = (datetime.now(UTC) - info.started_time).total_seconds()
    left = info.start_to_close_timeout.total_seconds() - max(0.0, elapsed)
    return max(MIN_CALL_SECONDS, min(default, left * CALL_SHARE))


class CallDeadline(GatewayError):
    """The call's overall deadline passed: no answer (the request may still have been acted upon)."""


@contextlib.asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    """One deadline around a whole call: connect, send, the stale-connection resend, follow-up
    lookups. Raises CallDeadline when it passes (the request may still have been acted upon)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise CallDeadline(f"no answer within {seconds:.1f} s") from exc


def gateway_client(name: str) -> httpx.AsyncClient:
    """This loop's kept-alive client for gateway `name`; pass the timeout per request. Never close
    it (close_gateway_clients does, when the process stops)."""
    for loop in [loop for loop in _shared if loop.is_closed()]:
        del _shared[loop]  # its connections died with it (a client also keeps its loop alive)
    clients = _shared.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(name)
    if client is None or client.is_closed:
        # retries=1: a refused connect (the gateway restarting) is tried once more, too.
        transport = httpx.AsyncHTTPTransport(verify=TLS, limits=LIMITS, retries=1)
        client = clients[name] = trace_client(httpx.AsyncClient(transport=RetryStaleConnection(transport)))
    return client


async def close_gateway_clients() -> None:
    """Close this loop's gateway clients, for everything on the loop (the worker and the API call
    this on their way out; a later call makes a new one)."""
    clients = _shared.pop(asyncio.get_running_loop(), {})
    await asyncio.gather(*(c.aclose() for c in clients.values()), return_exceptions=True)


def http_client(timeout: float) -> httpx.AsyncClient:
    """A short-lived client (reminder webhooks, one-off calls), to use as a context manager."""
    return trace_client(httpx.AsyncClient(timeout=timeout, verify=TLS))
