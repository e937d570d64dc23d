"""Outbound HTTP clients (gateways, webhooks) that share one TLS context.

Each call opens its own short-lived client: retries and timeouts belong to the Temporal activity,
and a client bound to no event loop suits the worker, the API and tests alike. Building the TLS
context is the expensive part (~20 ms of CPU: the CA bundle is parsed every time), so it is built
once per process.
"""

from __future__ import annotations

import ssl

import certifi
import httpx

from infra.tracing import trace_client

TLS = ssl.create_default_context(cafile=certifi.where())


def http_client(timeout: float) -> httpx.AsyncClient:
    return trace_client(httpx.AsyncClient(timeout=timeout, verify=TLS))
