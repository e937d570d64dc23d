"""Shoppers: each drives one order through the public API and the gateways' pay pages, the way a
frontend and a browser would, and writes down everything it saw (`OrderRecord`), so the invariant
check can tell what each order had to become.

What a shopper does is its `Plan`:
  pay             pay attempt 0 (knobs: duplicate / delay_ms / drop / reorder)     -> paid
  fail_retry_pay  fail attempt 0 (MoMo or VNPay), retry on another gateway, pay  -> paid
  fail_all        fail attempts 0..3, retrying after each                        -> failed
  decline         decline at the gateway (PayOS: cancel + the browser return)    -> cancelled
  cancel          POST /orders/{ref}/cancel                                      -> cancelled
  expire          nothing                                                        -> expired
  late_pay        MoMo: wait until the order reads expired, then pay             -> expired + refunded
  split_pay       PayOS: two bank transfers that together make the price, in time -> paid
  overpay         PayOS: the price, then once the order reads paid one more transfer -> paid + review
  late_topup      PayOS: part of the price in time, the rest once the order ended -> expired + review

Creates are retried with the same Idempotency-Key on transport errors, 429 and 5xx, as a careful
client does. Other calls read the order back before repeating themselves (retry-payment is not
idempotent). Every wait is bounded; a shopper never raises.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.auth import Role, issue_token
from domain.ids import order_id_for
from domain.statuses import OrderStatus

RECEIVER = {
    "name": "Nguyễn Văn Chaos",
    "phone": "0901234567",
    "address": "1 Lê Lợi, Quận 1, TP.HCM",
    "email": "shopper@chaos.example",  # reminders go out by e-mail too
}
RETRYABLE = {429, 500, 502, 503, 504}
TERMINAL = frozenset(s.value for s in OrderStatus if s.is_terminal)
TRANSFER_KINDS = ("split_pay", "overpay", "late_topup")  # PayOS links paid by bank transfers


@dataclass
class Plan:
    kind: str
    gateway: str
    order_type: str
    lines: list[tuple[str, int]]  # (variant id, quantity)
    act_after_s: float = 0.5
    knobs: dict[str, Any] = field(default_factory=dict)
    retry_gateway: str | None = None
    browser_return: bool = False
    gate: asyncio.Event | None = None  # late_pay: once the order reads ended, pay only when this is set


@dataclass
class Click:
    attempt_no: int
    gateway: str
    action: str
    knobs: dict[str, Any]
    t0: float  # epoch seconds, before the request left
    t1: float  # after the answer
    status: int | None  # the gateway's HTTP status; None: no answer
    state: str | None = None
    notification: dict[str, Any] | None = None  # the signed notification the gateway sent (to replay)
    return_url: str | None = None  # where the gateway sent the browser back


@dataclass
class OrderRecord:
    scenario: str
    customer: str
    key: str
    plan: Plan
    order_id: str  # what the Idempotency-Key maps to
    burst: bool = False
    creates: list[str] = field(default_factory=list)  # every answer to POST /orders, in order
    created_ok: bool = False  # some answer was 201/200
    returned_ids: set[str] = field(default_factory=set)
    rejected: str | None = None  # a definitive 4xx to the create (e.g. OUT_OF_STOCK)
    gave_up: bool = False
    first_sent: float = 0.0
    created_at: float | None = None  # when the first 201/200 arrived
    create_ms: float | None = None  # round trip of the request that got it
    expires_at: float | None = None
    status_at_create: str | None = None
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)
    clicks: list[Click] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (call, outcome)
    seen_terminal: str | None = None
    seen_terminal_at: float | None = None
    returns: list[str] = field(default_factory=list)  # browser-return answers
    error: str | None = None  # the shopper itself broke (a harness problem)
    done: bool = False

    @property
    def client_ip(self) -> str:
        """The shopper's own address (the API trusts X-Forwarded-For from 127.0.0.1, as behind a proxy)."""
        n = int(self.key[-6:], 16)
        return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def _outcome(r: httpx.Response) -> str:
    try:
        code = r.json().get("error")
    except ValueError:
        code = None
    return f"{r.status_code} {code}" if code else str(r.status_code)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


class Shoppers:
    """HTTP clients shared by all shoppers of a run."""

    def __init__(
        self,
        api_url: str,
        jwt_secret: str,
        create_give_up_s: float,
        grace_s: float = 0.0,
        gateway_url: str = "",
    ) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self.api = httpx.AsyncClient(
            base_url=f"{api_url}/api/v1", timeout=httpx.Timeout(90, connect=5), limits=limits
        )
        self.gateways = httpx.AsyncClient(timeout=30, limits=limits)
        self.jwt_secret = jwt_secret
        self.gateway_url = gateway_url
        self.create_give_up_s = create_give_up_s
        self.grace_s = grace_s  # a payment in flight can hold a window this long past its deadline
        self._tokens: dict[str, dict[str, str]] = {}

    async def close(self) -> None:
        await self.api.aclose()
        await self.gateways.aclose()

    def auth(self, customer: str, role: Role = "customer") -> dict[str, str]:
        if customer not in self._tokens:
            token = issue_token(self.jwt_secret, customer, role, 6 * 3600)
            self._tokens[customer] = {"Authorization": f"Bearer {token}"}
        return self._tokens[customer]

    def record(self, scenario: str, customer: str, plan: Plan, burst: bool = False) -> OrderRecord:
        key = f"chaos-{uuid.uuid4().hex}"
        return OrderRecord(scenario, customer, key, plan, order_id_for(customer, key), burst=burst)

    async def create_product(self, name: str, stocks: list[int], price: int = 50_000) -> list[str]:
        body = {
            "name": name,
            "description": "created by chaos/run.py",
            "variants": [
                {
                    "sku": f"CHAOS-{uuid.uuid4().hex[:12]}",
                    "name": f"{name} {i}",
                    "price": price + 1000 * i,
                    "stockQuantity": stock,
                }
                for i, stock in enumerate(stocks)
            ],
        }
        r = await self.api.post("/admin/products", json=body, headers=self.auth("chaos-admin", "admin"))
        if r.status_code != 201:
            raise RuntimeError(f"POST /admin/products -> {r.status_code}: {r.text[:300]}")
        return [v["id"] for v in r.json()["data"]["variants"]]

    # ---- one shopper ------------------------------------------------------------------------------

    async def shop(self, rec: OrderRecord) -> None:
        try:
            data = await self.create(rec)
            if data is not None:
                await self.follow_plan(rec, data)
        except Exception as err:  # noqa: BLE001 - a shopper records its own breakage, never raises
            rec.error = f"{type(err).__name__}: {err}"[:300]
        finally:
            rec.done = True

    async def create(self, rec: OrderRecord) -> dict[str, Any] | None:
        plan = rec.plan
        body = {
            "items": [{"variantId": vid, "quantity": qty} for vid, qty in plan.lines],
            "gateway": plan.gateway,
            "orderType": plan.order_type,
            "receiver": RECEIVER,
        }
        headers = {**self.auth(rec.customer), "Idempotency-Key": rec.key}
        rec.first_sent = time.time()
        give_up = time.monotonic() + self.create_give_up_s
        delay = 0.25
        while True:
            sent = time.perf_counter()
            try:
                r = await self.api.post("/orders", json=body, headers=headers)
            except httpx.HTTPError as err:
                rec.creates.append(type(err).__name__)
                r = None
            if r is not None:
                rec.creates.append(_outcome(r))
                if r.status_code in (200, 201):
                    data = r.json()["data"]
                    rec.created_ok = True
                    rec.returned_ids.add(data["orderId"])
                    rec.created_at = rec.created_at or time.time()
                    rec.create_ms = (time.perf_counter() - sent) * 1000
                    rec.expires_at = _epoch(data["session"]["expiresAt"])
                    rec.status_at_create = data["status"]
                    self._note_attempts(rec, data)
                    return data
                if r.status_code not in RETRYABLE or _outcome(r) == "502 PAYMENT_GATEWAY_ERROR":
                    rec.rejected = _outcome(r)  # 502 with that code: the order failed, no link was made
                    return None
            if time.monotonic() > give_up:
                rec.gave_up = True
                return None
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def follow_plan(self, rec: OrderRecord, data: dict[str, Any]) -> None:
        plan = rec.plan
        if data["status"] in TERMINAL:
            self._saw(rec, data["status"])
            return
        if plan.kind == "expire":
            return
        if plan.kind == "late_pay":
            await self.late_pay(rec)
            return
        if plan.kind in TRANSFER_KINDS:
            await asyncio.sleep(plan.act_after_s)
            await self.transfers(rec)
            return
        await asyncio.sleep(plan.act_after_s)
        if plan.kind == "cancel":
            await self.cancel(rec)
            return
        if not await self.attempt(rec, 0):
            return
        if plan.kind == "pay":
            await self.click(rec, 0, "pay", plan.knobs, plan.browser_return)
        elif plan.kind == "decline":
            action = "cancel" if plan.gateway == "payos" else "decline"
            await self.click(
                rec, 0, action, plan.knobs, browser_return=plan.gateway == "payos" or plan.browser_return
            )
        elif plan.kind == "fail_retry_pay":
            if await self.fail_then_retry(rec, 0, plan.retry_gateway or "payos"):
                await self.click(rec, 1, "pay", plan.knobs, plan.browser_return)
        elif plan.kind == "fail_all":
            gateways = ["momo", "vnpay"]
            for n in range(4):
                if n == 3:
                    await self.click(rec, 3, "fail", {}, False)
                    break
                if not await self.fail_then_retry(rec, n, gateways[(n + 1) % 2]):
                    break

    # ---- steps -------------------------------------------------------------------------------------------

    async def detail(self, rec: OrderRecord, patience_s: float = 60) -> dict[str, Any] | None:
        give_up = time.monotonic() + patience_s
        while time.monotonic() < give_up:
            try:
                r = await self.api.get(f"/orders/{rec.order_id}", headers=self.auth(rec.customer))
                if r.status_code == 200:
                    data = r.json()["data"]
                    self._note_attempts(rec, data)
                    if data["status"] in TERMINAL:
                        self._saw(rec, data["status"])
                    return data
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        return None

    async def wait_for(
        self, rec: OrderRecord, done: Callable[[dict[str, Any]], bool], timeout_s: float, every_s: float = 0.4
    ) -> dict[str, Any] | None:
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            data = await self.detail(rec, patience_s=max(1.0, give_up - time.monotonic()))
            if data is not None and done(data):
                return data
            await asyncio.sleep(every_s)
        return None

    async def attempt(self, rec: OrderRecord, n: int) -> bool:
        """Attempt n's payment URL is known (a replayed create may have answered before the link)."""
        if n in rec.attempts:
            return True
        data = await self.wait_for(rec, lambda d: len(d["attempts"]) > n or d["status"] in TERMINAL, 60)
        return n in rec.attempts and (data is None or data["status"] not in TERMINAL)

    async def click(
        self, rec: OrderRecord, n: int, action: str, knobs: dict[str, Any], browser_return: bool = False
    ) -> Click | None:
        attempt = rec.attempts.get(n)
        if attempt is None:
            return None
        page = attempt["paymentUrl"]
        t0 = time.time()
        try:
            if attempt["gateway"] == "vnpay":  # the signed vpcpay.html URL leads to the pay page
                r = await self.gateways.get(page, headers={"Accept": "application/json"})
                page = r.json()["pay_url"] or ""
            r = await self.gateways.post(
                f"{page}/{action}", json=knobs, headers={"Accept": "application/json"}
            )
            answer = r.json()
            click = Click(
                attempt_no=n,
                gateway=attempt["gateway"],
                action=action,
                knobs=knobs,
                t0=t0,
                t1=time.time(),
                status=r.status_code,
                state=answer.get("state"),
                notification=answer.get("notification"),
                return_url=answer.get("return_url"),
            )
        except (httpx.HTTPError, ValueError, KeyError):
            click = Click(n, attempt["gateway"], action, knobs, t0, time.time(), None)
            answer = {}
        rec.clicks.append(click)
        if browser_return and click.status == 200 and answer.get("return_url"):
            try:  # the shopper's browser lands on our return URL (a 303 to the frontend)
                path = answer["return_url"].split("/api/v1", 1)[1]
                back = await self.api.get(path, headers={"X-Forwarded-For": rec.client_ip})
                rec.returns.append(str(back.status_code))
            except (httpx.HTTPError, IndexError):
                rec.returns.append("error")
        return click

    async def fail_then_retry(self, rec: OrderRecord, n: int, gateway: str) -> bool:
        """Fail attempt n, wait until the order saw it, ask for attempt n+1. True when it exists."""
        click = await self.click(rec, n, "fail", {})
        if click is None or click.status != 200:
            return False
        window_left = (rec.expires_at or time.time()) - time.time()
        data = await self.wait_for(
            rec,
            lambda d: d["status"] in TERMINAL or d["attempts"][n]["status"] != "pending",
            max(window_left, 1.0) + 2,
        )
        if data is None or data["status"] in TERMINAL:
            return False
        return await self.retry(rec, n + 1, gateway)

    async def retry(self, rec: OrderRecord, n: int, gateway: str) -> bool:
        while True:
            try:
                r = await self.api.post(
                    f"/orders/{rec.order_id}/retry-payment",
                    json={"gateway": gateway},
                    headers=self.auth(rec.customer),
                )
                rec.calls.append(("retry", _outcome(r)))
                if r.status_code == 200:
                    break
                if r.status_code not in RETRYABLE:
                    return False
            except httpx.HTTPError as err:
                rec.calls.append(("retry", type(err).__name__))
            # Unknown outcome: read before asking again (a second retry would make another attempt).
            data = await self.detail(rec)
            if data is None or data["status"] in TERMINAL:
                return False
            if len(data["attempts"]) > n:
                break
            if time.time() > (rec.expires_at or 0):
                return False
            await asyncio.sleep(0.5)
        return await self.attempt(rec, n)

    async def cancel(self, rec: OrderRecord) -> None:
        for _ in range(60):
            try:
                r = await self.api.post(
                    f"/orders/{rec.order_id}/cancel",
                    json={"reason": "chaos"},
                    headers=self.auth(rec.customer),
                )
                rec.calls.append(("cancel", _outcome(r)))
                if r.status_code == 200:
                    self._saw(rec, "cancelled")
                    return
                if r.status_code not in RETRYABLE:
                    return
            except httpx.HTTPError as err:
                rec.calls.append(("cancel", type(err).__name__))
            data = await self.detail(rec)
            if data is None or data["status"] in TERMINAL:
                return
            await asyncio.sleep(0.5)

    async def late_pay(self, rec: OrderRecord) -> None:
        """Pay a MoMo link (it outlives our window) once the order reads ended: money after the close."""
        if not await self.attempt(rec, 0):
            return
        # Look from just before the window can close on (deadline + grace), then often: the payment
        # should follow the close closely.
        await asyncio.sleep(max(0.0, (rec.expires_at or 0) + self.grace_s - 0.5 - time.time()))
        wait = max(0.0, (rec.expires_at or time.time()) - time.time()) + 120
        data = await self.wait_for(rec, lambda d: d["status"] in TERMINAL, wait, every_s=0.3)
        if data is None:
            return
        if rec.plan.gate is not None:
            try:
                await asyncio.wait_for(rec.plan.gate.wait(), 120)
            except TimeoutError:
                return
        await self.click(rec, 0, "pay", rec.plan.knobs, rec.plan.browser_return)

    async def transfers(self, rec: OrderRecord) -> None:
        """PayOS bank transfers (VietQR): the link takes each one, part or more of its price."""
        if not await self.attempt(rec, 0):
            return
        price = rec.attempts[0]["amount"]
        first = price // 3 if rec.plan.kind != "overpay" else price
        await self.transfer(rec, first)
        if rec.plan.kind == "split_pay":
            await asyncio.sleep(rec.plan.knobs.get("gap_s", 0.5))
            await self.transfer(rec, price - first)
        elif rec.plan.kind == "overpay":  # once the order reads paid: money beyond the price
            if await self.wait_for(rec, lambda d: d["status"] in TERMINAL, 60):
                await self.transfer(rec, rec.plan.knobs.get("extra", 20_000))
        else:  # late_topup: the rest once the window closed on the short transfer
            wait = max(0.0, (rec.expires_at or time.time()) - time.time()) + 120
            if await self.wait_for(rec, lambda d: d["status"] in TERMINAL, wait, every_s=0.5):
                await self.transfer(rec, price - first)

    async def transfer(self, rec: OrderRecord, amount: int) -> Click:
        """One transfer: the sandbox's transfer helper (any link state), as a click."""
        attempt = rec.attempts[0]
        t0 = time.time()
        status: int | None = None
        answer: dict[str, Any] = {}
        try:
            r = await self.gateways.post(
                f"{self.gateway_url}/sandbox/payos/{attempt['gatewayOrderId']}/transfer",
                json={"amount": amount},
            )
            status = r.status_code
            answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        except (httpx.HTTPError, ValueError):
            pass
        click = Click(
            0, "payos", "transfer", {"amount": amount}, t0, time.time(), status, answer.get("state")
        )
        rec.clicks.append(click)
        return click

    # ---- bookkeeping -----------------------------------------------------------------------------------

    def _note_attempts(self, rec: OrderRecord, data: dict[str, Any]) -> None:
        for a in data.get("attempts") or []:
            rec.attempts.setdefault(
                a["attemptNo"],
                {
                    "gateway": a["gateway"],
                    "paymentUrl": a["paymentUrl"],
                    "gatewayOrderId": a["gatewayOrderId"],
                    "amount": a["amount"],
                },
            )

    def _saw(self, rec: OrderRecord, status: str) -> None:
        if rec.seen_terminal is None:
            rec.seen_terminal, rec.seen_terminal_at = status, time.time()


class Arrivals:
    """Shoppers arriving at a steady rate for a while, in the background; each runs to its end."""

    def __init__(
        self, shoppers: Shoppers, make_record: Callable[[], OrderRecord], rate_per_s: float, duration_s: float
    ) -> None:
        self.shoppers = shoppers
        self.make_record = make_record
        self.rate = rate_per_s
        self.duration_s = duration_s
        self.records: list[OrderRecord] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._arrivals: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._arrivals = asyncio.create_task(self._arrive())

    @property
    def arriving(self) -> bool:
        return self._arrivals is not None and not self._arrivals.done()

    async def _arrive(self) -> None:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < self.duration_s:
            self.spawn(self.make_record())
            n += 1
            next_at = t0 + n / self.rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def spawn(self, rec: OrderRecord) -> None:
        self.records.append(rec)
        task = asyncio.create_task(self.shoppers.shop(rec))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def finish(self, timeout_s: float) -> int:
        """Wait for arrivals and every shopper; returns how many shoppers were still busy (cancelled)."""
        if self._arrivals is not None:
            await self._arrivals
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            return len(pending)
        return 0
