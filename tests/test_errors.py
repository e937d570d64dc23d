"""The error catalogue (services/errors.py) is the only source of codes, and every answer is checked
against its route's model. Read from the source (ast) for the codes, so a refusal on a path no test
reaches still counts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
from fastapi import FastAPI

from api.app import install_error_handlers
from api.errors import ok
from services.errors import AppError, ErrorCode
from services.schemas import Envelope, ReceiverOut

ROOT = Path(__file__).resolve().parent.parent
RAISERS = ("api", "services")  # where codes are raised by name


def sources(*layers: str) -> list[tuple[Path, ast.AST]]:
    return [
        (p, ast.parse(p.read_text(), str(p)))
        for layer in layers
        for p in sorted((ROOT / layer).rglob("*.py"))
    ]


def codes_named(*layers: str) -> dict[str, list[str]]:
    """`ErrorCode.X` anywhere in these layers -> where."""
    found: dict[str, list[str]] = {}
    for path, tree in sources(*layers):
        for node in ast.walk(tree):
            named = isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "ErrorCode"
            if named and node.attr not in ("from_workflow", "value", "status", "default_message"):
                found.setdefault(node.attr, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def codes_the_workflow_raises() -> set[str]:
    """What reaches the API as a string: the order workflow's refusals (`ApplicationError(type=X)`),
    answered by workflow updates, and the checkout's rejections (`Rejected("X", ...)`), answered
    by the create."""
    found: set[str] = set()
    for _, tree in sources("workflows"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ApplicationError":
                found |= {
                    k.value.value
                    for k in node.keywords
                    if k.arg == "type" and isinstance(k.value, ast.Constant)
                }
    for _, tree in sources("domain", "store", "activities"):
        for node in ast.walk(tree):
            rejected = isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Rejected" and node.args
            if rejected and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return found


def test_every_code_raised_is_in_the_catalogue() -> None:
    unknown = {
        code: where for code, where in codes_named(*RAISERS).items() if code not in ErrorCode.__members__
    }
    assert not unknown, f"codes not in services/errors.py: {unknown}"
    missing = codes_the_workflow_raises() - set(ErrorCode.__members__)
    assert not missing, f"the workflow or the checkout refuses with codes the API does not know: {missing}"


def test_codes_are_raised_by_name_never_as_text() -> None:
    """AppError and fail() take a member of the catalogue; a string code would bypass it."""
    by_text = []
    for path, tree in sources(*RAISERS):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("AppError", "fail", "refused"):
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant):
                    by_text.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not by_text, f"codes as text: {by_text}"


def test_every_code_in_the_catalogue_is_used() -> None:
    used = set(codes_named(*RAISERS)) | codes_the_workflow_raises()
    unused = set(ErrorCode.__members__) - used
    assert not unused, f"codes nothing raises (remove them, or raise them): {sorted(unused)}"


def test_each_code_is_its_own_name_with_an_error_status() -> None:
    for code in ErrorCode:
        assert code.value == code.name
        assert 400 <= code.status <= 599 and code.default_message, code


async def test_an_answer_that_breaks_its_model_is_a_500_not_a_wrong_body() -> None:
    """Built as create_app builds the API: the same handlers, a typed route returning ok()."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/right", response_model=Envelope[ReceiverOut])
    async def right() -> Envelope[ReceiverOut]:
        return ok(ReceiverOut(name="An", phone="0901234567", address="1 Lê Lợi"))

    @app.get("/wrong", response_model=Envelope[ReceiverOut])
    async def wrong() -> Envelope[ReceiverOut]:
        return ok({"name": "An", "phone": None})  # the bug this test is about

    @app.get("/refused")
    async def refused() -> None:
        raise AppError(ErrorCode.ORDER_NOT_FOUND)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        good = await client.get("/right")
        assert good.status_code == 200
        assert good.json() == {
            "success": True,
            "message": "OK",
            "data": {"name": "An", "phone": "0901234567", "address": "1 Lê Lợi", "email": None},
        }
        bad = await client.get("/wrong")
        assert bad.status_code == 500, bad.text
        assert bad.json() == {"success": False, "message": "Internal error", "error": "INTERNAL_ERROR"}
        no = await client.get("/refused")
        assert (no.status_code, no.json()["error"], no.json()["message"]) == (
            404,
            "ORDER_NOT_FOUND",
            "Order not found",
        )


# Codes the browser scripts make up themselves (no answer of ours carries them).
CLIENT_SIDE = {"NETWORK", "NO_TOKEN", "MISSING_ATTRIBUTES"}


def test_the_codes_the_browser_scripts_act_on_are_the_catalogues() -> None:
    """api/static/*.js decide on `error` codes (the element's fatal ones): renaming a code in the
    catalogue must not silently break them."""
    named = {
        m
        for p in (ROOT / "api" / "static").glob("*.js")
        for m in re.findall(r'"([A-Z][A-Z_]{4,})"', p.read_text())
    }
    assert named - CLIENT_SIDE, "no codes found in api/static/*.js"
    assert named - CLIENT_SIDE <= set(ErrorCode.__members__), (named - CLIENT_SIDE) - set(
        ErrorCode.__members__
    )
