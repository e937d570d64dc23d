"""`/sdk/paywindow-checkout.js`: the drop-in checkout element (api/static/paywindow-checkout.js),
for shops to load from their own pages. The plain name is cached briefly and revalidated by ETag,
so a fix reaches every shop within minutes; `/sdk/paywindow-checkout@<version>.js` is immutable,
for shops that pin a version (a version that is not the current one is served from
api/static/sdk/ when it was kept there). Public and credential-free, so any origin may load it
(module scripts are fetched with CORS)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from services.errors import AppError, ErrorCode

STATIC = Path(__file__).resolve().parent.parent / "static"
ELEMENT = STATIC / "paywindow-checkout.js"
KEPT = STATIC / "sdk"  # earlier versions, as paywindow-checkout@<version>.js
VERSION_LINE = re.compile(r'^export const VERSION = "(\d+\.\d+\.\d+)";$', re.MULTILINE)
VERSION = re.compile(r"^\d+\.\d+\.\d+$")
LATEST_CACHE = "public, max-age=300, must-revalidate"
PINNED_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Script:
    body: bytes
    etag: str
    version: str


def load(path: Path) -> Script:
    body = path.read_bytes()
    match = VERSION_LINE.search(body.decode())
    if match is None:
        raise RuntimeError(f"{path} declares no `export const VERSION`")
    return Script(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"', version=match.group(1))


def answer(request: Request, script: Script, cache: str) -> Response:
    headers = {
        "Cache-Control": cache,
        "ETag": script.etag,
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Paywindow-Sdk-Version": script.version,
    }
    if script.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(script.body, media_type="text/javascript; charset=utf-8", headers=headers)


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    current = load(ELEMENT)

    @router.get("/sdk/paywindow-checkout.js")
    async def latest(request: Request) -> Response:
        return answer(request, current, LATEST_CACHE)

    @router.get("/sdk/paywindow-checkout@{version}.js")
    async def pinned(version: str, request: Request) -> Response:
        if version == current.version:
            return answer(request, current, PINNED_CACHE)
        kept = KEPT / f"paywindow-checkout@{version}.js"
        if not VERSION.match(version) or not kept.is_file():
            raise AppError(ErrorCode.NOT_FOUND, f"No SDK version {version[:32]}")
        return answer(request, load(kept), PINNED_CACHE)

    return router
