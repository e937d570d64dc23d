"""Fake MoMo: /momo/v2/gateway/api/{create,query,refund}, IPN and redirect with MoMo's fields."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from devstack.sandbox.faults import answer_with_faults
from devstack.sandbox.state import Outbound, Sandbox, SandboxTransaction, TxnState, utcnow
from devstack.sandbox.web import json_body, with_query
from gateways.base import InvalidSignature
from gateways.fields import str_field
from gateways.momo import (
    CREATE_SIGNED,
    NOTIFY_SIGNED,
    ORDER_ID_RE,
    QUERY_SIGNED,
    REFUND_SIGNED,
    momo_signature,
)

# Unconfirmed for real one-time payUrls; long enough to rehearse a payment after our window.
MOMO_LINK_MINUTES = 100
AMOUNT_MIN, AMOUNT_MAX = 1_000, 50_000_000
CODES = {
    TxnState.PENDING: 1000,
    TxnState.PROCESSING: 7000,
    TxnState.PAID: 0,
    TxnState.FAILED: 1001,
    TxnState.DECLINED: 1006,
    TxnState.CANCELLED: 1003,
    TxnState.EXPIRED: 1005,
}
MESSAGES = {
    0: "Thành công.",
    11: "Truy cập bị từ chối (chữ ký không hợp lệ).",
    13: "Xác thực doanh nghiệp thất bại.",
    20: "Yêu cầu sai định dạng.",
    22: "Số tiền giao dịch không hợp lệ.",
    41: "OrderId bị trùng.",
    40: "RequestId bị trùng.",
    42: "OrderId không hợp lệ hoặc không được tìm thấy.",
    99: "Lỗi không xác định.",
    1000: "Giao dịch đã được khởi tạo, chờ người dùng xác nhận thanh toán.",
    1001: "Giao dịch thanh toán thất bại do tài khoản người dùng không đủ tiền.",
    1003: "Giao dịch bị đã bị hủy.",
    1005: "Giao dịch thất bại do url hoặc QR code đã hết hạn.",
    1006: "Giao dịch thất bại do người dùng đã từ chối xác nhận thanh toán.",
    1080: "Giao dịch hoàn tiền bị từ chối: không tìm thấy giao dịch thanh toán.",
    1081: "Giao dịch hoàn tiền bị từ chối: số tiền vượt quá số tiền có thể hoàn.",
}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class MomoSim:
    name = "momo"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.settings = sandbox.settings

    def _sign(self, fields: tuple[str, ...], values: dict[str, Any]) -> str:
        return momo_signature(
            self.settings.momo_secret_key, fields, {**values, "accessKey": self.settings.momo_access_key}
        )

    def _signature_ok(self, fields: tuple[str, ...], body: dict[str, Any]) -> bool:
        given = body.get("signature")
        return isinstance(given, str) and hmac.compare_digest(
            self._sign(fields, body).encode(), given.encode()
        )

    def _error(self, code: int, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "partnerCode": body.get("partnerCode"),
            "orderId": body.get("orderId"),
            "requestId": body.get("requestId"),
            "resultCode": code,
            "message": MESSAGES.get(code, "Lỗi."),
            "responseTime": _ms(utcnow()),
        }

    def _check(self, body: dict[str, Any] | None, fields: tuple[str, ...]) -> int | None:
        """The MoMo resultCode refusing this request, or None when it may proceed."""
        if body is None:
            return 20
        try:
            for name in fields[1:]:  # accessKey is never sent
                str_field(body, name)
        except InvalidSignature:
            return 20
        if body["partnerCode"] != self.settings.momo_partner_code:
            return 13
        return None if self._signature_ok(fields, body) else 11

    # -- merchant API -------------------------------------------------------------------

    def create(self, body: dict[str, Any] | None) -> dict[str, Any]:
        answer = self._create(body)
        if answer["resultCode"] not in (0, 40, 41):  # those two are recorded where they are decided
            self.sandbox.store.ledger.create(
                gateway=self.name, gateway_order_id=answer.get("orderId"), ok=False, code=answer["resultCode"]
            )
        return answer

    def _create(self, body: dict[str, Any] | None) -> dict[str, Any]:
        refused = self._check(body, CREATE_SIGNED)
        if refused is not None or body is None:
            return self._error(refused or 20, body or {})
        amount = body["amount"]
        if not isinstance(amount, int) or not AMOUNT_MIN <= amount <= AMOUNT_MAX:
            return self._error(22, body)
        order_id = body["orderId"]
        if not ORDER_ID_RE.match(order_id) or "&" in body["orderInfo"]:
            return self._error(20, body)
        store = self.sandbox.store
        # MoMo takes each orderId once and each requestId once: a resend of a create it already did
        # answers 41 (its answer was lost, not repeated) and does nothing.
        if order_id in store.momo_order_ids or body["requestId"] in store.momo_request_ids:
            code = 41 if order_id in store.momo_order_ids else 40
            store.ledger.create(gateway=self.name, gateway_order_id=order_id, ok=False, code=code)
            return self._error(code, body)
        store.momo_order_ids.add(order_id)
        store.momo_request_ids.add(body["requestId"])
        now = utcnow()
        minutes = body.get("orderExpireTime")
        lifetime = minutes if isinstance(minutes, int) and minutes > 0 else MOMO_LINK_MINUTES
        txn = SandboxTransaction(
            gateway=self.name,
            id=order_id,
            amount=amount,
            order_info=body["orderInfo"],
            created_at=now,
            expires_at=now + timedelta(minutes=lifetime),
            return_url=body["redirectUrl"],
            notify_url=body["ipnUrl"] or None,
            request=body,
        )
        pay_url = self.sandbox.pay_url(self.name, order_id)
        txn.extra["create_answer"] = {
            "partnerCode": body["partnerCode"],
            "requestId": body["requestId"],
            "orderId": order_id,
            "amount": amount,
            "responseTime": _ms(now),
            "message": MESSAGES[0],
            "resultCode": 0,
            "payUrl": pay_url,
            "deeplink": f"momo://app?action=payWithApp&orderId={order_id}",
            "qrCodeUrl": pay_url,
        }
        store.add(txn)
        store.ledger.create(gateway=self.name, gateway_order_id=order_id, ok=True, code=0)
        return txn.extra["create_answer"]

    def query(self, body: dict[str, Any] | None) -> dict[str, Any]:
        answer = self._query(body)
        self.sandbox.store.ledger.query(
            gateway=self.name, gateway_order_id=answer.get("orderId"), code=answer["resultCode"]
        )
        return answer

    def _query(self, body: dict[str, Any] | None) -> dict[str, Any]:
        refused = self._check(body, QUERY_SIGNED)
        if refused is not None or body is None:
            return self._error(refused or 20, body or {})
        txn = self.sandbox.store.get(self.name, body["orderId"])
        if txn is None:
            return self._error(42, body)
        txn.refresh(utcnow())
        code = CODES[txn.state]
        return {
            "partnerCode": body["partnerCode"],
            "orderId": txn.id,
            "requestId": body["requestId"],
            "extraData": txn.request.get("extraData", ""),
            "amount": txn.amount,
            "transId": int(txn.transaction_no or 0),
            "payType": "qr" if txn.transaction_no else "",
            "resultCode": code,
            "refundTrans": [r["trans"] for r in txn.refunds.values() if r.get("ok")],
            "message": MESSAGES.get(code, ""),
            "responseTime": _ms(utcnow()),
            "lastUpdated": _ms(txn.finished_at or txn.created_at),
        }

    def refund(self, body: dict[str, Any] | None) -> dict[str, Any]:
        refused = self._check(body, REFUND_SIGNED)
        if refused is not None or body is None:
            return self._error(refused or 20, body or {})
        store = self.sandbox.store
        trans_id, amount, order_id, request_id = (
            str(body["transId"]),
            body["amount"],
            body["orderId"],
            body["requestId"],
        )
        paid = [t for t in store.of_gateway(self.name) if t.transaction_no == trans_id]
        txn = paid[0] if paid and paid[0].state is TxnState.PAID else None

        def record(code: int, *, accepted: bool = False, duplicate: bool = False) -> dict[str, Any]:
            store.ledger.refund(
                gateway=self.name,
                gateway_order_id=txn.id if txn else None,
                transaction_id=trans_id,
                request_id=request_id,
                refund_order_id=order_id,
                amount=amount,
                accepted=accepted,
                code=code,
                duplicate=duplicate,
            )
            return self._error(code, body)

        if txn is not None:
            store.refund_requests.append({"gateway": self.name, "id": txn.id, "request_id": request_id})
        # A refund is a MoMo order of its own: its orderId and requestId are taken once, like any.
        if order_id in store.momo_order_ids:
            return record(41, duplicate=True)
        if request_id in store.momo_request_ids:
            return record(40, duplicate=True)
        if txn is None:
            return record(1080)
        if not isinstance(amount, int) or not 0 < amount <= txn.amount - txn.refunded:
            return record(1081)
        store.momo_order_ids.add(order_id)
        store.momo_request_ids.add(request_id)
        now = utcnow()
        refund_trans_id = int(store.next_number())
        answer = {
            "partnerCode": body["partnerCode"],
            "orderId": order_id,
            "requestId": request_id,
            "amount": amount,
            "transId": refund_trans_id,
            "resultCode": 0,
            "message": MESSAGES[0],
            "responseTime": _ms(now),
        }
        trans = {  # as the query's refundTrans lists it
            "orderId": order_id,
            "amount": amount,
            "resultCode": 0,
            "transId": refund_trans_id,
            "createdTime": _ms(now),
        }
        txn.refunds[request_id] = {"ok": True, "amount": amount, "orderId": order_id, "trans": trans}
        store.ledger.refund(
            gateway=self.name,
            gateway_order_id=txn.id,
            transaction_id=trans_id,
            request_id=request_id,
            refund_order_id=order_id,
            amount=amount,
            accepted=True,
            code=0,
            duplicate=False,
        )
        return answer

    def fault_answer(self, op: str, body: dict[str, Any] | None, code: Any) -> dict[str, Any]:
        """A switched-on fault: MoMo's answer with `code` (None: the HTTP 500), the work not done."""
        body = body or {}
        ledger = self.sandbox.store.ledger
        if op == "create":
            ledger.create(gateway=self.name, gateway_order_id=body.get("orderId"), ok=False, code=code or 500)
        elif op == "query":
            ledger.query(
                gateway=self.name, gateway_order_id=body.get("orderId"), code=code or 500, faulted=True
            )
        elif op == "refund":
            ledger.refund(
                gateway=self.name,
                gateway_order_id=None,
                transaction_id=str(body.get("transId")),
                request_id=body.get("requestId"),
                refund_order_id=body.get("orderId"),
                amount=body.get("amount"),
                accepted=False,
                code=code or 500,
                duplicate=False,
            )
        return self._error(int(code) if code is not None else 99, body)

    # -- pay page -----------------------------------------------------------------------

    def result_code(self, txn: SandboxTransaction) -> str:
        return str(CODES[txn.state])

    def _result_fields(self, txn: SandboxTransaction, code: int, moment: datetime) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "partnerCode": self.settings.momo_partner_code,
            "orderId": txn.id,
            "requestId": txn.request["requestId"],
            "amount": txn.amount,
            "orderInfo": txn.order_info,
            "orderType": "momo_wallet",
            "transId": int(txn.transaction_no or 0),
            "resultCode": code,
            "message": MESSAGES.get(code, ""),
            "payType": "qr",
            "responseTime": _ms(moment),
            "extraData": txn.request.get("extraData", ""),
        }
        fields["signature"] = self._sign(NOTIFY_SIGNED, fields)
        return fields

    def final_notification(self, txn: SandboxTransaction) -> Outbound | None:
        if not txn.notify_url or txn.finished_at is None:
            return None
        return Outbound("POST", txn.notify_url, self._result_fields(txn, CODES[txn.state], txn.finished_at))

    def stale_notification(self, txn: SandboxTransaction) -> Outbound | None:
        if not txn.notify_url or txn.finished_at is None:
            return None
        # After a success, an earlier decline; otherwise the earlier "waiting for the user".
        code = 1006 if txn.state is TxnState.PAID else 1000
        earlier = txn.finished_at - timedelta(seconds=5)
        return Outbound("POST", txn.notify_url, self._result_fields(txn, code, earlier))

    def return_url(self, txn: SandboxTransaction) -> str | None:
        if txn.finished_at is None:
            return None
        fields = self._result_fields(txn, CODES[txn.state], txn.finished_at)
        return with_query(txn.return_url, urlencode({k: str(v) for k, v in fields.items()}))


def momo_routes(sim: MomoSim) -> APIRouter:
    router = APIRouter(prefix="/momo/v2/gateway/api", tags=["sandbox: momo"])
    store = sim.sandbox.store
    calls = {"create": sim.create, "query": sim.query, "refund": sim.refund}

    async def call(op: str, request: Request) -> Any:
        body = await json_body(request)
        return await answer_with_faults(
            request,
            store.faults,
            sim.name,
            op,
            work=lambda: calls[op](body),
            refuse=lambda code: sim.fault_answer(op, body, code),
            on_lost=lambda: store.ledger.mark_lost(op),
        )

    @router.post("/create")
    async def create(request: Request) -> Any:
        return await call("create", request)

    @router.post("/query")
    async def query(request: Request) -> Any:
        return await call("query", request)

    @router.post("/refund")
    async def refund(request: Request) -> Any:
        return await call("refund", request)

    return router
