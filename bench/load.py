"""HTTP load against the running API, the way shoppers' frontends and the sandbox's pay page call it.

Everything goes through the public endpoints: `POST /api/v1/admin/products` for the catalog,
`POST /api/v1/orders` (with an Idempotency-Key, as the README's walk-through does) for orders and
`POST /sandbox/pay/momo/{gatewayOrderId}/pay` on the gateways' own process for the few orders that
get paid.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.auth import issue_token

RECEIVER = {"name": "Nguyễn Văn Bench", "phone": "0901234567", "address": "1 Lê Lợi, Quận 1, TP.HCM"}


@dataclass
class Created:
    order_id: str
    gateway_order_id: str
    expires_at: str
    sent_at: float  # time.time() when the request left
    latency_ms: float


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    created: list[Created] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    sent: int = 0

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    @property
    def rate(self) -> float:
        return len(self.created) / self.elapsed_s if self.elapsed_s else 0.0


class Api:
    """A thin client: one shopper token, one admin token, one keep-alive connection pool."""

    def __init__(
        self, base_url: str, jwt_secret: str, gateway_url: str | None = None, max_connections: int = 256
    ) -> None:
        self.base_url = base_url
        self.gateway_url = gateway_url or base_url
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self.shopper = {
            "Authorization": f"Bearer {issue_token(jwt_secret, 'bench-shopper', 'customer', 86400)}"
        }
        self.admin = {"Authorization": f"Bearer {issue_token(jwt_secret, 'bench-admin', 'admin', 86400)}"}

    async def close(self) -> None:
        await self.http.aclose()

    async def create_variants(self, label: str, count: int, stock: int, price: int = 50_000) -> list[str]:
        body = {
            "name": f"Bench {label}",
            "description": "created by bench/run.py",
            "variants": [
                {
                    "sku": f"BENCH-{label}-{i}-{uuid.uuid4().hex[:6]}",
                    "name": f"{label} {i}",
                    "price": price,
                    "stockQuantity": stock,
                }
                for i in range(count)
            ],
        }
        r = await self.http.post("/api/v1/admin/products", json=body, headers=self.admin)
        if r.status_code != 201:
            raise RuntimeError(f"POST /admin/products -> {r.status_code}: {r.text[:300]}")
        return [v["id"] for v in r.json()["data"]["variants"]]

    async def create_order(
        self, variant_id: str, order_type: str, result: LoadResult, timeout: float | None = None
    ) -> Created | None:
        body = {
            "items": [{"variantId": variant_id, "quantity": 1}],
            "gateway": "momo",
            "orderType": order_type,
            "receiver": RECEIVER,
        }
        headers = {**self.shopper, "Idempotency-Key": uuid.uuid4().hex}
        sent_at = time.time()
        t0 = time.perf_counter()
        result.sent += 1
        try:
            r = await self.http.post(
                "/api/v1/orders", json=body, headers=headers, timeout=timeout or self.http.timeout
            )
        except httpx.HTTPError as err:
            result.error(type(err).__name__)
            return None
        latency = (time.perf_counter() - t0) * 1000
        if r.status_code != 201:
            try:
                code = r.json().get("error") or str(r.status_code)
            except ValueError:
                code = str(r.status_code)
            result.error(f"{r.status_code} {code}")
            return None
        data = r.json()["data"]
        created = Created(
            order_id=data["orderId"],
            gateway_order_id=data["attempts"][0]["gatewayOrderId"],
            expires_at=data["session"]["expiresAt"],
            sent_at=sent_at,
            latency_ms=latency,
        )
        result.latencies_ms.append(latency)
        result.created.append(created)
        return created

    async def pay(self, gateway_order_id: str) -> bool:
        r = await self.http.post(
            f"{self.gateway_url}/sandbox/pay/momo/{gateway_order_id}/pay",
            headers={"Accept": "application/json"},
            json={},
        )
        return r.status_code == 200


def round_robin(items: list[str]) -> Callable[[], str]:
    it = itertools.cycle(items)
    return lambda: next(it)


async def sequential(
    api: Api, count: int, variant: Callable[[], str], order_type: str, tick: Callable[[], None] = lambda: None
) -> LoadResult:
    """Concurrency 1: one request at a time."""
    result = LoadResult()
    t0 = time.perf_counter()
    for _ in range(count):
        await api.create_order(variant(), order_type, result)
        tick()
    result.elapsed_s = time.perf_counter() - t0
    return result


async def closed_loop(
    api: Api,
    concurrency: int,
    variant: Callable[[], str],
    order_type: Callable[[], str] | str,
    *,
    duration_s: float | None = None,
    count: int | None = None,
    stop_at: float | None = None,
    grace_s: float = 5.0,
    tick: Callable[[], None] = lambda: None,
) -> LoadResult:
    """`concurrency` shoppers, each sending its next order as soon as the last one answered, until
    `duration_s` has passed, `count` orders were sent or time.time() reaches `stop_at`. Requests
    still unanswered `grace_s` after a time limit are abandoned (counted), so a saturated service
    cannot stretch the phase by its own latency."""
    result = LoadResult()
    kind = order_type if callable(order_type) else (lambda: order_type)
    t0 = time.perf_counter()
    end = t0 + duration_s if duration_s is not None else None
    if stop_at is not None:
        wall_end = t0 + (stop_at - time.time())
        end = wall_end if end is None else min(end, wall_end)
    budget = {"left": count if count is not None else 1 << 62}

    def more() -> bool:
        return budget["left"] > 0 and (end is None or time.perf_counter() < end)

    async def shopper() -> None:
        while more():
            budget["left"] -= 1
            await api.create_order(variant(), kind(), result)
            tick()

    shoppers = [asyncio.create_task(shopper()) for _ in range(concurrency)]
    timeout = None if end is None else max(0.0, end + grace_s - time.perf_counter())
    _, late = await asyncio.wait(shoppers, timeout=timeout)
    for task in late:
        task.cancel()
        result.error("abandoned at the phase's end")
    await asyncio.gather(*late, return_exceptions=True)
    result.elapsed_s = time.perf_counter() - t0
    return result


async def open_loop(
    api: Api,
    rate_per_s: float,
    duration_s: float,
    variant: Callable[[], str],
    order_type: str,
    *,
    max_in_flight: int,
    on_created: Callable[[Created], Any] | None = None,
    tick: Callable[[], None] = lambda: None,
    drain_timeout_s: float = 45.0,
) -> tuple[LoadResult, float, int]:
    """Steady arrivals: a new order every 1/rate s for `duration_s`, whatever the answers do. An
    arrival that finds `max_in_flight` requests outstanding is shed (counted, not sent), so a
    saturated service shows up as a lower achieved rate instead of an ever longer phase.
    Returns the result, the achieved arrival rate (sent per second) and the number shed."""
    result = LoadResult()
    in_flight = 0
    tasks: set[asyncio.Task] = set()
    interval = 1.0 / rate_per_s
    t0 = time.perf_counter()
    n = shed = 0

    async def one() -> None:
        nonlocal in_flight
        try:
            created = await api.create_order(variant(), order_type, result)
            if created is not None and on_created is not None:
                await on_created(created)
        finally:
            in_flight -= 1

    while True:
        due = t0 + n * interval
        if due - t0 >= duration_s:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        n += 1
        tick()
        if in_flight >= max_in_flight:
            shed += 1
            continue
        in_flight += 1
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=drain_timeout_s)
        for task in late:  # still unanswered long after the last arrival: give up on them
            task.cancel()
            result.error("abandoned (no answer)")
        await asyncio.gather(*late, return_exceptions=True)
    result.elapsed_s = time.perf_counter() - t0
    return result, (n - shed) / duration_s, shed
