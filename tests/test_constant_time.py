"""Every signature we check is compared in constant time (hmac.compare_digest), never with `==`:
read from the code that checks each one, so a refactor that brings `==` back fails here."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from activities import notify
from gateways import momo, payos, vnpay_wire

CHECKS = [
    (momo.MomoGateway._verify, "MoMo IPN and browser return"),
    (payos.PayOSGateway, "PayOS webhook"),
    (vnpay_wire, "VNPay IPN, return and querydr answers"),
    (notify.verify_signature, "our reminders and order events"),
]


def compares(source: str) -> tuple[int, list[str]]:
    """(compare_digest calls, `==`/`!=` comparisons that involve a name with 'signature' or 'hash')."""
    tree = ast.parse(source)
    digests = sum(
        1
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "compare_digest"
    )
    plain = [
        ast.unparse(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in n.ops)
        and any(w in ast.unparse(n).lower() for w in ("signature", "securehash", "secure_hash"))
    ]
    return digests, plain


@pytest.mark.parametrize(("code", "what"), CHECKS, ids=[w for _, w in CHECKS])
def test_signatures_are_compared_in_constant_time(code: object, what: str) -> None:
    source = textwrap.dedent(inspect.getsource(code))
    digests, plain = compares(source)
    assert digests >= 1, f"{what}: no hmac.compare_digest"
    assert plain == [], f"{what}: compared with == / !=: {plain}"


def test_the_check_itself_sees_a_plain_comparison() -> None:
    assert compares("def f(signature, expected):\n    return signature == expected\n") == (
        0,
        ["signature == expected"],
    )
