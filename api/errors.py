"""The response envelope (`{success, message, data}` / `{success: false, message, error}`) and
the one exception type routes raise for a clear 4xx/5xx with an error code."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def ok(data: Any, message: str = "OK", status: int = 200) -> JSONResponse:
    return JSONResponse(
        {"success": True, "message": message, "data": jsonable_encoder(data, by_alias=True)}, status_code=status
    )


def fail(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "message": message, "error": code}, status_code=status, headers=headers)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelopes a route can answer with."""
    from api.schemas import ErrorOut

    return {code: {"model": ErrorOut, "description": HTTP_CODES.get(code, "Error")} for code in codes}


# Every /api/v1 route can answer these (auth, body limit, validation, rate limit, dependencies down).
COMMON_ERRORS = (400, 401, 413, 422, 429, 503)

HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
}


async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    # Every 503 (a dependency down) tells the client when to retry, wherever it was raised.
    headers = exc.headers or (RETRY_SOON if exc.status == 503 else None)
    return fail(exc.status, exc.code, exc.message, headers)


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return fail(422, "VALIDATION_ERROR", "; ".join(parts) or "Invalid request")


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return fail(exc.status_code, HTTP_CODES.get(exc.status_code, "HTTP_ERROR"), str(exc.detail), exc.headers)


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    import logging

    from temporalio.service import RPCError

    from infra.db import db_unavailable

    # A dependency that is down is the client's cue to retry (same Idempotency-Key), not a bug.
    if db_unavailable(exc):
        logging.getLogger("api").warning("database unavailable: %r", exc)
        return fail(503, "DATABASE_UNAVAILABLE", "Database unavailable, retry shortly", RETRY_SOON)
    if isinstance(exc, RPCError):
        logging.getLogger("api").warning("Temporal unavailable: %s", exc.message)
        return fail(503, "TEMPORAL_UNAVAILABLE", "Workflow service unavailable, retry shortly", RETRY_SOON)
    logging.getLogger("api").exception("unhandled error", exc_info=exc)
    return fail(500, "INTERNAL_ERROR", "Internal error")


RETRY_SOON = {"Retry-After": "1"}
