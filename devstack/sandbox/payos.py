"""Fake PayOS: /payos/v2/payment-requests (+ /{id}, /{id}/cancel), signed like the real API
so that the official `payos` SDK works against it (base_url `{public}/sandbox/payos/`).
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from devstack.sandbox.faults import answer_with_faults
from devstack.sandbox.state import Outbound, Sandbox, SandboxTransaction, TxnState, utcnow
from devstack.sandbox.web import json_body, with_query
from gateways.payos import payos_payment_request_signature, payos_signature
from gateways.vnpay_wire import VNPAY_TZ

PAYOS_LINK_MINUTES = 24 * 60  # when the merchant sends no expiredAt
DESCRIPTION_MAX = 25
ACCOUNT = {"bin": "970422", "accountNumber": "0000000000", "accountName": "PAYWINDOW SANDBOX"}
STATUS = {
    TxnState.PENDING: "PENDING",
    TxnState.PROCESSING: "PROCESSING",
    TxnState.PAID: "PAID",
    TxnState.FAILED: "FAILED",
    TxnState.DECLINED: "CANCELLED",
    TxnState.CANCELLED: "CANCELLED",
    TxnState.EXPIRED: "EXPIRED",
}
# Error codes: "20" bad request / bad signature, "231" orderCode exists, "101" not found.
BAD_REQUEST, EXISTS, NOT_FOUND = "20", "231", "101"


def _local(moment: datetime) -> datetime:
    return moment.astimezone(VNPAY_TZ)  # PayOS reports Vietnamese local time


class PayOSSim:
    name = "payos"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.settings = sandbox.settings

    def authorized(self, request: Request) -> bool:
        client_id = request.headers.get("x-client-id", "").encode()
        api_key = request.headers.get("x-api-key", "").encode()
        return hmac.compare_digest(client_id, self.settings.payos_client_id.encode()) & hmac.compare_digest(
            api_key, self.settings.payos_api_key.encode()
        )

    def _ok(self, data: dict[str, Any]) -> dict[str, Any]:
        signature = payos_signature(data, self.settings.payos_checksum_key)
        return {"code": "00", "desc": "success", "data": data, "signature": signature}

    @staticmethod
    def error(code: str, desc: str) -> dict[str, Any]:
        return {"code": code, "desc": desc, "data": None, "signature": None}

    def find(self, ref: str) -> SandboxTransaction | None:
        """By orderCode or by paymentLinkId, as the real API accepts either."""
        txn = self.sandbox.store.get(self.name, ref) or self.sandbox.store.by_link_id(self.name, ref)
        if txn is not None:
            txn.refresh(utcnow())
        return txn

    # -- merchant API -------------------------------------------------------------------

    def create(self, body: dict[str, Any] | None) -> dict[str, Any]:
        answer = self._create(body)
        ref = ((answer.get("data") or {}).get("orderCode")) or (body or {}).get("orderCode")
        ledger = self.sandbox.store.ledger
        ledger.create(gateway=self.name, gateway_order_id=ref, ok=answer["code"] == "00", code=answer["code"])
        return answer

    def _create(self, body: dict[str, Any] | None) -> dict[str, Any]:
        if body is None:
            return self.error(BAD_REQUEST, "Invalid JSON body")
        order_code, amount, description = body.get("orderCode"), body.get("amount"), body.get("description")
        if not (
            isinstance(order_code, int)
            and order_code > 0
            and isinstance(amount, int)
            and amount > 0
            and isinstance(description, str)
            and len(description) <= DESCRIPTION_MAX
            and all(isinstance(body.get(k), str) and body[k] for k in ("cancelUrl", "returnUrl"))
        ):
            return self.error(BAD_REQUEST, "Invalid parameters")
        given = body.get("signature")
        expected = payos_payment_request_signature(body, self.settings.payos_checksum_key)
        if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
            return self.error(BAD_REQUEST, "Signature is invalid")
        if self.sandbox.store.get(self.name, str(order_code)) is not None:
            return self.error(EXISTS, "Payment request for this orderCode already exists")
        now = utcnow()
        expired_at = body.get("expiredAt")
        expires = (
            datetime.fromtimestamp(expired_at, now.tzinfo)
            if isinstance(expired_at, int)
            else now + timedelta(minutes=PAYOS_LINK_MINUTES)
        )
        txn = SandboxTransaction(
            gateway=self.name,
            id=str(order_code),
            amount=amount,
            order_info=description,
            created_at=now,
            expires_at=expires,
            return_url=body["returnUrl"],
            notify_url=self.sandbox.payos_webhook_url,
            request=body,
            extra={"paymentLinkId": uuid.uuid4().hex, "cancelUrl": body["cancelUrl"]},
        )
        self.sandbox.store.add(txn)
        return self._ok(
            {
                **ACCOUNT,
                "amount": amount,
                "description": description,
                "orderCode": order_code,
                "currency": "VND",
                "paymentLinkId": txn.extra["paymentLinkId"],
                "status": "PENDING",
                "expiredAt": expired_at if isinstance(expired_at, int) else None,
                "checkoutUrl": self.sandbox.pay_url(self.name, txn.id),
                "qrCode": f"00020101021238570010A000000727SANDBOX{order_code}5303704540{amount}5802VN",
            }
        )

    def get(self, ref: str) -> dict[str, Any]:
        txn = self.find(ref)
        answer = self._ok(self._link(txn)) if txn else self.error(NOT_FOUND, "Payment link not found")
        self.sandbox.store.ledger.query(
            gateway=self.name, gateway_order_id=txn.id if txn else ref, code=answer["code"]
        )
        return answer

    def fault_answer(self, op: str, ref: Any, code: Any) -> dict[str, Any]:
        """A switched-on fault: PayOS's error answer with `code` (None: the HTTP 500), the work not done."""
        ledger = self.sandbox.store.ledger
        if op == "create":
            ledger.create(gateway=self.name, gateway_order_id=ref, ok=False, code=code or 500)
        elif op == "query":
            ledger.query(gateway=self.name, gateway_order_id=ref, code=code or 500, faulted=True)
        return self.error(str(code if code is not None else "20"), "sandbox fault")

    def cancel(self, ref: str, body: dict[str, Any] | None) -> dict[str, Any]:
        txn = self.find(ref)
        if txn is None:
            return self.error(NOT_FOUND, "Payment link not found")
        body = body or {}
        given = body.get("signature")
        if given is not None:  # the SDK signs the body when it carries a reason
            unsigned = {k: v for k, v in body.items() if k != "signature"}
            expected = payos_signature(unsigned, self.settings.payos_checksum_key)
            if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
                return self.error(BAD_REQUEST, "Signature is invalid")
        if txn.state is TxnState.PENDING:
            txn.state = TxnState.CANCELLED
            txn.finished_at = utcnow()
            txn.extra["cancellationReason"] = body.get("cancellationReason")
        elif STATUS[txn.state] != "CANCELLED":
            return self.error(BAD_REQUEST, f"Payment link is {STATUS[txn.state]}, cannot cancel")
        return self._ok(self._link(txn))

    def _transaction_at(self, txn: SandboxTransaction, at: datetime) -> dict[str, Any]:
        return {
            "reference": f"FT{txn.transaction_no}",
            "amount": txn.amount,
            "accountNumber": ACCOUNT["accountNumber"],
            "description": txn.order_info,
            "transactionDateTime": _local(at).strftime("%Y-%m-%d %H:%M:%S"),
            "virtualAccountName": None,
            "virtualAccountNumber": None,
            "counterAccountBankId": None,
            "counterAccountBankName": None,
            "counterAccountName": None,
            "counterAccountNumber": None,
        }

    def _link(self, txn: SandboxTransaction) -> dict[str, Any]:
        transfers = txn.extra.get("transfers", [])
        paid = self.paid(txn)
        cancelled = STATUS[txn.state] == "CANCELLED" and txn.finished_at is not None
        return {
            "id": txn.extra["paymentLinkId"],
            "orderCode": int(txn.id),
            "amount": txn.amount,
            "amountPaid": paid,
            "amountRemaining": max(0, txn.amount - paid),
            "status": "UNDERPAID" if 0 < paid < txn.amount else STATUS[txn.state],
            "createdAt": _local(txn.created_at).isoformat(timespec="seconds"),
            "transactions": transfers,
            "cancellationReason": txn.extra.get("cancellationReason") if cancelled else None,
            # `cancelled` implies finished_at; restated for the type checker
            "canceledAt": _local(txn.finished_at).isoformat(timespec="seconds")
            if cancelled and txn.finished_at
            else None,
        }

    # -- pay page -----------------------------------------------------------------------

    def result_code(self, txn: SandboxTransaction) -> str:
        return STATUS[txn.state]

    def final_notification(self, txn: SandboxTransaction) -> Outbound | None:
        return None  # a PayOS webhook reports a received transfer: each comes from transfer()

    def stale_notification(self, txn: SandboxTransaction) -> Outbound | None:
        return None  # no "not paid" webhook exists in PayOS's protocol

    def paid(self, txn: SandboxTransaction) -> int:
        return sum(t["amount"] for t in txn.extra.get("transfers", []))

    def transfer(self, txn: SandboxTransaction, amount: int) -> Outbound | None:
        """The shopper transfers `amount` to the link's account (VietQR), in whatever state the link is:
        a bank transfer cannot be refused. Short of the link's amount it reads UNDERPAID; covering it,
        PAID. Each transfer gets its own webhook, which reports that transfer's amount and reference."""
        now = utcnow()
        txn.transaction_no = self.sandbox.store.next_number()
        transfer = {**self._transaction_at(txn, now), "amount": amount}
        transfers = txn.extra.setdefault("transfers", [])
        transfers.append(transfer)
        self.sandbox.store.ledger.transfer(
            gateway=self.name, gateway_order_id=txn.id, amount=amount, transaction_id=transfer["reference"]
        )
        if self.paid(txn) >= txn.amount and txn.state is not TxnState.PAID:
            txn.state, txn.finished_at = TxnState.PAID, now
        if not txn.notify_url:
            return None
        data = {
            "orderCode": int(txn.id),
            "amount": amount,
            "description": txn.order_info,
            "accountNumber": ACCOUNT["accountNumber"],
            "reference": transfer["reference"],
            "transactionDateTime": transfer["transactionDateTime"],
            "currency": "VND",
            "paymentLinkId": txn.extra["paymentLinkId"],
            "code": "00",
            "desc": "success",
            "counterAccountBankId": "",
            "counterAccountBankName": "",
            "counterAccountName": None,
            "counterAccountNumber": None,
            "virtualAccountName": "",
            "virtualAccountNumber": "",
        }
        body = {"code": "00", "desc": "success", "success": True, "data": data}
        body["signature"] = payos_signature(data, self.settings.payos_checksum_key)
        return Outbound("POST", txn.notify_url, body)

    def return_url(self, txn: SandboxTransaction) -> str | None:
        status = STATUS[txn.state]
        cancelled = status == "CANCELLED"
        query = urlencode(
            {
                "code": "00",
                "id": txn.extra["paymentLinkId"],
                "cancel": "true" if cancelled else "false",
                "status": status,
                "orderCode": txn.id,
            }
        )
        return with_query(txn.extra["cancelUrl"] if cancelled else txn.return_url, query)


def payos_routes(sim: PayOSSim) -> APIRouter:
    router = APIRouter(prefix="/payos/v2/payment-requests", tags=["sandbox: payos"])

    def unauthorized() -> JSONResponse:
        return JSONResponse(sim.error("401", "Unauthorized: bad x-client-id / x-api-key"), 401)

    async def call(op: str, request: Request, ref: Any, work: Any) -> Any:
        if not sim.authorized(request):
            return unauthorized()
        store = sim.sandbox.store
        return await answer_with_faults(
            request,
            store.faults,
            sim.name,
            op,
            work=work,
            refuse=lambda code: sim.fault_answer(op, ref, code),
            on_lost=lambda: store.ledger.mark_lost(op),
        )

    @router.post("")
    async def create(request: Request) -> Any:
        body = await json_body(request)
        return await call("create", request, (body or {}).get("orderCode"), lambda: sim.create(body))

    @router.get("/{ref}")
    async def get(ref: str, request: Request) -> Any:
        return await call("query", request, ref, lambda: sim.get(ref))

    @router.post("/{ref}/cancel")
    async def cancel(ref: str, request: Request) -> Any:
        body = await json_body(request)
        return await call("cancel", request, ref, lambda: sim.cancel(ref, body))

    return router
