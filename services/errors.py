"""Every error code the API answers with, in one place: its HTTP status and default message.

Services and routes raise by code (`raise AppError(ErrorCode.ORDER_NOT_FOUND)`, or with a message
that says more); api/errors.py turns an AppError into the `{success: false, message, error}`
envelope. The workflow's refusals (`ApplicationError(type=CODE)`) and the checkout's rejections
come back through `ErrorCode.from_workflow`. docs/API.md lists this table (`python -m api.docs`), and
tests/test_errors.py fails when a code is used that is not here, or is here and used nowhere.

No HTTP framework is imported: a status is a plain int, so a CLI or another transport can read it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class ErrorCode(StrEnum):
    """`CODE = "CODE", status, default message` (the name is repeated so the value is plain text)."""

    status: int
    default_message: str

    def __new__(cls, code: str, status: int, message: str) -> Self:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status, member.default_message = status, message
        return member

    # Aligned: one code a line reads as the table it is.
    # fmt: off
    # ---- the request ---------------------------------------------------------------------------------
    BAD_REQUEST               = "BAD_REQUEST", 400, "Bad request"
    INVALID_PAYLOAD           = "INVALID_PAYLOAD", 400, "The body is not a JSON object"
    INVALID_SIGNATURE         = "INVALID_SIGNATURE", 400, "Signature verification failed"
    AMOUNT_MISMATCH           = "AMOUNT_MISMATCH", 400, "Amount does not match the order"
    UNAUTHORIZED              = "UNAUTHORIZED", 401, "Missing bearer token"
    INVALID_TOKEN             = "INVALID_TOKEN", 401, "Invalid token"
    INVALID_CLIENT_SECRET     = "INVALID_CLIENT_SECRET", 401, "Invalid client secret"
    CLIENT_SECRET_EXPIRED     = "CLIENT_SECRET_EXPIRED", 401, "The client secret has expired; mint a new one"
    CLIENT_SECRET_REVOKED     = "CLIENT_SECRET_REVOKED", 401, "The client secret was revoked; mint a new one"
    FORBIDDEN                 = "FORBIDDEN", 403, "Forbidden"
    CLIENT_SECRET_WRONG_ORDER = "CLIENT_SECRET_WRONG_ORDER", 403, "This client secret is for another order"
    NOT_FOUND                 = "NOT_FOUND", 404, "Not found"
    METHOD_NOT_ALLOWED        = "METHOD_NOT_ALLOWED", 405, "Method not allowed"
    CONFLICT                  = "CONFLICT", 409, "Conflict"
    PAYLOAD_TOO_LARGE         = "PAYLOAD_TOO_LARGE", 413, "Request body too large"
    UNSUPPORTED_MEDIA_TYPE    = "UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported media type"
    VALIDATION_ERROR          = "VALIDATION_ERROR", 422, "Invalid request"
    IDEMPOTENCY_KEY_REUSED    = "IDEMPOTENCY_KEY_REUSED", 422, "Idempotency-Key was used with a different request body"
    RATE_LIMITED              = "RATE_LIMITED", 429, "Too many requests"
    # ---- orders and their payment window -----------------------------------------------------------
    ORDER_NOT_FOUND           = "ORDER_NOT_FOUND", 404, "Order not found"
    ORDER_EXISTS              = "ORDER_EXISTS", 409, "Order already exists"
    ORDER_NOT_PENDING         = "ORDER_NOT_PENDING", 409, "The order is no longer pending payment"
    PAYMENT_ALREADY_PROCESSED = "PAYMENT_ALREADY_PROCESSED", 409, "Payment already processed"
    SESSION_EXPIRED           = "SESSION_EXPIRED", 400, "Phiên thanh toán đã hết hạn. Vui lòng tạo đơn hàng mới."
    SESSION_NOT_ACTIVE        = "SESSION_NOT_ACTIVE", 400, "Session is not active"
    MAX_ATTEMPTS_REACHED      = "MAX_ATTEMPTS_REACHED", 400, "No payment attempts left"
    INVALID_ORDER_TYPE        = "INVALID_ORDER_TYPE", 422, "Unknown orderType"
    INVALID_GATEWAY           = "INVALID_GATEWAY", 422, "Unknown gateway"
    AMOUNT_OUT_OF_RANGE       = "AMOUNT_OUT_OF_RANGE", 422, "The amount is outside what the gateway accepts"
    UNKNOWN_GATEWAY           = "UNKNOWN_GATEWAY", 404, "Unknown gateway"
    PAYMENT_GATEWAY_ERROR     = "PAYMENT_GATEWAY_ERROR", 502, "The payment gateway could not make a link"
    # ---- the catalog -------------------------------------------------------------------------------
    VARIANT_NOT_FOUND         = "VARIANT_NOT_FOUND", 404, "Variant not found"
    VARIANT_UNAVAILABLE       = "VARIANT_UNAVAILABLE", 409, "The variant is no longer sold"
    OUT_OF_STOCK              = "OUT_OF_STOCK", 409, "Not enough stock"
    SKU_EXISTS                = "SKU_EXISTS", 409, "A variant with one of these SKUs already exists"
    STOCK_WOULD_GO_NEGATIVE   = "STOCK_WOULD_GO_NEGATIVE", 409, "Stock on hand would go below zero"
    # ---- the money desk ----------------------------------------------------------------------------
    PAYMENT_NOT_FOUND         = "PAYMENT_NOT_FOUND", 404, "Payment not found"
    NOTIFICATION_NOT_FOUND    = "NOTIFICATION_NOT_FOUND", 404, "Notification not found"
    NOTIFICATION_UNMATCHED    = "NOTIFICATION_UNMATCHED", 409, "The notification matches no payment of ours"
    NOT_REFUNDABLE            = "NOT_REFUNDABLE", 409, "Only refund_required or needs_review money is refunded"
    ORDER_STILL_OPEN          = "ORDER_STILL_OPEN", 409, "The order is still open: its workflow decides its money"
    REFUND_NOT_SUPPORTED      = "REFUND_NOT_SUPPORTED", 409, "The gateway has no refund API"
    REFUND_IN_PROGRESS        = "REFUND_IN_PROGRESS", 409, "A gateway refund of this payment is still being tried"
    REFUND_OUTCOME_UNKNOWN    = "REFUND_OUTCOME_UNKNOWN", 409, "A gateway refund was asked and not refused"
    REFUND_FAILED             = "REFUND_FAILED", 502, "The gateway did not refund"
    # ---- dependencies ------------------------------------------------------------------------------
    INTERNAL_ERROR            = "INTERNAL_ERROR", 500, "Internal error"
    BAD_GATEWAY               = "BAD_GATEWAY", 502, "Bad gateway"
    SERVICE_UNAVAILABLE       = "SERVICE_UNAVAILABLE", 503, "Service unavailable"
    DATABASE_UNAVAILABLE      = "DATABASE_UNAVAILABLE", 503, "Database unavailable, retry shortly"
    TEMPORAL_UNAVAILABLE      = "TEMPORAL_UNAVAILABLE", 503, "Workflow service unavailable, retry shortly"
    EVENTS_UNAVAILABLE        = "EVENTS_UNAVAILABLE", 503, "Live order events are not running"
    # fmt: on

    @classmethod
    def from_workflow(cls, code: str | None) -> ErrorCode | None:
        """The code a workflow refusal or a checkout rejection carries, when it is one of ours."""
        return cls.__members__.get(code or "")


class AppError(Exception):
    """A refusal by code; `message` overrides the code's default, `headers` go on the answer."""

    def __init__(
        self, code: ErrorCode, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.code, self.message = code, message or code.default_message
        self.headers = headers
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return self.code.status
