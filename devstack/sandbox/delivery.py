"""Background delivery of the sandbox's server notifications, with fault knobs.

Knobs: `duplicate` extra copies, `delay_ms` before the first send, `drop` (lost: nothing
is sent), `reorder` (a stale notification after the final one). Every attempt is recorded
in the store and served by GET /sandbox/deliveries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.sandbox.state import Outbound, SandboxStore, SandboxTransaction, utcnow

DELIVERY_TIMEOUT_SECONDS = 15.0  # MoMo waits 15 s for the merchant's answer
MAX_DUPLICATES = 10
MAX_DELAY_MS = 120_000


@dataclass(frozen=True)
class DeliveryKnobs:
    duplicate: int = 0
    delay_ms: int = 0
    drop: bool = False
    reorder: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DeliveryKnobs:
        """From JSON or form values; raises ValueError on nonsense."""
        duplicate = int(data.get("duplicate") or 0)
        delay_ms = int(data.get("delay_ms") or 0)
        if not 0 <= duplicate <= MAX_DUPLICATES or not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"duplicate must be 0..{MAX_DUPLICATES}, delay_ms 0..{MAX_DELAY_MS}")
        return cls(duplicate, delay_ms, _flag(data.get("drop")), _flag(data.get("reorder")))


def _flag(value: Any) -> bool:
    return value is True or (
        isinstance(value, (str, int)) and str(value).lower() in ("1", "true", "on", "yes")
    )


def schedule(
    store: SandboxStore,
    txn: SandboxTransaction,
    final: Outbound | None,
    stale: Outbound | None,
    knobs: DeliveryKnobs,
) -> list[str]:
    """Start delivering in the background; returns the kinds planned, in order."""
    if final is None:
        return []
    if knobs.drop:
        _record(store, txn, "final", final, dropped=True)
        return []
    plan = [("final", final)] + [("duplicate", final)] * knobs.duplicate
    if knobs.reorder and stale is not None:
        plan.append(("stale", stale))
    store.spawn(_deliver(store, txn, plan, knobs.delay_ms))
    return [kind for kind, _ in plan]


async def _deliver(
    store: SandboxStore, txn: SandboxTransaction, plan: list[tuple[str, Outbound]], delay_ms: int
) -> None:
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as client:
        for kind, out in plan:  # one after the other, so "stale" really arrives last
            try:
                if out.method == "GET":
                    response = await client.get(out.url, params=out.payload)
                else:
                    response = await client.post(out.url, json=out.payload)
            except httpx.HTTPError as exc:
                _record(store, txn, kind, out, error=repr(exc))
            else:
                _record(store, txn, kind, out, status_code=response.status_code, answer=response.text[:500])


def _record(
    store: SandboxStore,
    txn: SandboxTransaction,
    kind: str,
    out: Outbound,
    *,
    status_code: int | None = None,
    answer: str | None = None,
    error: str | None = None,
    dropped: bool = False,
) -> None:
    store.deliveries.append(
        {
            "seq": len(store.deliveries) + 1,
            "gateway": txn.gateway,
            "transaction_id": txn.id,
            "kind": kind,
            "method": out.method,
            "url": out.url,
            "payload": out.payload,
            "dropped": dropped,
            "status_code": status_code,
            "answer": answer,
            "error": error,
            "at": utcnow().isoformat(),
        }
    )
