"""The response envelope (`{success, message, data}` / `{success: false, message, error}`) and the
handlers that turn every refusal into the error envelope. The codes, their statuses and default
messages are the catalogue's (services/errors.py); nothing here makes up a code."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from infra.db import db_unavailable
from services.errors import AppError, ErrorCode
from services.schemas import Envelope, ErrorOut

T = TypeVar("T")
log = logging.getLogger("api")
RETRY_SOON = {"Retry-After": "1"}  # every 503: a dependency is down, retry (same Idempotency-Key)


def ok(data: T, message: str = "OK") -> Envelope[T]:
    """A success; the route's `response_model` checks `data` and FastAPI writes it (camelCase)."""
    return Envelope(success=True, message=message, data=data)


def fail(
    code: ErrorCode,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    status: int | None = None,
) -> JSONResponse:
    """The error envelope, for handlers and middleware (routes raise AppError). `status` only for a
    framework error whose status the catalogue does not know."""
    status = status or code.status
    if status == 503:
        headers = {**RETRY_SOON, **(headers or {})}
    body = {"success": False, "message": message or code.default_message, "error": code.value}
    return JSONResponse(body, status_code=status, headers=headers)


# What a framework error's status answers (Starlette's 404 for an unknown path, 405, ...).
HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    502: ErrorCode.BAD_GATEWAY,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelopes a route can answer with, each listing the
    catalogue's codes of that status."""
    return {
        status: {
            "model": ErrorOut,
            "description": ", ".join(c.value for c in ErrorCode if c.status == status),
        }
        for status in statuses
    }


# Every /api/v1 route can answer these (auth, body limit, validation, rate limit, dependencies down).
COMMON_ERRORS = (400, 401, 413, 422, 429, 503)


async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return fail(exc.code, exc.message, exc.headers)


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return fail(ErrorCode.VALIDATION_ERROR, "; ".join(parts) or None)


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    fallback = ErrorCode.BAD_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
    code = HTTP_CODES.get(exc.status_code, fallback)
    return fail(code, str(exc.detail), exc.headers, status=exc.status_code)


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # A dependency that is down is the client's cue to retry (same Idempotency-Key), not a bug.
    if db_unavailable(exc):
        log.warning("database unavailable: %r", exc)
        return fail(ErrorCode.DATABASE_UNAVAILABLE)
    if isinstance(exc, RPCError):  # the one place TEMPORAL_UNAVAILABLE comes from Temporal itself
        log.warning("Temporal unavailable: %s", exc.message)
        return fail(ErrorCode.TEMPORAL_UNAVAILABLE)
    log.exception("unhandled error", exc_info=exc)
    return fail(ErrorCode.INTERNAL_ERROR)
