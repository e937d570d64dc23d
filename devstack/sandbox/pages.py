"""The hosted pay page shared by the three fake gateways, the index and the delivery log.

GET  /pay/{gateway}/{token}           plain HTML (no CDN): amount, order info, deadline, buttons
POST /pay/{gateway}/{token}/{action}  action in pay|fail|decline|cancel; optional knobs as JSON or
                                      form: duplicate, delay_ms, drop, reorder. Sends the signed
                                      notification in the background, then 303s to the merchant's
                                      return URL (or answers JSON when Accept: application/json).
                                      PayOS also takes `transfer` with `amount`: a bank transfer of
                                      part (UNDERPAID) or all of the amount.
"Let it expire" is doing nothing: past its expiry a transaction refuses every action.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from devstack.sandbox.delivery import DeliveryKnobs, schedule
from devstack.sandbox.state import (
    ACTIONABLE,
    ACTIONS,
    OPEN,
    GatewaySim,
    Sandbox,
    SandboxStore,
    SandboxTransaction,
    TxnState,
    utcnow,
)
from devstack.sandbox.web import json_body, wants_json
from gateways.vnpay_wire import VNPAY_TZ

STYLE = """
body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#222}
.card{border:1px solid #ccc;border-radius:8px;padding:1rem 1.5rem}
dt{font-weight:600;margin-top:.5rem}dd{margin:0}
form{display:inline}button{font-size:1rem;margin:.25rem;padding:.5rem 1rem;border-radius:6px;cursor:pointer}
.pay{background:#1a7f37;color:#fff;border:0}.state{font-size:1.2rem;font-weight:700}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left}
"""
BUTTONS = (("pay", "Pay"), ("fail", "Fail"), ("decline", "Decline"), ("cancel", "Cancel"))


def _vnd(amount: int) -> str:
    return f"{amount:,}".replace(",", ".") + " ₫"


def _local(txn_time: Any) -> str:
    return txn_time.astimezone(VNPAY_TZ).strftime("%Y-%m-%d %H:%M:%S (GMT+7)")


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status_code)


def _pay_page(
    sandbox: Sandbox, sim: GatewaySim, txn: SandboxTransaction, status_code: int = 200
) -> HTMLResponse:
    action_base = sandbox.pay_url(txn.gateway, txn.id)
    if txn.state in ACTIONABLE:
        controls = (
            "".join(
                f'<form method="post" action="{escape(action_base)}/{a}">'
                f'<button class="{a}" type="submit">{label}</button></form>'
                for a, label in BUTTONS
            )
            + "<p><small>To let it expire, do nothing until the deadline.</small></p>"
        )
    else:
        controls = f'<p class="state">{escape(txn.state.value.upper())}</p>'
        back = sim.return_url(txn) if txn.state is not TxnState.EXPIRED else None
        if back:
            controls += f"<p><a href='{escape(back)}'>Return to the merchant</a></p>"
    body = (
        f"<h1>{escape(txn.gateway.upper())} sandbox</h1><div class='card'><dl>"
        f"<dt>Amount</dt><dd>{escape(_vnd(txn.amount))}</dd>"
        f"<dt>Order</dt><dd>{escape(txn.order_info)} <small>({escape(txn.id)})</small></dd>"
        f"<dt>Deadline</dt><dd>{escape(_local(txn.expires_at))}</dd>"
        f"<dt>State</dt><dd>{escape(txn.state.value)} (code {escape(sim.result_code(txn))})</dd>"
        f"</dl>{controls}</div><p><a href='{escape(sandbox.base_url)}/'>All sandbox transactions</a></p>"
    )
    return _page(f"{txn.gateway} sandbox payment", body, status_code)


async def _knobs(request: Request) -> Mapping[str, Any]:
    content_type = request.headers.get("content-type", "")
    if "application/json" in content_type:
        return await json_body(request) or {}
    if "form" in content_type:
        return dict(await request.form())
    return dict(request.query_params)


TRANSFER = "transfer"  # PayOS only: a bank transfer of `amount`, part or all of what the link asks


def _transfer(
    store: SandboxStore,
    sim: GatewaySim,
    txn: SandboxTransaction,
    raw: Mapping[str, Any],
    knobs: DeliveryKnobs,
) -> Response:
    transfer = getattr(sim, "transfer", None)
    if transfer is None:
        raise HTTPException(404, f"{sim.name} takes no bank transfers: use pay")
    try:
        amount = int(raw.get("amount") or 0)
    except (TypeError, ValueError):
        amount = 0
    if amount <= 0:
        raise HTTPException(422, "amount must be a positive number of VND")
    final = transfer(txn, amount)  # in any state: a bank transfer cannot be refused
    planned = schedule(store, txn, final, None, knobs)
    sent = {"notification": final.payload if final else None, "planned_deliveries": planned}
    return JSONResponse(_summary(sim, txn) | sent)


def pages_routes(sandbox: Sandbox, sims: Mapping[str, GatewaySim]) -> APIRouter:
    router = APIRouter(tags=["sandbox: pages"])
    store = sandbox.store

    def lookup(gateway: str, token: str) -> tuple[GatewaySim, SandboxTransaction]:
        sim, txn = sims.get(gateway), store.get(gateway, token) or store.by_link_id(gateway, token)
        if sim is None or txn is None:
            raise HTTPException(404, f"no {gateway} sandbox transaction {token!r}")
        txn.refresh(utcnow())
        return sim, txn

    @router.get("/pay/{gateway}/{token}", response_class=HTMLResponse)
    async def pay_page(gateway: str, token: str) -> HTMLResponse:
        sim, txn = lookup(gateway, token)
        return _pay_page(sandbox, sim, txn)

    @router.post("/pay/{gateway}/{token}/{action}")
    async def act(gateway: str, token: str, action: str, request: Request) -> Response:
        if action not in ACTIONS and action not in (OPEN, TRANSFER):
            known = sorted([*ACTIONS, OPEN, TRANSFER])
            raise HTTPException(404, f"unknown action {action!r}; use one of {known}")
        raw = await _knobs(request)
        try:
            knobs = DeliveryKnobs.parse(raw)
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        sim, txn = lookup(gateway, token)  # after the last await: nothing interleaves from here
        if action == TRANSFER:
            return _transfer(store, sim, txn, raw, knobs)
        if txn.state not in ACTIONABLE or (action == OPEN and txn.state is not TxnState.PENDING):
            # Expired links refuse payment; finished ones cannot be acted upon twice.
            status_code = 410 if txn.state is TxnState.EXPIRED else 409
            if wants_json(request):
                return JSONResponse(_summary(sim, txn), status_code=status_code)
            return _pay_page(sandbox, sim, txn, status_code)
        if action == OPEN:  # in flight: the gateway now answers "processing" until a verdict
            txn.state = TxnState.PROCESSING
            return JSONResponse(_summary(sim, txn)) if wants_json(request) else _pay_page(sandbox, sim, txn)
        transfer = getattr(sim, "transfer", None)
        if action == "pay" and transfer is not None:  # PayOS: one transfer of what is still owed
            # Only PayOS's sim has transfer() and paid(), which the getattr above checked.
            final = transfer(txn, txn.amount - sim.paid(txn))  # type: ignore[attr-defined]
        else:
            txn.state, txn.finished_at = ACTIONS[action], utcnow()
            txn.transaction_no = store.next_number()
            final = sim.final_notification(txn)
            if txn.state is TxnState.PAID:
                store.ledger.transfer(
                    gateway=txn.gateway,
                    gateway_order_id=txn.id,
                    amount=txn.amount,
                    transaction_id=txn.transaction_no,
                )
        planned = schedule(store, txn, final, sim.stale_notification(txn), knobs)
        return_url = sim.return_url(txn)
        if wants_json(request) or return_url is None:
            summary = _summary(sim, txn) | {
                "return_url": return_url,
                "notification": final.payload if final else None,
                "planned_deliveries": planned,
            }
            return JSONResponse(summary)
        return RedirectResponse(return_url, status_code=303)

    @router.post("/payos/{order_code}/transfer")
    async def payos_transfer(order_code: str, request: Request) -> Response:
        raw = await json_body(request) or {}
        sim, txn = lookup("payos", order_code)
        return _transfer(store, sim, txn, raw, DeliveryKnobs())

    @router.get("/deliveries")
    async def deliveries(
        gateway: str | None = None, transaction_id: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            d
            for d in store.deliveries
            if (gateway is None or d["gateway"] == gateway)
            and (transaction_id is None or d["transaction_id"] == transaction_id)
        ]

    @router.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        now = utcnow()
        recent = sorted(store.transactions.values(), key=lambda t: t.created_at, reverse=True)[:100]
        rows = []
        for txn in recent:
            txn.refresh(now)
            link = escape(sandbox.pay_url(txn.gateway, txn.id))
            rows.append(
                f"<tr><td>{escape(_local(txn.created_at))}</td><td>{escape(txn.gateway)}</td>"
                f"<td><a href='{link}'>{escape(txn.id)}</a></td><td>{escape(_vnd(txn.amount))}</td>"
                f"<td>{escape(txn.state.value)}</td></tr>"
            )
        table = "".join(rows) or "<tr><td colspan='5'>No transactions yet.</td></tr>"
        body = (
            "<h1>Payment gateway sandbox</h1><p>In-memory, per process: a restart forgets everything. "
            f"<a href='{escape(sandbox.base_url)}/deliveries'>Delivery log (JSON)</a></p>"
            "<table><tr><th>Created</th><th>Gateway</th><th>Id</th><th>Amount</th><th>State</th></tr>"
            f"{table}</table>"
        )
        return _page("Payment gateway sandbox", body)

    return router


def _summary(sim: GatewaySim, txn: SandboxTransaction) -> dict[str, Any]:
    return {
        "gateway": txn.gateway,
        "id": txn.id,
        "state": txn.state.value,
        "result_code": sim.result_code(txn),
        "amount": txn.amount,
        "expires_at": txn.expires_at.isoformat(),
    }
