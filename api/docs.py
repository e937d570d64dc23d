"""docs/API.md, generated from the app and the error catalogue: `python -m api.docs > docs/API.md`
(tests/test_api_docs.py fails when the committed file differs). docs/openapi.json has the shapes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api import deps
from api.app import V1_ROUTERS
from api.errors import COMMON_ERRORS
from api.routes import health
from api.routes.stream import stream_watcher
from infra.settings import Settings
from services.errors import ErrorCode

# Who may call a route, by the dependency that lets them in.
CALLERS: dict[Callable[..., Any], str] = {
    deps.admin_user: "admin JWT",
    deps.order_caller: "JWT, or the order's client secret",
    stream_watcher: "JWT, stream token or the order's client secret",
    deps.current_user: "JWT",
}

HEADER = """# The HTTP API

Generated from the app and the error catalogue (`services/errors.py`) by
`python -m api.docs > docs/API.md`; `tests/test_api_docs.py` fails when this file is stale. The
request and answer shapes are in [openapi.json](openapi.json) (served at `/docs` outside production).

Every `/api/v1` answer is an envelope, camelCase: `{"success": true, "message", "data"}`, or
`{"success": false, "message", "error": "<CODE>"}` with a code from the error table below. Money is
integer VND. Callers: `Authorization: Bearer <JWT>` (claims `sub`, `role` customer | admin), or for
one order's routes its client secret (`pwcs_...`, minted by `POST /orders/{ref}/client-secret`).
Webhooks answer in each gateway's own dialect. Every `/api/v1` route may also answer
{common} (authentication, body size, validation, rate limit, a dependency down: 503 carries
`Retry-After`).
"""


def _callers(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _callers(dependency)


def caller(route: APIRoute) -> str:
    found = set(_callers(route.dependant))
    for call, who in CALLERS.items():
        if call in found:
            return who
    if route.path.startswith(("/webhooks", "/payments")):
        return "the gateway's signature"
    return "anyone"


def answer(route: APIRoute) -> str:
    model = route.response_model
    name = getattr(model, "__name__", "") if model is not None else ""
    if name.startswith("Envelope["):
        name = name.removeprefix("Envelope[").removesuffix("]")
    if "text/event-stream" in str(route.responses):
        name = "event stream"
    statuses = [str(route.status_code or 200)] + sorted(str(s) for s in route.responses if str(s) < "400")
    errors = sorted(str(s) for s in route.responses if str(s) >= "400")
    shown = f"{'/'.join(dict.fromkeys(statuses))} {name}".strip()
    return f"{shown}; {', '.join(errors)}" if errors else shown


def what(route: APIRoute) -> str:
    text = route.summary or (route.description or "").strip() or route.name.replace("_", " ")
    first = " ".join(text.split("\n\n")[0].split())
    sentence = first.split(". ")[0].rstrip(".")  # the first sentence: the docstring says the rest
    return sentence.replace("|", "\\|")


def rows(prefix: str) -> Iterator[str]:
    routes = [(prefix, r) for router in V1_ROUTERS for r in router.routes]
    routes += [("", r) for r in health.router.routes]
    for base, route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            yield f"| {method} | `{base}{route.path}` | {caller(route)} | {what(route)} | {answer(route)} |"


def render(settings: Settings | None = None) -> str:
    settings = settings or Settings(_env_file=None, environment="test")
    lines = [HEADER.replace("{common}", ", ".join(str(s) for s in COMMON_ERRORS)), "## Routes", ""]
    lines += ["| method | path | caller | what | answers (status model; errors) |", "|---|---|---|---|---|"]
    lines += list(rows(settings.api_prefix))
    lines += ["", "## Errors", "", "| code | HTTP | default message |", "|---|---|---|"]
    lines += [f"| `{code.value}` | {code.status} | {code.default_message} |" for code in ErrorCode]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
