"""A MoMo create gets the 30 s MoMo asks clients to wait: its call runs under CALL_SHARE of the
local activity's start-to-close (gateways/http.py, call_budget)."""

from __future__ import annotations

from gateways.http import CALL_SHARE
from gateways.momo import MOMO_TIMEOUT_SECONDS
from workflows.order import LINK_TIMEOUT


def test_a_momo_create_may_wait_the_30_s_momo_asks_for() -> None:
    assert LINK_TIMEOUT.total_seconds() * CALL_SHARE >= MOMO_TIMEOUT_SECONDS == 30.0
