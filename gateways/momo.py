"""MoMo API v2 (captureWallet): create a payUrl, verify IPN and browser return, query, refund.

Signatures are hex(HMAC-SHA256(secretKey, "k1=v1&k2=v2...")) over the documented field lists,
values raw (not URL-encoded) and UTF-8 encoded. See shared/GATEWAYS.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
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
from infra.settings import Settings

MOMO_TIMEOUT_SECONDS = 30.0  # MoMo asks clients to wait at least 30 s for create
MOMO_DEADLINE_SECONDS = 45.0  # one whole call, lookups included (less inside a shorter activity)
# A create whose answer was lost leaves a link at MoMo whose payUrl nobody saw and MoMo's query does
# not return: it cannot be adopted, so the attempt moves on to a fresh orderId (docs/GATEWAYS.md).
MOMO_MOVES = 3
MOMO_REQUEST_TYPE = "captureWallet"
MOMO_PARTNER_NAME = "Paywindow"
# We always create with autoCapture=true, so 9000 (authorized) can only mean captured.
MOMO_AUTO_CAPTURE = True
# Unconfirmed: the field that bounds a one-time payUrl's lifetime ("orderExpireTime", minutes,
# only seen in community clients). None = do not send it; our own window is the authority.
MOMO_EXPIRE_FIELD: str | None = None

CREATE_SIGNED = (
    "accessKey", "amount", "extraData", "ipnUrl", "orderId", "orderInfo",
    "partnerCode", "redirectUrl", "requestId", "requestType",
)  # fmt: skip  # a table: the signed fields, in the order the gateway signs them
NOTIFY_SIGNED = (
    "accessKey", "amount", "extraData", "message", "orderId", "orderInfo", "orderType",
    "partnerCode", "payType", "requestId", "responseTime", "resultCode", "transId",
)  # fmt: skip  # a table: the signed fields, in the order the gateway signs them
QUERY_SIGNED = ("accessKey", "orderId", "partnerCode", "requestId")
# Unconfirmed field list (GATEWAYS.md): change here only.
REFUND_SIGNED = ("accessKey", "amount", "description", "orderId", "partnerCode", "requestId", "transId")

NOT_A_VERDICT = (40, 41, 43, 99)
# A refund request MoMo definitely turned down (bad request, no such payment, more than was paid).
REFUND_REFUSALS = frozenset({11, 12, 13, 20, 21, 22, 42, 1080, 1081})
# Link states in which a create's lost answer left nothing anyone can pay: the attempt may move on.
MOVABLE = frozenset(
    {PaymentOutcome.PENDING, PaymentOutcome.EXPIRED, PaymentOutcome.CANCELLED, PaymentOutcome.FAILED}
)

ORDER_ID_RE = re.compile(r"^[0-9a-zA-Z]([-_.]*[0-9a-zA-Z]+)*$")

_OUTCOMES: dict[int, PaymentOutcome] = {
    0: PaymentOutcome.SUCCESS,
    9000: PaymentOutcome.SUCCESS if MOMO_AUTO_CAPTURE else PaymentOutcome.PENDING,
    # 1000 "initiated, waiting for the user" is every unpaid link, abandoned ones too: pending.
    # Processing / confirming means the shopper is paying right now: in flight (GATEWAYS.md).
    1000: PaymentOutcome.PENDING,
    **dict.fromkeys((7000, 7002, 8000), PaymentOutcome.PROCESSING),
    **dict.fromkeys((1001, 1002, 1004, 1007, 1026), PaymentOutcome.FAILED),
    **dict.fromkeys((1003, 1006, 1017), PaymentOutcome.CANCELLED),
    1005: PaymentOutcome.EXPIRED,
    **dict.fromkeys((10, 11, 12, 13, 20, 21, 22, 42, 47, 98), PaymentOutcome.FAILED),
    # Duplicate ids (40 requestId, 41 orderId, 43 a request for this order in progress) and 99
    # "unknown error" say nothing about the money: not a verdict, ask again (docs/GATEWAYS.md).
    **dict.fromkeys(NOT_A_VERDICT, PaymentOutcome.UNKNOWN),
}
# A query answer with these codes describes our request, not the payment: retry instead.
QUERY_REQUEST_ERRORS = frozenset({10, 11, 12, 13, 20, 21, 22, 40, 41, 43, 47, 98})
QUERY_NOT_FOUND = 42  # "orderId invalid or not found"


def momo_raw_signature(fields: Sequence[str], values: Mapping[str, Any]) -> str:
    """The canonical `k=v&k=v` string MoMo signs, in the documented (alphabetical) field order."""
    return "&".join(f"{name}={signed_text(values.get(name))}" for name in fields)


def momo_signature(secret_key: str, fields: Sequence[str], values: Mapping[str, Any]) -> str:
    raw = momo_raw_signature(fields, values)
    return hmac.new(secret_key.encode(), raw.encode("utf-8"), hashlib.sha256).hexdigest()


def momo_outcome(result_code: int) -> PaymentOutcome:
    """GATEWAYS.md's table; an unknown code is treated like 99: not a verdict (ask again)."""
    return _OUTCOMES.get(result_code, PaymentOutcome.UNKNOWN)


def momo_text(text: str, max_len: int = 255) -> str:
    """orderInfo/description: `&` would make the signed string ambiguous, so it never goes in."""
    return " ".join(text.replace("&", " ").split())[:max_len]


def momo_safe_id(key: str, max_len: int = 50) -> str:
    """An id valid as MoMo orderId/requestId, derived deterministically from `key`."""
    if len(key) <= max_len and ORDER_ID_RE.match(key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class MomoGateway:
    name = "momo"

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = MOMO_TIMEOUT_SECONDS,
        deadline: float = MOMO_DEADLINE_SECONDS,
    ) -> None:
        assert settings.momo_endpoint is not None  # derived by Settings
        self._endpoint = settings.momo_endpoint.rstrip("/")
        self._partner_code = settings.momo_partner_code
        self._access_key = settings.momo_access_key
        self._secret_key = settings.momo_secret_key
        self._timeout = timeout
        self._deadline = deadline

    def make_gateway_order_id(self, order_code: int, attempt_no: int) -> str:
        return f"{order_code}-{attempt_no}"

    def _sign(self, fields: Sequence[str], body: Mapping[str, Any]) -> str:
        return momo_signature(self._secret_key, fields, {**body, "accessKey": self._access_key})

    async def create_link(self, req: LinkRequest) -> PaymentLink:
        async with within(call_budget(self._deadline)):
            for move in range(MOMO_MOVES + 1):
                suffix = f"-m{move}" if move else ""
                link = await self._create(req, req.gateway_order_id + suffix, req.request_id + suffix)
                if link is not None:
                    return link
        raise GatewayError(f"MoMo create: {MOMO_MOVES} fresh orderIds taken by lost answers; ask again")

    async def _create(self, req: LinkRequest, order_id: str, request_id: str) -> PaymentLink | None:
        """The link, or None when this orderId holds a link made by a send whose answer was lost."""
        body: dict[str, Any] = {
            "partnerCode": self._partner_code,
            "partnerName": MOMO_PARTNER_NAME,
            "storeId": self._partner_code,
            "requestId": request_id,
            "amount": req.amount,
            "orderId": order_id,
            "orderInfo": momo_text(req.description) or req.gateway_order_id,
            "redirectUrl": req.return_url,
            "ipnUrl": req.ipn_url,
            "requestType": MOMO_REQUEST_TYPE,
            "extraData": "",
            "lang": req.lang if req.lang in ("vi", "en") else "vi",
            "autoCapture": MOMO_AUTO_CAPTURE,
        }
        if MOMO_EXPIRE_FIELD:
            minutes = int((req.expires_at - req.created_at).total_seconds() // 60)
            body[MOMO_EXPIRE_FIELD] = max(1, minutes)
        body["signature"] = self._sign(CREATE_SIGNED, body)
        try:
            answer = await self._post("/v2/gateway/api/create", body)
        except GatewayError as lost:
            answer, code, why = {}, None, repr(lost)
        else:
            code, why = (
                answer.get("resultCode"),
                f"resultCode={answer.get('resultCode')} {answer.get('message', '')}",
            )
            if code == 0 and isinstance(answer.get("payUrl"), str):
                return PaymentLink(
                    gateway_order_id=order_id, request_id=request_id, payment_url=answer["payUrl"], raw=answer
                )
            if code not in NOT_A_VERDICT and code in _OUTCOMES:
                raise GatewayError(f"MoMo create refused: {why}")
        # No answer, or not a verdict (41: that orderId is taken, by our own earlier send): look it up.
        found = await self._query_answer(order_id)
        found_code = _result_code(found)
        if found_code == QUERY_NOT_FOUND:
            raise GatewayError(
                f"MoMo create gave no link ({why}) and MoMo has no order {order_id}: ask again"
            )
        outcome = momo_outcome(found_code)
        if outcome not in MOVABLE:  # money may be moving on it: never walk away from it
            raise GatewayError(f"MoMo create: {order_id} exists ({found_code}) but its payUrl is unknown")
        return None

    def verify_notification(self, payload: Mapping[str, Any]) -> GatewayResult:
        return self._verify(payload)

    def verify_return(self, params: Mapping[str, Any]) -> GatewayResult:
        # The redirect carries the IPN fields as query parameters, signed the same way.
        return self._verify(params)

    def _verify(self, payload: Mapping[str, Any]) -> GatewayResult:
        signature = payload.get("signature")
        if not isinstance(signature, str) or not signature:
            raise InvalidSignature("MoMo: missing signature")
        # accessKey is ours, never in the message; an absent field signs like an empty one
        # (query-string parsers may drop `extraData=`), so leniency here forges nothing.
        fields = {name: payload.get(name, "") for name in NOTIFY_SIGNED[1:]}
        for name in fields:
            str_field(fields, name)
        expected = self._sign(NOTIFY_SIGNED, fields)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise InvalidSignature("MoMo: signature mismatch")
        if fields["partnerCode"] != self._partner_code:
            raise InvalidSignature("MoMo: notification for another partnerCode")
        code = int_field(fields, "resultCode")
        trans_id = str_field(fields, "transId")
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=str_field(fields, "orderId"),
            outcome=momo_outcome(code),
            result_code=str(code),
            amount=int_field(fields, "amount"),
            transaction_id=trans_id if trans_id not in ("", "0") else None,
            message=str_field(fields, "message"),
            raw=dict(payload),
        )

    async def query(self, gateway_order_id: str, *, created_at: datetime) -> GatewayResult:
        async with within(call_budget(self._deadline)):
            answer = await self._query_answer(gateway_order_id)
        code = _result_code(answer)
        if code in QUERY_REQUEST_ERRORS:
            raise GatewayError(f"MoMo query refused: resultCode={code} {answer.get('message', '')}")
        outcome = PaymentOutcome.NOT_FOUND if code == QUERY_NOT_FOUND else momo_outcome(code)
        amount = answer.get("amount")
        trans_id = answer.get("transId")
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=gateway_order_id,
            outcome=outcome,
            result_code=str(code),
            amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
            transaction_id=str(trans_id) if trans_id not in (None, "", 0, "0") else None,
            message=str(answer.get("message", "")),
            raw=answer,
        )

    async def _query_answer(self, order_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "partnerCode": self._partner_code,
            "requestId": uuid.uuid4().hex,
            "orderId": order_id,
            "lang": "vi",
        }
        body["signature"] = self._sign(QUERY_SIGNED, body)
        return await self._post("/v2/gateway/api/query", body)

    async def cancel(self, gateway_order_id: str, reason: str) -> bool:
        return False  # MoMo has no cancel for an unpaid payUrl; the link lapses

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
        if not transaction_id.isdigit():
            raise ValueError(f"MoMo transId must be numeric, got {transaction_id!r}")
        refund_id = momo_safe_id(idempotency_key)
        body: dict[str, Any] = {
            "partnerCode": self._partner_code,
            "orderId": refund_id,  # a refund is a new MoMo order: taken once, like any orderId
            "requestId": refund_id,
            "amount": amount,
            "transId": int(transaction_id),
            "lang": "vi",
            "description": momo_text(description),
        }
        body["signature"] = self._sign(REFUND_SIGNED, body)
        try:
            async with within(call_budget(self._deadline)):
                before = await self.find_refund(gateway_order_id, refund_id)
                if before.state is not RefundState.NONE:  # done (never ask twice) or unknown (ask later)
                    return before
                try:
                    answer = await self._post("/v2/gateway/api/refund", body, send_once=True)
                    code: int | None = _result_code(answer)
                except GatewayError as lost:
                    answer, code = {"error": repr(lost)}, None
                if code == 0:
                    return RefundResult(
                        state=RefundState.REFUNDED,
                        refund_id=str(answer.get("transId")),
                        result_code="0",
                        message=str(answer.get("message", "")),
                        raw=answer,
                    )
                after = await self.find_refund(gateway_order_id, refund_id)  # ask before concluding
        except GatewayError as err:
            return RefundResult(
                state=RefundState.UNKNOWN, refund_id=None, result_code="no answer", message=str(err)
            )
        if after.state is RefundState.REFUNDED:
            return after
        said = str(code) if code is not None else "no answer"
        message = str(answer.get("message") or answer.get("error") or "")
        if code in REFUND_REFUSALS and after.state is RefundState.NONE:
            return RefundResult(
                state=RefundState.REFUSED, refund_id=None, result_code=said, message=message, raw=answer
            )
        return RefundResult(
            state=RefundState.UNKNOWN,
            refund_id=None,
            result_code=said,
            message=f"{message} ({after.message})".strip(),
            raw=answer,
        )

    async def find_refund(self, gateway_order_id: str, refund_id: str) -> RefundResult:
        """The payment's refunds as MoMo lists them (query's `refundTrans`): ours (`refund_id`) done,
        or the payment refunded in full under other ids, is REFUNDED; none, NONE; no answer, UNKNOWN."""
        try:
            answer = await self._query_answer(gateway_order_id)
            code = _result_code(answer)
        except GatewayError as err:
            return RefundResult(
                state=RefundState.UNKNOWN, refund_id=None, result_code="no answer", message=f"query: {err}"
            )
        if code in QUERY_REQUEST_ERRORS or (
            code != QUERY_NOT_FOUND and momo_outcome(code) is PaymentOutcome.UNKNOWN
        ):
            return RefundResult(
                state=RefundState.UNKNOWN,
                refund_id=None,
                result_code=str(code),
                message=f"query answered {code}",
                raw=answer,
            )
        listed = [t for t in answer.get("refundTrans") or [] if isinstance(t, dict)]
        mine = [t for t in listed if t.get("orderId") == refund_id]
        if any(t.get("resultCode") == 0 for t in mine):
            done = next(t for t in mine if t.get("resultCode") == 0)
            return RefundResult(
                state=RefundState.REFUNDED,
                refund_id=str(done.get("transId")),
                result_code="0",
                message="refund listed by MoMo",
                raw=answer,
            )
        if mine:  # listed, not done: MoMo is still on it
            return RefundResult(
                state=RefundState.UNKNOWN,
                refund_id=None,
                result_code=str(mine[-1].get("resultCode")),
                message="refund listed, not done",
                raw=answer,
            )
        returned = sum(t.get("amount") or 0 for t in listed if t.get("resultCode") == 0)
        paid = answer.get("amount")
        if returned and isinstance(paid, int) and returned >= paid:
            return RefundResult(
                state=RefundState.REFUNDED,
                refund_id=None,
                result_code="0",
                message="refunded in full under other ids",
                raw=answer,
            )
        return RefundResult(
            state=RefundState.NONE,
            refund_id=None,
            result_code=str(code),
            message="no refund listed",
            raw=answer,
        )

    async def _post(self, path: str, body: dict[str, Any], *, send_once: bool = False) -> dict[str, Any]:
        try:
            response = await gateway_client("momo").post(
                self._endpoint + path,
                json=body,
                timeout=self._timeout,
                extensions=SEND_ONCE if send_once else None,
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"MoMo {path}: {exc!r}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        # MoMo answers protocol errors with a resultCode, sometimes under a 4xx status.
        if not isinstance(answer, dict) or "resultCode" not in answer:
            raise GatewayError(f"MoMo {path}: HTTP {response.status_code} without a resultCode")
        return answer


def _result_code(answer: Mapping[str, Any]) -> int:
    try:
        return int_field(answer, "resultCode")
    except InvalidSignature as exc:
        raise GatewayError(f"MoMo answer without a usable resultCode: {answer!r}") from exc
