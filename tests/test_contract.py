"""The published contract: docs/openapi.json is the app's OpenAPI document (regenerate with
`.venv/bin/python -m tests.test_contract`); order events match docs/schemas/order-event.schema.json;
docs/INTEGRATION.md's signature snippets verify a real signed delivery (Python here, Node with
`node`), its page is ten lines, and it documents every error the element tells a shopper about."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from activities.notify import post_signed, sign
from api.app import create_app
from devstack.processes import free_port
from domain.order_events import EVENT_TYPES
from domain.statuses import OrderStatus
from infra.settings import Settings
from tests.conftest import serve
from tests.helpers import click, expire_now, open_pay_page, wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT / "docs" / "openapi.json"
EVENT_SCHEMA = ROOT / "docs" / "schemas" / "order-event.schema.json"
INTEGRATION = ROOT / "docs" / "INTEGRATION.md"
ELEMENT = ROOT / "api" / "static" / "paywindow-checkout.js"
REGENERATE = ".venv/bin/python -m tests.test_contract"


def current_openapi() -> dict[str, Any]:
    """The production API's document (no sandbox; docs on so FastAPI builds it)."""
    settings = Settings(
        _env_file=None, environment="test", sandbox_enabled=False, docs_enabled=True, allowed_origins=""
    )
    return create_app(settings).openapi()


def rendered(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def snippet(language: str, marker: str) -> str:
    """The fenced `language` block of docs/INTEGRATION.md that contains `marker`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", INTEGRATION.read_text(), re.DOTALL | re.MULTILINE)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"expected one ```{language} block with {marker!r} in {INTEGRATION}"
    return found[0]


async def test_openapi_json_is_the_apps_schema():
    assert OPENAPI.is_file(), f"docs/openapi.json is missing; generate it: {REGENERATE}"
    committed = OPENAPI.read_text()
    now = rendered(current_openapi())
    assert committed == now, (
        f"The app's OpenAPI schema drifted from docs/openapi.json; if the change is intended, "
        f"regenerate and commit it: {REGENERATE}"
    )


async def test_the_contract_has_the_client_secret_routes():
    paths = json.loads(OPENAPI.read_text())["paths"]
    assert {"post", "delete"} <= set(paths["/api/v1/orders/{ref}/client-secret"])
    assert "/sandbox" not in "".join(paths)  # the production API, not the test sandbox


async def test_event_schema_names_every_event_type_and_status():
    schema = json.loads(EVENT_SCHEMA.read_text())
    jsonschema_rs.meta.validate(schema)
    assert schema["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert schema["properties"]["status"]["enum"] == [s.value for s in OrderStatus]


async def events_of(stack: Any, order_ids: list[str]) -> list[dict[str, Any]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT payload FROM order_event WHERE order_id = ANY(CAST(:ids AS uuid[])) ORDER BY created_at"
            ),
            {"ids": order_ids},
        )
        return [row.payload for row in rows]


async def real_orders(stack: Any) -> list[str]:
    """Orders that went through created, paid, cancelled and expired (and an operator's action)."""
    product = await stack.product(stock=10)
    headers = stack.auth(f"contract-{uuid.uuid4().hex[:8]}")
    made = [(await stack.order(headers, product["variants"][0]["id"])).json()["data"] for _ in range(3)]
    paid, cancelled, expired = made
    await click(await open_pay_page(paid["payment"]["paymentUrl"]), "pay")
    await wait_for_status(stack, paid["orderId"], headers, "paid")
    assert (
        await stack.http.post(f"/orders/{cancelled['orderId']}/cancel", headers=headers)
    ).status_code == 200
    await expire_now(stack, expired)
    return [o["orderId"] for o in made]


async def test_real_order_events_match_the_published_schema(stack):
    validator = jsonschema_rs.Draft202012Validator(
        json.loads(EVENT_SCHEMA.read_text()), validate_formats=True
    )
    events = await events_of(stack, await real_orders(stack))
    kinds = {e["type"] for e in events}
    assert {"order.created", "order.paid", "order.cancelled", "order.expired"} <= kinds, kinds
    for event in events:
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(event)]
        assert not errors, (event, errors)


@pytest.fixture(scope="module")
async def delivery(stack) -> dict[str, Any]:
    """One real order event as the relay delivers it (post_signed), captured by a receiver."""
    captured: dict[str, Any] = {}

    async def receive(request: Request) -> Response:
        captured["body"] = await request.body()
        captured["signature"] = request.headers["x-paywindow-signature"]
        return Response(status_code=204)

    port = free_port()
    server, task = await serve(Starlette(routes=[Route("/events", receive, methods=["POST"])]), port)
    try:
        product = await stack.product()
        order = (await stack.order(stack.auth(), product["variants"][0]["id"])).json()["data"]
        payload = (await events_of(stack, [order["orderId"]]))[0]
        secret = stack.settings.notification_secret
        await post_signed(
            f"http://127.0.0.1:{port}/events", secret, payload["eventId"], payload["type"], payload
        )
    finally:
        server.should_exit = True
        await task
    return {**captured, "secret": secret}


def cases(delivery: dict[str, Any]) -> list[tuple[str, bytes, str, bool]]:
    """(secret, raw body, signature header, should verify)."""
    body, header, secret = delivery["body"], delivery["signature"], delivery["secret"]
    old = int(time.time()) - 3600
    return [
        (secret, body, header, True),
        (secret, body.replace(b'"status":"pending_payment"', b'"status":"paid"'), header, False),  # tampered
        ("another-secret", body, header, False),
        (secret, body, sign(secret, body, old), False),  # a replay an hour later
        (secret, body, "v1=abc", False),
        (secret, body, header.split(",")[0] + ",v1=" + "0" * 64, False),
        (secret, body, "t=x,v1=" + "0" * 64, False),
    ]


async def test_the_python_snippet_verifies_a_real_delivery(delivery):
    assert b'"status":"pending_payment"' in delivery["body"]
    namespace: dict[str, Any] = {}
    exec(snippet("python", "def verify_paywindow_signature"), namespace)  # noqa: S102 - our own docs
    verify = namespace["verify_paywindow_signature"]
    for secret, body, header, expected in cases(delivery):
        assert verify(secret, body, header) is expected, (header, expected)


async def test_the_node_snippet_verifies_a_real_delivery(delivery, tmp_path):
    node = shutil.which("node")
    assert node, "node is needed to run docs/INTEGRATION.md's Node snippet (apt-get install nodejs)"
    harness = """
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(input.map(([secret, body, header]) =>
  verifyPaywindowSignature(secret, Buffer.from(body, "base64"), header))));
"""
    script = tmp_path / "verify.js"
    script.write_text(snippet("js", "function verifyPaywindowSignature") + harness)
    table = cases(delivery)
    stdin = json.dumps([[s, base64.b64encode(b).decode(), h] for s, b, h, _ in table])
    run = await asyncio.to_thread(
        subprocess.run,
        [node, str(script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [expected for *_, expected in table]


async def test_the_integration_page_is_ten_lines():
    page = snippet("html", "<paywindow-checkout")
    assert len(page.splitlines()) == 10, page
    assert 'src="https://pay.example.vn/sdk/paywindow-checkout.js"' in page


async def test_every_error_the_element_explains_is_documented():
    codes = set(re.findall(r'"error\.([A-Z_]+)"', ELEMENT.read_text()))
    assert "CLIENT_SECRET_EXPIRED" in codes
    missing = sorted(c for c in codes if f"`{c}`" not in INTEGRATION.read_text())
    assert not missing, f"docs/INTEGRATION.md does not document {missing}"


if __name__ == "__main__":  # `.venv/bin/python -m tests.test_contract`: regenerate docs/openapi.json
    OPENAPI.write_text(rendered(current_openapi()))
    print(f"wrote {OPENAPI.relative_to(ROOT)}", file=sys.stderr)
