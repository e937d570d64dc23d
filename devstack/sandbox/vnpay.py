"""Fake VNPay: /vnpay/paymentv2/vpcpay.html and /vnpay/merchant_webapi/api/transaction.

vpcpay.html checks the signed query string and sends the browser on to the shared pay page;
the merchant API answers querydr and refund with VNPay's pipe-joined checksums.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from devstack.sandbox.faults import answer_with_faults
from devstack.sandbox.state import Outbound, Sandbox, SandboxTransaction, TxnState, utcnow
from devstack.sandbox.web import json_body, wants_json, with_query
from gateways.vnpay_wire import (
    QUERYDR_ANSWER_SIGNED,
    QUERYDR_SIGNED,
    REFUND_ANSWER_SIGNED,
    REFUND_SIGNED,
    VNPAY_VERSION,
    parse_vnpay_date,
    vnpay_date,
    vnpay_hash_data,
    vnpay_pipe_hash,
    vnpay_secure_hash,
)

# (vnp_ResponseCode, vnp_TransactionStatus) per state; pending has no response code yet.
CODES: dict[TxnState, tuple[str, str]] = {
    TxnState.PENDING: ("", "01"),
    TxnState.PROCESSING: ("", "01"),  # querydr cannot tell "opened" from "not paid"
    TxnState.PAID: ("00", "00"),
    TxnState.FAILED: ("51", "02"),
    TxnState.DECLINED: ("24", "02"),
    TxnState.CANCELLED: ("24", "02"),
    TxnState.EXPIRED: ("11", "02"),
}
PAY_REQUIRED = (
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_Amount",
    "vnp_CurrCode",
    "vnp_TxnRef",
    "vnp_OrderInfo",
    "vnp_ReturnUrl",
    "vnp_IpAddr",
    "vnp_CreateDate",
    "vnp_ExpireDate",
)
MESSAGES = {
    "00": "Success",
    "02": "Merchant is not valid",
    "03": "Invalid data format",
    "91": "Transaction not found",
    "94": "Duplicate request",
    "95": "Transaction is not refundable",
    "97": "Invalid checksum",
}
BANK_CODE = "NCB"
# How long an accepted refund stays "being processed" (querydr 05, then 06) before it reads as done
# (vnp_TransactionType 02/03). Real refunds take minutes to days; the tests need seconds.
VNPAY_REFUND_PROCESSING_SECONDS = 1.0


class VnpaySim:
    name = "vnpay"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.tmn_code = sandbox.settings.vnpay_tmn_code
        self.secret = sandbox.settings.vnpay_hash_secret

    # -- browser entry ------------------------------------------------------------------

    def open_payment(self, params: dict[str, str]) -> tuple[str, str | None]:
        """(response code, pay page URL): "00" with the URL, or VNPay's refusal code."""
        if any(not params.get(k) for k in PAY_REQUIRED) or not params.get("vnp_SecureHash"):
            return "03", None
        given = params["vnp_SecureHash"].lower()
        if not hmac.compare_digest(vnpay_secure_hash(params, self.secret).encode(), given.encode()):
            return "97", None
        if params["vnp_TmnCode"] != self.tmn_code:
            return "02", None
        try:
            amount_x100 = int(params["vnp_Amount"])
            expires_at = parse_vnpay_date(params["vnp_ExpireDate"])
            parse_vnpay_date(params["vnp_CreateDate"])
        except ValueError:
            return "03", None
        if (
            params["vnp_Version"] != VNPAY_VERSION
            or params["vnp_Command"] != "pay"
            or params["vnp_CurrCode"] != "VND"
            or amount_x100 <= 0
            or amount_x100 % 100
        ):
            return "03", None
        txn_ref = params["vnp_TxnRef"]
        existing = self.sandbox.store.get(self.name, txn_ref)
        if existing is not None:  # reopening the very same signed URL is fine
            same = existing.request == params
            return ("00", self.sandbox.pay_url(self.name, txn_ref)) if same else ("94", None)
        self.sandbox.store.ledger.create(gateway=self.name, gateway_order_id=txn_ref, ok=True, code="00")
        self.sandbox.store.add(
            SandboxTransaction(
                gateway=self.name,
                id=txn_ref,
                amount=amount_x100 // 100,
                order_info=params["vnp_OrderInfo"],
                created_at=utcnow(),
                expires_at=expires_at,
                return_url=params["vnp_ReturnUrl"],
                notify_url=self.sandbox.vnpay_ipn_url,
                request=params,
            )
        )
        return "00", self.sandbox.pay_url(self.name, txn_ref)

    # -- merchant API -------------------------------------------------------------------

    def _transaction_api(self, body: dict[str, Any] | None) -> dict[str, Any]:
        command = (body or {}).get("vnp_Command")
        if body is None or command not in ("querydr", "refund"):
            return self._answer("03", {}, body or {}, QUERYDR_ANSWER_SIGNED)
        fields, answer_fields = (
            (QUERYDR_SIGNED, QUERYDR_ANSWER_SIGNED)
            if command == "querydr"
            else (REFUND_SIGNED, REFUND_ANSWER_SIGNED)
        )
        given = body.get("vnp_SecureHash")
        expected = vnpay_pipe_hash(body, fields, self.secret)
        if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.lower().encode()):
            return self._answer("97", {}, body, answer_fields)
        if body.get("vnp_TmnCode") != self.tmn_code:
            return self._answer("02", {}, body, answer_fields)
        txn = self.sandbox.store.get(self.name, str(body.get("vnp_TxnRef")))
        # VNPay finds a payment by vnp_TxnRef together with its original vnp_CreateDate.
        if txn is None or body.get("vnp_TransactionDate") != txn.request["vnp_CreateDate"]:
            return self._answer("91", {}, body, answer_fields)
        txn.refresh(utcnow())
        if command == "querydr":
            return self._answer("00", self._payment_fields(txn), body, answer_fields)
        return self._refund(txn, body)

    def transaction_api(self, body: dict[str, Any] | None) -> dict[str, Any]:
        answer = self._transaction_api(body)
        command = (body or {}).get("vnp_Command")
        if command == "querydr":
            ref = (body or {}).get("vnp_TxnRef")
            self.sandbox.store.ledger.query(
                gateway=self.name, gateway_order_id=ref, code=answer["vnp_ResponseCode"]
            )
        elif command == "refund" and answer["vnp_ResponseCode"] in (
            "97",
            "02",
            "91",
        ):  # refused before _refund
            self.sandbox.store.ledger.refund(
                gateway=self.name,
                gateway_order_id=(body or {}).get("vnp_TxnRef"),
                transaction_id=None,
                request_id=(body or {}).get("vnp_RequestId"),
                refund_order_id=None,
                amount=(body or {}).get("vnp_Amount"),
                accepted=False,
                code=answer["vnp_ResponseCode"],
                duplicate=False,
            )
        return answer

    def _refund(self, txn: SandboxTransaction, body: dict[str, Any]) -> dict[str, Any]:
        store = self.sandbox.store
        request_id = str(body.get("vnp_RequestId"))
        store.refund_requests.append({"gateway": self.name, "id": txn.id, "request_id": request_id})
        try:
            amount_x100 = int(body.get("vnp_Amount", ""))
        except ValueError:
            amount_x100 = -1

        def record(code: str, *, accepted: bool = False, duplicate: bool = False) -> None:
            store.ledger.refund(
                gateway=self.name,
                gateway_order_id=txn.id,
                transaction_id=txn.transaction_no or None,
                request_id=request_id,
                refund_order_id=None,
                amount=amount_x100 // 100 if amount_x100 > 0 else amount_x100,
                accepted=accepted,
                code=code,
                duplicate=duplicate,
            )

        # VNPay takes each vnp_RequestId once, and a refund of a transaction whose refund is still
        # being processed answers 94 "duplicate request": nothing is done either way.
        seen = request_id in store.vnpay_request_ids
        store.vnpay_request_ids.add(request_id)
        if seen or self._refund_in_progress(txn):
            record("94", duplicate=True)
            return self._answer("94", {}, body, REFUND_ANSWER_SIGNED)
        if txn.state is not TxnState.PAID:
            record("95")
            return self._answer("95", {}, body, REFUND_ANSWER_SIGNED)
        refund_type = body.get("vnp_TransactionType")
        remaining = txn.amount - txn.refunded
        valid = (
            amount_x100 > 0
            and amount_x100 % 100 == 0
            and (
                (refund_type == "02" and amount_x100 // 100 == remaining == txn.amount)
                or (refund_type == "03" and amount_x100 // 100 <= remaining)
            )
        )
        if not valid:
            record("03")
            return self._answer("03", {}, body, REFUND_ANSWER_SIGNED)
        now = utcnow()
        fields = {
            **self._payment_fields(txn),
            "vnp_Amount": str(amount_x100),
            "vnp_TransactionNo": store.next_number(),
            "vnp_TransactionType": refund_type,
            "vnp_TransactionStatus": "05",  # refund being processed
        }
        answer = self._answer("00", fields, body, REFUND_ANSWER_SIGNED)
        txn.refunds[request_id] = {
            "ok": True,
            "amount": amount_x100 // 100,
            "type": refund_type,
            "asked_at": now,
            "done_at": now + timedelta(seconds=VNPAY_REFUND_PROCESSING_SECONDS),
        }
        record("00", accepted=True)
        return answer

    @staticmethod
    def _refund_in_progress(txn: SandboxTransaction) -> bool:
        now = utcnow()
        return any(r["done_at"] > now for r in txn.refunds.values())

    def _payment_fields(self, txn: SandboxTransaction) -> dict[str, Any]:
        _, status = CODES[txn.state]
        fields = {
            "vnp_TxnRef": txn.id,
            "vnp_Amount": str(txn.amount * 100),
            "vnp_OrderInfo": txn.order_info,
            "vnp_BankCode": BANK_CODE,
            "vnp_PayDate": vnpay_date(txn.finished_at) if txn.finished_at else "",
            "vnp_TransactionNo": txn.transaction_no if txn.state is TxnState.PAID else "0",
            "vnp_TransactionType": "01",
            "vnp_TransactionStatus": status,
            "vnp_PromotionCode": "",
            "vnp_PromotionAmount": "",
        }
        if txn.refunds:  # querydr reports the refund: 05 then 06 while in progress, then 02/03 done
            now = utcnow()
            last = max(txn.refunds.values(), key=lambda r: r["asked_at"])
            if last["done_at"] > now:
                halfway = last["asked_at"] + (last["done_at"] - last["asked_at"]) / 2
                fields["vnp_TransactionStatus"] = "05" if now < halfway else "06"
            else:
                fields["vnp_TransactionType"] = "02" if txn.refunded >= txn.amount else "03"
        return fields

    def fault_answer(self, op: str, body: dict[str, Any] | None, code: Any) -> dict[str, Any]:
        """A switched-on fault: VNPay's answer with `code` (None: the HTTP 500), the work not done."""
        body = body or {}
        ledger = self.sandbox.store.ledger
        if op == "query":
            ledger.query(
                gateway=self.name, gateway_order_id=body.get("vnp_TxnRef"), code=code or 500, faulted=True
            )
            signed: tuple[str, ...] = QUERYDR_ANSWER_SIGNED
        else:
            try:
                amount: Any = int(body.get("vnp_Amount", "")) // 100
            except ValueError:
                amount = body.get("vnp_Amount")
            ledger.refund(
                gateway=self.name,
                gateway_order_id=body.get("vnp_TxnRef"),
                transaction_id=body.get("vnp_TransactionNo"),
                request_id=body.get("vnp_RequestId"),
                refund_order_id=None,
                amount=amount,
                accepted=False,
                code=code or 500,
                duplicate=False,
            )
            signed = REFUND_ANSWER_SIGNED
        return self._answer(str(code if code is not None else "99"), {}, body, signed)

    def _answer(
        self, code: str, fields: dict[str, Any], body: dict[str, Any], signed: tuple[str, ...]
    ) -> dict[str, Any]:
        answer = {
            "vnp_ResponseId": uuid.uuid4().hex,
            "vnp_Command": body.get("vnp_Command", ""),
            "vnp_ResponseCode": code,
            "vnp_Message": MESSAGES.get(code, "Error"),
            "vnp_TmnCode": self.tmn_code,
            **fields,
        }
        answer["vnp_SecureHash"] = vnpay_pipe_hash(answer, signed, self.secret)
        return answer

    # -- pay page -----------------------------------------------------------------------

    def result_code(self, txn: SandboxTransaction) -> str:
        return "/".join(CODES[txn.state])

    def _result_fields(self, txn: SandboxTransaction, state: TxnState) -> dict[str, str]:
        assert txn.finished_at is not None
        code, status = CODES[state]
        fields = {
            "vnp_Amount": str(txn.amount * 100),
            "vnp_BankCode": BANK_CODE,
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": txn.order_info,
            "vnp_PayDate": vnpay_date(txn.finished_at),
            "vnp_ResponseCode": code,
            "vnp_TmnCode": self.tmn_code,
            "vnp_TransactionNo": txn.transaction_no if state is TxnState.PAID else "0",
            "vnp_TransactionStatus": status,
            "vnp_TxnRef": txn.id,
        }
        if state is TxnState.PAID:
            fields["vnp_BankTranNo"] = f"VNP{txn.transaction_no}"
        fields["vnp_SecureHash"] = vnpay_secure_hash(fields, self.secret)
        return fields

    def final_notification(self, txn: SandboxTransaction) -> Outbound | None:
        if not txn.notify_url or txn.finished_at is None:
            return None
        return Outbound("GET", txn.notify_url, self._result_fields(txn, txn.state))

    def stale_notification(self, txn: SandboxTransaction) -> Outbound | None:
        # VNPay notifies final results only: the one plausible stale message is an earlier
        # cancelled attempt of the same vnp_TxnRef arriving after its success.
        if not txn.notify_url or txn.finished_at is None or txn.state is not TxnState.PAID:
            return None
        fields = self._result_fields(txn, TxnState.CANCELLED)
        fields["vnp_PayDate"] = vnpay_date(txn.finished_at - timedelta(seconds=5))
        fields["vnp_SecureHash"] = vnpay_secure_hash(fields, self.secret)
        return Outbound("GET", txn.notify_url, fields)

    def return_url(self, txn: SandboxTransaction) -> str | None:
        if txn.finished_at is None:
            return None
        fields = self._result_fields(txn, txn.state)
        query = f"{vnpay_hash_data(fields)}&vnp_SecureHash={fields['vnp_SecureHash']}"
        return with_query(txn.return_url, query)


def vnpay_routes(sim: VnpaySim) -> APIRouter:
    router = APIRouter(prefix="/vnpay", tags=["sandbox: vnpay"])

    @router.get("/paymentv2/vpcpay.html")
    async def vpcpay(request: Request) -> Response:
        code, pay_url = sim.open_payment(dict(request.query_params))
        if wants_json(request):
            return JSONResponse({"code": code, "pay_url": pay_url}, status_code=200 if pay_url else 400)
        if pay_url is None:
            page = f"<!doctype html><title>VNPay sandbox</title><h1>Payment refused</h1><p>Code {code}: "
            return HTMLResponse(page + f"{MESSAGES.get(code, 'Error')}</p>", status_code=400)
        return RedirectResponse(pay_url, status_code=303)

    @router.post("/merchant_webapi/api/transaction")
    async def transaction(request: Request) -> Any:
        body = await json_body(request)
        command = (body or {}).get("vnp_Command")
        op = {"querydr": "query", "refund": "refund"}.get(command) if isinstance(command, str) else None
        if op is None:
            return sim.transaction_api(body)
        store = sim.sandbox.store
        return await answer_with_faults(
            request,
            store.faults,
            sim.name,
            op,
            work=lambda: sim.transaction_api(body),
            refuse=lambda code: sim.fault_answer(op, body, code),
            on_lost=lambda: store.ledger.mark_lost(op),
        )

    return router
