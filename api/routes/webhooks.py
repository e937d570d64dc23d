"""Gateway notifications (webhook -> signal) and browser returns. Each answers in the gateway's
own dialect; the shared work (match, amount check, inbox, signal) lives in services/payment_intake.py."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from api.deps import get_temporal
from api.errors import error_responses
from gateways.base import GatewayResult, InvalidSignature, PaymentGateway, PaymentOutcome
from services.errors import AppError, ErrorCode
from services.payment_intake import Intake, Verdict, take

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)


def _gateway(request: Request, name: str) -> PaymentGateway:
    gateway = request.app.state.gateways.get(name)
    if gateway is None:
        raise AppError(ErrorCode.UNKNOWN_GATEWAY, f"Unknown gateway {name[:32]!r}")
    return gateway


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise AppError(ErrorCode.INVALID_PAYLOAD, "Body is not JSON") from None
    if not isinstance(body, dict):
        raise AppError(ErrorCode.INVALID_PAYLOAD, "Body must be a JSON object")
    return body


def _verify(request: Request, name: str, payload: dict[str, Any], *, browser: bool = False) -> GatewayResult:
    gateway = _gateway(request, name)
    try:
        return gateway.verify_return(payload) if browser else gateway.verify_notification(payload)
    except InvalidSignature as err:
        log.warning("rejected %s notification: %s", name, err)  # never cache or act on it
        raise AppError(ErrorCode.INVALID_SIGNATURE) from None


async def _take(request: Request, result: GatewayResult) -> Intake:
    state = request.app.state
    try:
        client = await get_temporal(request)  # connects on demand if Temporal was down at start
    except AppError:
        client = None  # stored in the inbox; the webhook asks the gateway to send it again
    return await take(state.engine, client, state.settings, result)


def _not_delivered() -> AppError:
    # Gateways send a notification again on 5xx: the retry reaches the order once Temporal is back.
    return AppError(ErrorCode.TEMPORAL_UNAVAILABLE, "Stored; not yet handed to the order, send it again")


@router.post("/webhooks/momo", status_code=204, responses=error_responses(400, 404, 503))
async def momo_ipn(request: Request) -> Response:
    """MoMo's IPN: 204 taken; 5xx asks MoMo to send it again."""
    intake = await _take(request, _verify(request, "momo", await _json_body(request)))
    if intake.verdict is Verdict.UNKNOWN_ORDER:
        raise AppError(ErrorCode.ORDER_NOT_FOUND, "No such payment")
    if intake.verdict is Verdict.AMOUNT_MISMATCH:
        raise AppError(ErrorCode.AMOUNT_MISMATCH)
    if not intake.delivered:
        raise _not_delivered()
    return Response(status_code=204)


# VNPay wants HTTP 200 with its own codes (GATEWAYS.md), whatever happened.
VNPAY_RSP = {
    Verdict.ACCEPTED: ("00", "Confirm Success"),
    Verdict.DUPLICATE: ("02", "Order already confirmed"),
    Verdict.ALREADY_CONFIRMED: ("02", "Order already confirmed"),
    Verdict.UNKNOWN_ORDER: ("01", "Order not found"),
    Verdict.AMOUNT_MISMATCH: ("04", "Invalid amount"),
}


@router.get("/webhooks/vnpay")
async def vnpay_ipn(request: Request) -> JSONResponse:
    """VNPay's IPN: always 200, its own `RspCode` (99: send it again)."""
    try:
        result = _gateway(request, "vnpay").verify_notification(dict(request.query_params))
    except InvalidSignature:
        return JSONResponse({"RspCode": "97", "Message": "Invalid signature"})
    try:
        intake = await _take(request, result)
    except Exception:
        log.exception("vnpay ipn failed")
        return JSONResponse({"RspCode": "99", "Message": "Unknown error"})
    code, message = VNPAY_RSP[intake.verdict] if intake.delivered else ("99", "Unknown error, retry")
    return JSONResponse({"RspCode": code, "Message": message})


@router.post("/webhooks/payos", responses=error_responses(400, 503))
async def payos_webhook(request: Request) -> JSONResponse:
    """PayOS's webhook (one received transfer): 2xx taken, also for orders not ours."""
    transfer = _verify(request, "payos", await _json_body(request))
    # A PayOS webhook reports one received transfer: a money event of its own (its reference, its
    # amount); the intake adds up a link's transfers (services/payment_intake.py).
    intake = await _take(request, transfer)
    if intake.verdict is Verdict.AMOUNT_MISMATCH:
        raise AppError(ErrorCode.AMOUNT_MISMATCH)
    if not intake.delivered:
        raise _not_delivered()
    # PayOS checks the URL with a sample payload when it is registered: unknown orders get 2xx.
    return JSONResponse({"success": True, "verdict": intake.verdict})


@router.get("/payments/{gateway}/return", status_code=303, responses=error_responses(400, 404, 429))
async def browser_return(gateway: str, request: Request) -> RedirectResponse:
    """The shopper's browser comes back from the gateway: verify, hand the verdict on like a
    webhook (it often arrives first), and send the shopper to the frontend with the outcome. A
    return that proves nothing (PayOS signs nothing; a signed one that says "pending") only asks the
    gateway, and only the gateway's answer is taken in."""
    claimed = _verify(request, gateway, dict(request.query_params), browser=True)
    result: GatewayResult | None = claimed
    if claimed.outcome is PaymentOutcome.PENDING:
        result = await request.app.state.gateway_queries.ask(
            request.app.state.engine, _gateway(request, gateway), claimed.gateway_order_id
        )
    intake = await _take(request, result) if result is not None else None
    params = {
        "gateway": gateway,
        "outcome": (result or claimed).outcome.value,
        "orderCode": intake.order_code if intake and intake.order_code else "",
        "orderId": intake.order_id if intake and intake.order_id else "",
    }
    target = request.app.state.settings.frontend_return_url
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode(params)}", status_code=303)
