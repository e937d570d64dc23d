"""Schemathesis against our own OpenAPI document, over HTTP on the live stack: whatever it sends,
no 5xx, and answers conform to the documented schema."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import BIN, own_stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("role", ["customer", "admin"])
async def test_no_input_makes_the_api_fail(pg_url, dev_env, role, tmp_path):
    # A stack of its own: what the fuzzer meets does not depend on which tests ran before it (the
    # admin's refund and mark-refunded act on any payment they can find).
    async with own_stack(pg_url, dev_env) as stack:
        await fuzz(stack, role, tmp_path)


async def fuzz(stack, role, tmp_path):
    token = stack.token(f"fuzz-{role}", role)
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "schemathesis"),
        "run",
        f"{stack.base}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "30",
        "--seed",
        "20261123",
        "--request-timeout",
        "20",
        "--exclude-path-regex",
        "^/(sandbox|demo|payment-result)|/events$",
        "-H",
        f"Authorization: Bearer {token}",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "passed" in text.lower() or "no issues found" in text.lower(), text[-2000:]
