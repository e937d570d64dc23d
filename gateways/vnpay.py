"""VNPay 2.1.0 adapter: build the signed vpcpay.html URL, verify IPN and return, querydr, refund.

The wire format (hashes, dates, code tables) lives in gateways.vnpay_wire.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from gateways.base import (
    GatewayError,
    GatewayResult,
    InvalidSignature,
    LinkRequest,
    PaymentLink,
    PaymentOutcome,
    RefundResult,
    RefundState,
)
from gateways.fields import int_field, signed_text, str_field
from gateways.http import SEND_ONCE, call_budget, gateway_client, within
from gateways.vnpay_wire import (
    QUERYDR_ANSWER_SIGNED,
    QUERYDR_SIGNED,
    REFUND_ANSWER_SIGNED,
    REFUND_IN_PROGRESS,
    REFUND_REJECTED,
    REFUND_SIGNED,
    REFUND_TYPES,
    VNPAY_TZ,
    VNPAY_VERSION,
    hmac512,
    same_hash,
    vnd_from_x100,
    vnpay_date,
    vnpay_hash_data,
    vnpay_order_info,
    vnpay_outcome,
    vnpay_pipe_hash,
    vnpay_secure_hash,
    vnpay_status_outcome,
)
from infra.settings import Settings

VNPAY_TIMEOUT_SECONDS = 30.0
VNPAY_DEADLINE_SECONDS = 45.0  # one whole call, lookups included (less inside a shorter activity)
# A refund request VNPay definitely turned down: merchant / format / checksum, no such payment, not
# refundable. 94 (a refund of it is in progress, or a duplicate request) and 99 are not verdicts.
REFUND_REFUSALS = frozenset({"02", "03", "91", "95", "97"})
VNPAY_ORDER_TYPE = "other"
VNPAY_SERVER_IP = "127.0.0.1"  # vnp_IpAddr of our server in querydr/refund calls
# Paywindow refunds whole (late) payments: 02 = full refund, 03 = partial.
VNPAY_REFUND_TYPE = "02"
VNPAY_REFUND_CREATED_BY = "paywindow"


class VnpayGateway:
    name = "vnpay"

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = VNPAY_TIMEOUT_SECONDS,
        deadline: float = VNPAY_DEADLINE_SECONDS,
    ) -> None:
        assert settings.vnpay_payment_url and settings.vnpay_api_url  # derived by Settings
        self._payment_url = settings.vnpay_payment_url
        self._api_url = settings.vnpay_api_url
        self._tmn_code = settings.vnpay_tmn_code
        self._secret = settings.vnpay_hash_secret
        self._timeout = timeout
        self._deadline = deadline

    def make_gateway_order_id(self, order_code: int, attempt_no: int) -> str:
        return f"{order_code}-{attempt_no}"

    async def create_link(self, req: LinkRequest) -> PaymentLink:
        # req.ipn_url is not sent: VNPay calls the IPN URL registered for the merchant account.
        params = {
            "vnp_Version": VNPAY_VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self._tmn_code,
            "vnp_Amount": str(req.amount * 100),
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": req.gateway_order_id,
            "vnp_OrderInfo": vnpay_order_info(req.description, f"Thanh toan {req.gateway_order_id}"),
            "vnp_OrderType": VNPAY_ORDER_TYPE,
            "vnp_Locale": "vn" if req.lang == "vi" else "en",
            "vnp_ReturnUrl": req.return_url,
            "vnp_IpAddr": req.client_ip,
            "vnp_CreateDate": vnpay_date(req.created_at),
            "vnp_ExpireDate": vnpay_date(req.expires_at),
        }
        query = vnpay_hash_data(params)
        url = f"{self._payment_url}?{query}&vnp_SecureHash={hmac512(self._secret, query)}"
        return PaymentLink(
            gateway_order_id=req.gateway_order_id, request_id=req.request_id, payment_url=url, raw=params
        )

    def verify_notification(self, payload: Mapping[str, Any]) -> GatewayResult:
        return self._verify(payload)

    def verify_return(self, params: Mapping[str, Any]) -> GatewayResult:
        return self._verify(params)

    def _verify(self, params: Mapping[str, Any]) -> GatewayResult:
        values = {k: str_field(params, k) for k in params if k.startswith("vnp_")}
        if not values.get("vnp_SecureHash"):
            raise InvalidSignature("VNPay: missing vnp_SecureHash")
        if not same_hash(vnpay_secure_hash(values, self._secret), values["vnp_SecureHash"]):
            raise InvalidSignature("VNPay: vnp_SecureHash mismatch")
        if str_field(values, "vnp_TmnCode") != self._tmn_code:
            raise InvalidSignature("VNPay: message for another vnp_TmnCode")
        # Only now, with the hash verified over the raw values, turn x100 into VND.
        amount = vnd_from_x100(int_field(values, "vnp_Amount"))
        code = str_field(values, "vnp_ResponseCode")
        status = str_field(values, "vnp_TransactionStatus")
        transaction_no = values.get("vnp_TransactionNo", "")
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=str_field(values, "vnp_TxnRef"),
            outcome=vnpay_outcome(code, status),
            result_code=f"{code}/{status}",
            amount=amount,
            transaction_id=transaction_no if transaction_no not in ("", "0") else None,
            raw=values,
        )

    async def query(self, gateway_order_id: str, *, created_at: datetime) -> GatewayResult:
        async with within(call_budget(self._deadline)):
            answer = await self._querydr(gateway_order_id, created_at)
        code = str(answer.get("vnp_ResponseCode", ""))
        if code == "91":
            return GatewayResult(
                gateway=self.name,
                gateway_order_id=gateway_order_id,
                outcome=PaymentOutcome.NOT_FOUND,
                result_code=code,
                amount=None,
                raw=answer,
            )
        if code != "00":
            raise GatewayError(f"VNPay querydr refused: {code} {answer.get('vnp_Message', '')}")
        status = signed_text(answer.get("vnp_TransactionStatus"))
        transaction_no = signed_text(answer.get("vnp_TransactionNo"))
        try:
            amount = vnd_from_x100(int_field(answer, "vnp_Amount"))
        except InvalidSignature as exc:
            raise GatewayError(f"VNPay querydr answer without a usable amount: {answer!r}") from exc
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=gateway_order_id,
            outcome=vnpay_status_outcome(status),
            result_code=f"{code}/{status}",
            amount=amount,
            transaction_id=transaction_no if transaction_no not in ("", "0") else None,
            message=signed_text(answer.get("vnp_Message")),
            raw=answer,
        )

    async def _querydr(self, gateway_order_id: str, created_at: datetime) -> dict[str, Any]:
        body = self._api_body("querydr", gateway_order_id, created_at)
        body["vnp_SecureHash"] = vnpay_pipe_hash(body, QUERYDR_SIGNED, self._secret)
        return await self._post(body, QUERYDR_ANSWER_SIGNED)

    async def cancel(self, gateway_order_id: str, reason: str) -> bool:
        return False  # no cancel API: the link lapses at vnp_ExpireDate

    async def refund(
        self,
        *,
        gateway_order_id: str,
        transaction_id: str,
        amount: int,
        idempotency_key: str,
        description: str,
        paid_at: datetime | None = None,
        created_at: datetime | None = None,
    ) -> RefundResult:
        # vnp_TransactionDate is the payment's vnp_CreateDate; paid_at is the fallback.
        transaction_date = created_at or paid_at
        if transaction_date is None:
            raise ValueError("VNPay refund needs the link's created_at (or paid_at)")
        # vnp_RequestId is a request's id (VNPay takes each once), not the refund's: the refund is
        # made once by looking first (querydr) and by VNPay's 94 while a refund of it is in progress.
        body = self._api_body("refund", gateway_order_id, transaction_date, order_info=description)
        body.update(
            vnp_TransactionType=VNPAY_REFUND_TYPE,
            vnp_Amount=str(amount * 100),
            vnp_TransactionNo=transaction_id or "0",
            vnp_CreateBy=VNPAY_REFUND_CREATED_BY,
        )
        body["vnp_SecureHash"] = vnpay_pipe_hash(body, REFUND_SIGNED, self._secret)
        try:
            async with within(call_budget(self._deadline)):
                before = await self.find_refund(gateway_order_id, transaction_date)
                if before.state is not RefundState.NONE:  # done, rejected, in progress or unknown
                    return before
                try:
                    answer = await self._post(body, REFUND_ANSWER_SIGNED, send_once=True)
                    code: str | None = str(answer.get("vnp_ResponseCode", ""))
                except GatewayError as lost:
                    answer, code = {"error": repr(lost)}, None
                after = await self.find_refund(gateway_order_id, transaction_date)  # ask before concluding
        except GatewayError as err:
            return RefundResult(
                state=RefundState.UNKNOWN, refund_id=None, result_code="no answer", message=str(err)
            )
        if after.state is not RefundState.NONE:
            return after
        said = code if code is not None else "no answer"
        message = signed_text(answer.get("vnp_Message")) or str(answer.get("error") or "")
        if code in REFUND_REFUSALS:
            return RefundResult(
                state=RefundState.REFUSED, refund_id=None, result_code=said, message=message, raw=answer
            )
        # 00 that querydr does not show yet, 94, 99, an unknown code, no answer: ask again later.
        return RefundResult(
            state=RefundState.UNKNOWN, refund_id=None, result_code=said, message=message, raw=answer
        )

    async def find_refund(self, gateway_order_id: str, created_at: datetime) -> RefundResult:
        """The payment's refund as querydr shows it: type 02/03 REFUNDED, status 05/06 UNKNOWN (in
        progress), 09 REFUSED (rejected), none NONE; no answer UNKNOWN."""
        try:
            answer = await self._querydr(gateway_order_id, created_at)
        except GatewayError as err:
            return RefundResult(
                state=RefundState.UNKNOWN, refund_id=None, result_code="no answer", message=f"querydr: {err}"
            )
        code = str(answer.get("vnp_ResponseCode", ""))
        if code == "91":  # no such payment: nothing was refunded (the refund request says why)
            return RefundResult(
                state=RefundState.NONE,
                refund_id=None,
                result_code=code,
                message="querydr: no such payment",
                raw=answer,
            )
        if code != "00":
            return RefundResult(
                state=RefundState.UNKNOWN,
                refund_id=None,
                result_code=code,
                message=f"querydr answered {code}",
                raw=answer,
            )
        kind = signed_text(answer.get("vnp_TransactionType"))
        status = signed_text(answer.get("vnp_TransactionStatus"))
        said = f"{code}/{kind}/{status}"
        if kind in REFUND_TYPES:
            refund_no = signed_text(answer.get("vnp_TransactionNo")) or None
            return RefundResult(
                state=RefundState.REFUNDED,
                refund_id=refund_no,
                result_code=said,
                message="refund shown by querydr",
                raw=answer,
            )
        if status in REFUND_IN_PROGRESS:
            return RefundResult(
                state=RefundState.UNKNOWN,
                refund_id=None,
                result_code=said,
                message="refund in progress at VNPay",
                raw=answer,
            )
        if status == REFUND_REJECTED:
            return RefundResult(
                state=RefundState.REFUSED,
                refund_id=None,
                result_code=said,
                message="refund rejected by VNPay",
                raw=answer,
            )
        return RefundResult(
            state=RefundState.NONE, refund_id=None, result_code=said, message="no refund shown", raw=answer
        )

    def _api_body(
        self, command: str, txn_ref: str, transaction_date: datetime, order_info: str = ""
    ) -> dict[str, Any]:
        return {
            "vnp_RequestId": uuid.uuid4().hex,
            "vnp_Version": VNPAY_VERSION,
            "vnp_Command": command,
            "vnp_TmnCode": self._tmn_code,
            "vnp_TxnRef": txn_ref,
            "vnp_OrderInfo": vnpay_order_info(order_info, f"{command} {txn_ref}"),
            "vnp_TransactionDate": vnpay_date(transaction_date),
            "vnp_CreateDate": vnpay_date(datetime.now(VNPAY_TZ)),
            "vnp_IpAddr": VNPAY_SERVER_IP,
        }

    async def _post(
        self, body: dict[str, Any], answer_fields: Sequence[str], *, send_once: bool = False
    ) -> dict[str, Any]:
        try:
            response = await gateway_client("vnpay").post(
                self._api_url, json=body, timeout=self._timeout, extensions=SEND_ONCE if send_once else None
            )
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise GatewayError(f"VNPay {body['vnp_Command']}: {exc!r}") from exc
        if not isinstance(answer, dict) or "vnp_ResponseCode" not in answer:
            raise GatewayError(
                f"VNPay {body['vnp_Command']}: HTTP {response.status_code}, no vnp_ResponseCode"
            )
        received = answer.get("vnp_SecureHash")
        # We act on 00 (must be signed) and 91 (checked when signed); other codes only refuse.
        code = answer["vnp_ResponseCode"]
        if code == "00" or (code == "91" and received):
            signed = {**answer, "vnp_TmnCode": self._tmn_code}
            if not same_hash(vnpay_pipe_hash(signed, answer_fields, self._secret), received):
                raise GatewayError(f"VNPay {body['vnp_Command']}: answer checksum mismatch")
        return answer
