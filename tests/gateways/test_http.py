"""The kept-alive gateway clients (gateways/http.py): reused, bounded, and a connection the gateway
dropped while it sat in our pool costs one resend, not a failed payment step."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

import gateways.http
from gateways.http import RetryStaleConnection, close_gateway_clients, gateway_client

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Gateway:
    """A raw HTTP/1.1 server that keeps connections open; `drop_next` makes it read the next
    request on an already used connection and hang up without answering, as a gateway that
    restarted (or timed the idle connection out) does to the request we send on it."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.drop_next = False
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                if served and self.drop_next:
                    self.drop_next = False
                    return
                writer.write(OK)
                await writer.drain()
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    gw.server = await asyncio.start_server(gw.handle, "127.0.0.1", 0)
    yield gw
    gw.server.close()


async def test_one_client_per_gateway_reuses_its_connection(gateway: Gateway) -> None:
    client = gateway_client("test-reuse")
    assert gateway_client("test-reuse") is client
    assert gateway_client("test-other") is not client
    for _ in range(5):
        assert (await client.get(gateway.url, timeout=5)).text == "ok"
    assert gateway.requests == 5
    assert gateway.connections == 1  # kept alive, not a new connection (and handshake) per call


async def test_a_dropped_connection_is_resent_once_on_a_fresh_one(gateway: Gateway) -> None:
    client = gateway_client("test-stale")
    assert (await client.get(gateway.url, timeout=5)).text == "ok"
    gateway.drop_next = True
    assert (await client.get(gateway.url, timeout=5)).text == "ok"
    assert gateway.requests == 3  # the first, the one dropped, the one resent
    assert gateway.connections == 2


async def test_without_the_resend_the_dropped_connection_fails_the_call(gateway: Gateway) -> None:
    # What RetryStaleConnection is for: the same sequence on a bare pool fails the payment step.
    async with httpx.AsyncClient() as bare:
        assert (await bare.get(gateway.url, timeout=5)).text == "ok"
        gateway.drop_next = True
        with pytest.raises(httpx.RemoteProtocolError):
            await bare.get(gateway.url, timeout=5)


async def test_only_a_dropped_connection_is_resent() -> None:
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow gateway", request=request)

    async with httpx.AsyncClient(transport=RetryStaleConnection(httpx.MockTransport(answer))) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("http://gateway.test/")
    assert len(calls) == 1  # a timeout may have reached the gateway: the activity decides what next


async def test_closed_clients_are_made_again() -> None:
    first = gateway_client("test-close")
    await close_gateway_clients()
    assert first.is_closed
    assert gateway_client("test-close") is not first


def test_a_closed_loops_clients_are_let_go() -> None:
    async def client_on_this_loop() -> httpx.AsyncClient:
        return gateway_client("test-loops")

    other = asyncio.new_event_loop()
    on_other = other.run_until_complete(client_on_this_loop())
    other.close()
    mine = asyncio.new_event_loop()
    try:
        assert mine.run_until_complete(client_on_this_loop()) is not on_other
        assert other not in gateways.http._shared  # nothing of the closed loop is kept
    finally:
        mine.close()


class CountingFinder:
    """First on sys.meta_path: counts the imports Python had to look for (a module not yet loaded)."""

    def __init__(self) -> None:
        self.looked_for: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        self.looked_for.append(name)  # and finds nothing: the real finders go on as before


async def test_a_gateway_call_imports_nothing(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore asks `import sniffio` for each lock and event of a request; without sniffio
    installed that import fails every time and walks sys.path (~4 % of a create's CPU in the
    worker's profile, docs/BENCHMARKS.md). Installed (pyproject.toml), it is a dict lookup."""
    client = gateway_client("test-imports")
    assert (await client.get(gateway.url)).status_code == 200  # warm: whatever loads once is loaded
    finder = CountingFinder()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    for _ in range(3):
        assert (await client.get(gateway.url)).status_code == 200
    assert finder.looked_for == [], f"imports looked for on every call: {sorted(set(finder.looked_for))}"
