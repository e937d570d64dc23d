"""The payment gateways as a process of their own for the chaos run: the sandbox's own process
(devstack/sandbox/app.py), so that killing or restarting our API does not make "the gateways" forget
a payment, as real MoMo / VNPay / PayOS would not.

Three additions for the chaos run, outside the sandbox's own code:
- IPN retries, as real gateways do: a notification the merchant did not take (transport error,
  HTTP 5xx, or VNPay's `RspCode` 99) is sent again with backoff. A 2xx / 4xx answer is final, so a
  notification our API acknowledged but then lost stays lost: that is what the run looks for.
- `GET /chaos/ledger`: every transaction the gateways hold (state, amount, refunds), the ground
  truth for "every verified payment ends paid or refunded".
- `POST /chaos/faults` `{"gateway", "mode", "seconds", "paths"}`: for `seconds`, that gateway's
  merchant API (what our API and worker call: create, query, cancel, refund; never its pay pages or
  its notifications to us) hangs without answering (`hang`) or answers garbage (`garbage`: HTML, cut
  JSON). `paths` narrows it (e.g. MoMo's query only); `mode: "none"` ends it early.

Run with `uvicorn chaos.gateway_app:app_factory --factory`, with the settings of
devstack/sandbox/app.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

from devstack.sandbox.app import create_sandbox_app, merchant_url
from devstack.sandbox.state import SandboxStore, utcnow
from infra.settings import Settings

log = logging.getLogger("chaos.gateway")
# The merchant API of each gateway, as our adapters reach it (the pay pages are the shopper's).
MERCHANT_API = {
    "momo": "/sandbox/momo/",
    "vnpay": "/sandbox/vnpay/merchant_webapi/",
    "payos": "/sandbox/payos/",
}
GARBAGE = (
    (200, "text/html", b"<html><body><h1>502 Bad Gateway</h1>upstream timed out</body></html>"),
    (200, "application/json", b'{"resultCode": 0, "payUrl": "htt'),
    (500, "text/plain", b"internal error"),
)


class Faults:
    """A gateway misbehaving for a while: hang or answer garbage on (part of) its merchant API."""

    def __init__(self) -> None:
        self.active: dict[str, tuple[str, float, tuple[str, ...]]] = {}  # gateway -> (mode, until, paths)
        self.hit: dict[str, int] = {}
        self._n = 0

    def set(self, gateway: str, mode: str, seconds: float, paths: tuple[str, ...]) -> None:
        if mode == "none":
            self.active.pop(gateway, None)
        else:
            self.active[gateway] = (mode, time.monotonic() + seconds, paths or (MERCHANT_API[gateway],))

    def match(self, path: str) -> tuple[str, float] | None:
        for gateway, (mode, until, paths) in list(self.active.items()):
            if time.monotonic() >= until:
                del self.active[gateway]
            elif path.startswith(paths):
                self.hit[f"{gateway}:{mode}"] = self.hit.get(f"{gateway}:{mode}", 0) + 1
                return mode, until
        return None

    def garbage(self) -> tuple[int, str, bytes]:
        self._n += 1
        return GARBAGE[self._n % len(GARBAGE)]


RETRY_BACKOFF_S = (1, 2, 3, 5, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8)  # ~100 s of retries, like an IPN queue
DELIVERY_TIMEOUT_S = 15.0


def taken(delivery: dict[str, Any]) -> bool:
    """Did the merchant take this notification? (What a gateway decides from the answer.)"""
    if delivery.get("dropped"):
        return True  # deliberately lost: nothing to retry
    status = delivery.get("status_code")
    if status is None or status >= 500:
        return False
    if delivery.get("gateway") == "vnpay":
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            return json.loads(delivery.get("answer") or "{}").get("RspCode") != "99"
    return True


class IpnRetrier:
    """Re-sends notifications the merchant did not take, oldest first, with backoff."""

    def __init__(self, store: SandboxStore) -> None:
        self.store = store
        self.seen = 0  # deliveries[:seen] have been looked at
        # original seq -> (due, tries, the delivery)
        self.queue: dict[int, tuple[float, int, dict[str, Any]]] = {}
        self.retried = 0
        self.recovered = 0
        self.abandoned = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_S) as http:
            while True:
                await asyncio.sleep(0.5)
                self._scan()
                now = time.monotonic()
                due = [(seq, entry) for seq, entry in self.queue.items() if entry[0] <= now]
                for seq, (_, tries, original) in due[:200]:
                    await self._resend(http, seq, tries, original)

    def _scan(self) -> None:
        new = self.store.deliveries[self.seen :]
        self.seen += len(new)
        for d in new:
            if d["kind"].startswith("retry") or taken(d):
                continue
            self.queue[d["seq"]] = (time.monotonic() + RETRY_BACKOFF_S[0], 0, d)

    async def _resend(self, http: httpx.AsyncClient, seq: int, tries: int, original: dict[str, Any]) -> None:
        self.retried += 1
        record: dict[str, Any] = {
            **original,
            "kind": f"retry-{original['kind']}",
            "of_seq": seq,
            "at": utcnow().isoformat(),
        }
        try:
            if original["method"] == "GET":
                response = await http.get(original["url"], params=original["payload"])
            else:
                response = await http.post(original["url"], json=original["payload"])
            record.update(status_code=response.status_code, answer=response.text[:500], error=None)
        except httpx.HTTPError as exc:
            record.update(status_code=None, answer=None, error=repr(exc))
        record["seq"] = len(self.store.deliveries) + 1
        self.store.deliveries.append(record)  # kind "retry-...": never scanned as a new failure
        if taken(record):
            self.recovered += 1
            del self.queue[seq]
        elif tries + 1 >= len(RETRY_BACKOFF_S):
            self.abandoned += 1
            del self.queue[seq]
            log.error(
                "gave up delivering %s %s after %d tries",
                original["gateway"],
                original["transaction_id"],
                tries + 1,
            )
        else:
            self.queue[seq] = (time.monotonic() + RETRY_BACKOFF_S[tries + 1], tries + 1, original)


def ledger(store: SandboxStore) -> list[dict[str, Any]]:
    now = utcnow()
    taken_at: dict[tuple[str, str], str] = {}  # when the merchant first took a verdict for the transaction
    for d in store.deliveries:
        key = (d["gateway"], d["transaction_id"])
        if (
            key not in taken_at
            and not d.get("dropped")
            and d["kind"].removeprefix("retry-") in ("final", "duplicate")
            and taken(d)
        ):
            taken_at[key] = d["at"]
    out = []
    for txn in list(store.transactions.values()):
        txn.refresh(now)
        out.append(
            {
                "gateway": txn.gateway,
                "id": txn.id,
                "state": txn.state.value,
                "amount": txn.amount,
                "created_at": txn.created_at.isoformat(),
                "expires_at": txn.expires_at.isoformat(),
                "finished_at": txn.finished_at.isoformat() if txn.finished_at else None,
                "transaction_no": txn.transaction_no,
                "notified_at": taken_at.get((txn.gateway, txn.id)),
                "refunds": [
                    {"request_id": rid, "ok": bool(r.get("ok")), "amount": r.get("amount")}
                    for rid, r in txn.refunds.items()
                ],
            }
        )
    return out


def create_gateway_app(settings: Settings, merchant: str) -> FastAPI:
    faults = Faults()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(retrier.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app, store = create_sandbox_app(settings, merchant, lifespan=lifespan)
    retrier = IpnRetrier(store)  # the lifespan above starts it

    @app.middleware("http")
    async def misbehave(request: Request, call_next: Any) -> Response:
        fault = faults.match(request.url.path)
        if fault is None:
            return await call_next(request)
        mode, until = fault
        if mode == "hang":  # no answer until the fault ends (our side gives up long before)
            await asyncio.sleep(max(0.0, until - time.monotonic()))
            return await call_next(request)
        status, media_type, body = faults.garbage()
        return Response(body, status_code=status, media_type=media_type)

    @app.post("/chaos/faults")
    async def set_fault(body: dict[str, Any]) -> dict[str, Any]:
        faults.set(
            body["gateway"], body["mode"], float(body.get("seconds", 0)), tuple(body.get("paths") or ())
        )
        return {"active": {g: m for g, (m, _, _) in faults.active.items()}, "hit": faults.hit}

    @app.get("/chaos/ledger")
    async def get_ledger() -> list[dict[str, Any]]:
        return ledger(store)

    @app.get("/chaos/ipn")
    async def ipn_stats() -> dict[str, Any]:
        undelivered = [d for d in store.deliveries if not d["kind"].startswith("retry") and not taken(d)]
        return {
            "deliveries": len(store.deliveries),
            "not_taken_first_time": len(undelivered),
            "retried": retrier.retried,
            "recovered": retrier.recovered,
            "abandoned": retrier.abandoned,
            "queued": len(retrier.queue),
            "faults_hit": faults.hit,
        }

    return app


def app_factory() -> FastAPI:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s gateway %(levelname)s %(name)s: %(message)s"
    )
    return create_gateway_app(Settings(), merchant_url())
