"""Operators at the money desk during a chaos scenario, through the admin API as a person would:
refund / mark-refunded on payments of orders that are still open (each must be refused, 409
ORDER_STILL_OPEN, or at least refused: the order's workflow owns its money until it ends), and on
every payment the desk lists once the orders ended (each goes back once; asking again is refused).

What they were told is kept as `DeskAction`s; `violations()` says which answers broke a rule. The
money itself is judged by the ledger walk (chaos/ledger.py): a hand refund or a gateway refund made
twice shows there as a double refund.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from domain.gateways import REFUND_API

ADMIN = "chaos-operator"


@dataclass
class DeskAction:
    phase: str  # "open" (the order was pending when the operator looked) | "after" | "again"
    action: str  # "refund" | "mark-refunded"
    payment_id: str
    gateway: str
    gateway_order_id: str
    desk_status: str  # the payment's status as the desk listed it
    answer: str  # "200", "409 ORDER_STILL_OPEN", "ConnectError", ...
    order_status_after: str | None = None  # read right after the answer


@dataclass
class Desk:
    api: httpx.AsyncClient  # base_url .../api/v1
    headers: dict[str, str]
    actions: list[DeskAction] = field(default_factory=list)

    async def listing(self, status: str | None = None, gateway: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 200):
            params: dict[str, Any] = {"page": page, "size": 100}
            if status:
                params["status"] = status
            if gateway:
                params["gateway"] = gateway
            r = await self.api.get("/admin/payments", params=params, headers=self.headers)
            r.raise_for_status()
            items = r.json()["data"]["items"]
            out += items
            if len(items) < 100:
                break
        return out

    async def order_status(self, order_id: str) -> str | None:
        try:
            r = await self.api.get(f"/orders/{order_id}", headers=self.headers)
            return r.json()["data"]["status"] if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    async def act(self, phase: str, action: str, p: dict[str, Any]) -> DeskAction:
        body = {"note": f"chaos {phase}"}
        if action == "mark-refunded":
            body["reference"] = f"chaos-bank-{p['paymentId'][:8]}"
        try:
            r = await self.api.post(
                f"/admin/payments/{p['paymentId']}/{action}", json=body, headers=self.headers
            )
            try:
                code = r.json().get("error")
            except ValueError:
                code = None
            answer = f"{r.status_code} {code}" if code else str(r.status_code)
        except httpx.HTTPError as err:
            answer = type(err).__name__
        done = DeskAction(
            phase=phase,
            action=action,
            payment_id=p["paymentId"],
            gateway=p["gateway"],
            gateway_order_id=p["gatewayOrderId"],
            desk_status=p["status"],
            answer=answer,
            order_status_after=await self.order_status(p["orderId"]),
        )
        self.actions.append(done)
        return done

    async def while_open(self, gateway_ids: set[str], until: float) -> None:
        """Until `until` (monotonic): whatever of these attempts (gateway order ids) the desk shows on
        an open order, refund and mark refunded. Every answer must be a refusal."""
        tried: set[tuple[str, str]] = set()
        while time.monotonic() < until:
            for status in ("needs_review", "pending", "refund_required"):
                try:
                    listed = await self.listing(status)
                except (httpx.HTTPError, ValueError):
                    continue
                for p in listed:
                    if p["gatewayOrderId"] not in gateway_ids or p["orderStatus"] != "pending_payment":
                        continue
                    for action in ("mark-refunded", "refund"):
                        if (p["paymentId"], f"{action}:{p['status']}") not in tried:
                            tried.add((p["paymentId"], f"{action}:{p['status']}"))
                            await self.act("open", action, p)
            await asyncio.sleep(0.5)

    async def after(self, gateway_ids: set[str], settle_s: float = 30) -> None:
        """Every payment of these the desk lists once its order ended: back through the gateway where
        it has a refund API, else marked refunded (sent back by bank); then each asked again."""
        listed = [p for p in await self.listing() if p["gatewayOrderId"] in gateway_ids]
        for p in listed:
            if p["orderStatus"] == "pending_payment":
                continue
            await self.act("after", "refund" if p["gateway"] in REFUND_API else "mark-refunded", p)
        give_up = time.monotonic() + settle_s  # refunds run in the worker: let them end
        while time.monotonic() < give_up:
            left = [p for p in await self.listing("refund_required") if p["gatewayOrderId"] in gateway_ids]
            if not any(p["gateway"] in REFUND_API for p in left):
                break
            await asyncio.sleep(1)
        for p in listed:
            for action in ("refund", "mark-refunded"):
                await self.act("again", action, p)

    def violations(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for a in self.actions:
            ok = a.answer.startswith(("200", "202"))
            where = {
                "payment_id": a.payment_id,
                "gateway_order_id": a.gateway_order_id,
                "action": a.action,
                "desk_status": a.desk_status,
                "answer": a.answer,
                "order_after": a.order_status_after,
            }
            # Still open after the answer, so open when it was given. (Listed open, ended by the time
            # the operator acted: the desk may then act, and the ledger walk judges the money.)
            still_open = a.phase == "open" and a.order_status_after == "pending_payment"
            if still_open and ok:
                out.setdefault("desk_acted_on_open_order", []).append(where)
            # Money under review on an open order: the workflow owns it; say so.
            if (
                still_open
                and a.desk_status == "needs_review"
                and not ok
                and "ORDER_STILL_OPEN" not in a.answer
            ):
                out.setdefault("desk_open_not_order_still_open", []).append(where)
            if a.phase == "again" and ok:
                out.setdefault("desk_acted_twice", []).append(where)
            if a.phase == "after" and not ok:
                out.setdefault("desk_refused_ended_order", []).append(where)
        return out

    def figures(self) -> dict[str, Any]:
        counts = Counter(f"{a.phase} {a.action} {a.answer}" for a in self.actions)
        raced = sum(
            1
            for a in self.actions
            if a.phase == "open"
            and a.answer.startswith(("200", "202"))
            and a.order_status_after != "pending_payment"
        )
        return {**counts, "open_but_ended_before_the_action": raced}
