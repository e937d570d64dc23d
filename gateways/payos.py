"""PayOS (VietQR bank transfer): create/get/cancel through the official `payos` SDK,
webhook verification over the raw dict (the SDK's models forbid unknown fields).

signature = hex(HMAC-SHA256(checksumKey, sorted `key=value` joined by `&`)); values raw,
null/"null"/"undefined" -> "", lists as compact JSON with sorted keys. See shared/GATEWAYS.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx
import payos
import pydantic
from payos.types import CreatePaymentLinkRequest, ItemData

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
from gateways.fields import int_field, plain_ascii, str_field
from gateways.http import call_budget, gateway_client, within
from infra.settings import Settings

PAYOS_TIMEOUT_SECONDS = 30.0
PAYOS_DEADLINE_SECONDS = 45.0  # one whole call, lookups included (less inside a shorter activity)
# The hosted checkout page of a link, from its paymentLinkId: how a link made by a send whose answer
# was lost is adopted (PayOS's GET gives the id, not the URL). The sandbox serves the same shape.
PAYOS_CHECKOUT_URL = "https://pay.payos.vn/web/{id}"
SANDBOX_API_PATH, SANDBOX_CHECKOUT_PATH = "/sandbox/payos/", "/sandbox/pay/payos/"
# A link found under our orderCode that a shopper can still pay, or has paid: adopted, never moved.
ADOPTABLE = frozenset({"PENDING", "PROCESSING", "UNDERPAID", "PAID"})
ATTEMPTS_PER_ORDER = 100  # orderCode = order_code * 100 + attempt_no
ORDER_CODE_EXISTS = "231"
# A link whose creating try died before we stored it (worker killed) keeps its orderCode taken at
# PayOS, though nobody ever saw its URL. The retry cancels that orphan and moves the attempt on by
# this step (attempt 1 -> orderCode ...11 -> ...21), which stays clear of every other attempt.
MOVE_STEP = 10
# Unconfirmed per account: 9 characters for bank accounts not linked through payOS, 25 otherwise.
PAYOS_DESCRIPTION_MAX = 9
PAYOS_NOT_FOUND_CODES = frozenset({"101"})  # unconfirmed: "payment link not found"
PAYMENT_REQUEST_SIGNED = ("amount", "cancelUrl", "description", "orderCode", "returnUrl")

_STATUS_OUTCOMES: dict[str, PaymentOutcome] = {
    "PAID": PaymentOutcome.SUCCESS,
    "PENDING": PaymentOutcome.PENDING,
    "PROCESSING": PaymentOutcome.PROCESSING,
    "CANCELLED": PaymentOutcome.CANCELLED,
    "EXPIRED": PaymentOutcome.EXPIRED,
    "FAILED": PaymentOutcome.FAILED,
    # Money arrived, but not all of it: never pays; `amount` (= amountPaid) goes to review.
    "UNDERPAID": PaymentOutcome.UNDERPAID,
}
T = TypeVar("T")
log = logging.getLogger(__name__)


def _signed_value(value: Any) -> str:
    if value is None or (isinstance(value, str) and value in ("null", "undefined")):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def payos_signed_string(data: Mapping[str, Any]) -> str:
    return "&".join(f"{key}={_signed_value(data[key])}" for key in sorted(data))


def payos_signature(data: Mapping[str, Any], key: str) -> str:
    """Signature of a webhook's / answer's `data` object."""
    return hmac.new(key.encode(), payos_signed_string(data).encode("utf-8"), hashlib.sha256).hexdigest()


def payos_payment_request_signature(body: Mapping[str, Any], key: str) -> str:
    """Create signature: only amount, cancelUrl, description, orderCode, returnUrl, in that order."""
    raw = "&".join(f"{name}={_signed_value(body.get(name))}" for name in PAYMENT_REQUEST_SIGNED)
    return hmac.new(key.encode(), raw.encode("utf-8"), hashlib.sha256).hexdigest()


def payos_outcome(status: str) -> PaymentOutcome:
    """An unknown status is not a verdict."""
    return _STATUS_OUTCOMES.get(status, PaymentOutcome.UNKNOWN)


def payos_description(text: str) -> str:
    return plain_ascii(text, max_len=PAYOS_DESCRIPTION_MAX).strip() or "Paywindow"[:PAYOS_DESCRIPTION_MAX]


class PayOSRefused(GatewayError):
    """PayOS answered, with a code other than "00" (e.g. 231 orderCode exists)."""

    def __init__(self, code: str, status_code: int | None, message: str) -> None:
        super().__init__(f"PayOS refused: code={code} {message}")
        self.code = code
        self.status_code = status_code


class PayOSGateway:
    name = "payos"

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = PAYOS_TIMEOUT_SECONDS,
        deadline: float = PAYOS_DEADLINE_SECONDS,
    ) -> None:
        assert settings.payos_base_url is not None  # derived by Settings
        # The SDK joins paths with urljoin: without a trailing slash a path prefix
        # such as /sandbox/payos would be dropped.
        self._base_url = settings.payos_base_url.rstrip("/") + "/"
        self._client_id = settings.payos_client_id
        self._api_key = settings.payos_api_key
        self._checksum_key = settings.payos_checksum_key
        self._timeout = timeout
        self._deadline = deadline

    def make_gateway_order_id(self, order_code: int, attempt_no: int) -> str:
        if not 0 <= attempt_no < ATTEMPTS_PER_ORDER:
            raise ValueError(f"PayOS orderCode packs at most {ATTEMPTS_PER_ORDER} attempts")
        return str(order_code * ATTEMPTS_PER_ORDER + attempt_no)

    async def _call(self, action: Callable[[payos.AsyncPayOS], Awaitable[T]]) -> T:
        try:
            sdk = payos.AsyncPayOS(
                self._client_id,
                self._api_key,
                self._checksum_key,
                base_url=self._base_url,
                timeout=self._timeout,
                max_retries=0,  # retries belong to the caller (Temporal activities)
                http_client=gateway_client(
                    "payos"
                ),  # kept alive; the SDK does not close a client it was given
            )
            return await action(sdk)
        except payos.APIError as exc:
            if exc.status_code is not None and exc.status_code >= 500:
                raise GatewayError(f"PayOS HTTP {exc.status_code}: {exc}") from exc
            raise PayOSRefused(exc.error_code or str(exc.status_code), exc.status_code, str(exc)) from exc
        except (payos.PayOSError, pydantic.ValidationError, httpx.HTTPError) as exc:
            raise GatewayError(f"PayOS: {exc!r}") from exc

    async def create_link(self, req: LinkRequest) -> PaymentLink:
        async with within(call_budget(self._deadline)):
            return await self._create_or_adopt(req)

    async def _create_or_adopt(self, req: LinkRequest) -> PaymentLink:
        order_code = int(req.gateway_order_id)
        movable = order_code % ATTEMPTS_PER_ORDER < MOVE_STEP  # attempts 0-9 only, or moves would collide
        while True:
            try:
                return await self._create_link(req, order_code)
            except PayOSRefused as exc:
                if exc.code != ORDER_CODE_EXISTS:
                    raise
                lost: GatewayError = exc
            except GatewayError as exc:  # no answer: the link may have been made all the same
                lost = exc
            # 231 (the orderCode is taken: by our own earlier send) or no answer: look it up.
            found = await self._existing(order_code)
            if found is not None and found.status in ADOPTABLE and found.amount == req.amount:
                return PaymentLink(
                    gateway_order_id=str(order_code),
                    request_id=req.request_id,
                    payment_url=self._checkout_url(found.id),
                    raw=found.model_dump(by_alias=True),
                )
            if found is None:
                raise GatewayError(
                    f"PayOS create gave no link ({lost}) and PayOS has no {order_code}: ask again"
                )
            # Taken by a link nobody can pay any more (cancelled, expired) or made for another amount.
            last_slot = order_code % ATTEMPTS_PER_ORDER + MOVE_STEP >= ATTEMPTS_PER_ORDER
            if not movable or last_slot:
                raise GatewayError(
                    f"PayOS orderCode {order_code} is taken ({found.status}) and cannot move on"
                )
            if not await self.cancel(str(order_code), "superseded: made by a lost try"):
                log.error("PayOS orderCode %s exists and could not be cancelled: query it", order_code)
            order_code += MOVE_STEP

    async def _existing(self, order_code: int) -> Any:
        """The link under `order_code` (the SDK's model), or None when PayOS has none."""
        try:
            return await self._call(lambda sdk: sdk.payment_requests.get(order_code))
        except PayOSRefused as exc:
            if exc.code in PAYOS_NOT_FOUND_CODES or exc.status_code == 404:
                return None
            raise GatewayError(f"PayOS lookup of {order_code}: {exc}") from exc

    def _checkout_url(self, payment_link_id: str) -> str:
        if self._base_url.endswith(SANDBOX_API_PATH):
            return self._base_url.removesuffix(SANDBOX_API_PATH) + SANDBOX_CHECKOUT_PATH + payment_link_id
        return PAYOS_CHECKOUT_URL.format(id=payment_link_id)

    async def _create_link(self, req: LinkRequest, order_code: int) -> PaymentLink:
        request = CreatePaymentLinkRequest(
            order_code=order_code,
            amount=req.amount,
            description=payos_description(req.description),
            cancel_url=req.return_url,  # one return page; `cancel`/`status` tell the cases apart
            return_url=req.return_url,
            expired_at=int(req.expires_at.timestamp()),
            items=[ItemData(name=i.name, quantity=i.quantity, price=i.price) for i in req.items] or None,
        )
        created = await self._call(lambda sdk: sdk.payment_requests.create(request))
        raw = created.model_dump(by_alias=True)
        return PaymentLink(
            gateway_order_id=str(order_code),
            request_id=req.request_id,
            payment_url=created.checkout_url,
            raw=raw,
        )

    def verify_notification(self, payload: Mapping[str, Any]) -> GatewayResult:
        data, signature = payload.get("data"), payload.get("signature")
        if not isinstance(data, Mapping) or not isinstance(signature, str) or not signature:
            raise InvalidSignature("PayOS: webhook without data or signature")
        expected = payos_signature(data, self._checksum_key)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise InvalidSignature("PayOS: signature mismatch")
        code = str_field(data, "code")
        reference = data.get("reference")
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=str(int_field(data, "orderCode")),
            # A webhook only reports a received transfer; anything but "00" says: ask the link.
            outcome=PaymentOutcome.SUCCESS if code == "00" else PaymentOutcome.PENDING,
            result_code=code,
            amount=int_field(data, "amount"),
            transaction_id=reference if isinstance(reference, str) and reference else None,
            message=str(data.get("desc") or ""),
            raw=dict(payload),
        )

    def verify_return(self, params: Mapping[str, Any]) -> GatewayResult:
        """PayOS signs nothing on the return URL: the status there is a hint, never a result.

        The outcome is always PENDING; `result_code` carries the claimed status. Call `query`.
        """
        order_code = int_field(params, "orderCode")
        status = params.get("status")
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=str(order_code),
            outcome=PaymentOutcome.PENDING,
            result_code=status if isinstance(status, str) else "",
            amount=None,
            transaction_id=None,
            message="unsigned PayOS return: query the payment link",
            raw=dict(params),
        )

    async def query(self, gateway_order_id: str, *, created_at: datetime) -> GatewayResult:
        try:
            async with within(call_budget(self._deadline)):
                link = await self._call(lambda sdk: sdk.payment_requests.get(int(gateway_order_id)))
        except PayOSRefused as exc:
            if exc.code in PAYOS_NOT_FOUND_CODES or exc.status_code == 404:
                return GatewayResult(
                    gateway=self.name,
                    gateway_order_id=gateway_order_id,
                    outcome=PaymentOutcome.NOT_FOUND,
                    result_code=exc.code,
                    amount=None,
                )
            raise
        paid = link.status in ("PAID", "UNDERPAID")
        return GatewayResult(
            gateway=self.name,
            gateway_order_id=gateway_order_id,
            outcome=payos_outcome(link.status),
            result_code=link.status,
            amount=link.amount_paid if paid else link.amount,
            transaction_id=link.transactions[-1].reference if link.transactions else None,
            raw=link.model_dump(by_alias=True),
        )

    async def cancel(self, gateway_order_id: str, reason: str) -> bool:
        """True once the link is CANCELLED; False when PayOS refuses (e.g. already paid): query it."""
        try:
            async with within(call_budget(self._deadline)):
                link = await self._call(
                    lambda sdk: sdk.payment_requests.cancel(int(gateway_order_id), reason or None)
                )
        except PayOSRefused:
            return False
        return link.status == "CANCELLED"

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
        # PayOS has no refund API for received transfers: someone sends the money back by hand.
        return RefundResult(
            state=RefundState.REFUSED,
            refund_id=None,
            result_code="UNSUPPORTED",
            message="PayOS has no refund API: refund by bank transfer manually",
        )
