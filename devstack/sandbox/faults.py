"""Switchable gateway faults: what real gateways do to a merchant now and then (docs/GATEWAYS.md).

Off by default; the demo and `make dev` never switch them on. A plan is a list of rules
(POST /sandbox/faults); each call of the merchant API (create, query, refund, cancel) takes the first
rule that matches it and fires:

- `lose_answer`  do the work, then drop the connection without answering;
- `slow`         do the work, answer after `delaySeconds` (past the client's timeout);
- `error_code`   answer `code` in the gateway's own format, without doing the work;
- `http_500`     answer HTTP 500, without doing the work.

`times` fires on the next N matching calls, `rate` with that probability per call (seeded), neither on
every call. VNPay has no create call (its payment URL is signed by the merchant), so only its querydr
(`query`) and refund take faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

FAULTS = frozenset({"lose_answer", "slow", "error_code", "http_500"})
GATEWAYS = frozenset({"momo", "vnpay", "payos", "*"})
OPS = frozenset({"create", "query", "refund", "cancel", "*"})
MAX_DELAY_SECONDS = 600.0


@dataclass
class Rule:
    gateway: str
    op: str
    fault: str
    times: int | None = None
    rate: float | None = None
    seed: int | None = None
    delay_seconds: float | None = None
    code: str | int | None = None
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Rule:
        """From the interface's JSON; raises ValueError on nonsense."""
        gateway, op, fault = raw.get("gateway", "*"), raw.get("op", "*"), raw.get("fault")
        if gateway not in GATEWAYS or op not in OPS or fault not in FAULTS:
            raise ValueError(f"gateway in {sorted(GATEWAYS)}, op in {sorted(OPS)}, fault in {sorted(FAULTS)}")
        times, rate, seed = raw.get("times"), raw.get("rate"), raw.get("seed")
        delay, code = raw.get("delaySeconds"), raw.get("code")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 0):
            raise ValueError("times must be a whole number >= 0 or null")
        if rate is not None and (not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
            raise ValueError("rate must be within 0..1 or null")
        if seed is not None and not isinstance(seed, int):
            raise ValueError("seed must be an integer or null")
        if fault == "slow" and (not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_DELAY_SECONDS):
            raise ValueError(f"slow needs delaySeconds within 0..{MAX_DELAY_SECONDS}")
        if fault == "error_code" and (
            code is None or isinstance(code, bool) or not isinstance(code, (str, int))
        ):
            raise ValueError("error_code needs a code")
        return cls(
            gateway=gateway,
            op=op,
            fault=fault,
            times=times,
            rate=float(rate) if rate is not None else None,
            seed=seed,
            delay_seconds=float(delay) if delay is not None else None,
            code=code,
            rng=random.Random(seed),
        )

    def fires(self, gateway: str, op: str) -> bool:
        if self.gateway not in ("*", gateway) or self.op not in ("*", op):
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.rate is not None and self.rng.random() >= self.rate:
            return False
        self.fired += 1
        return True

    def as_json(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "op": self.op,
            "fault": self.fault,
            "times": self.times,
            "rate": self.rate,
            "seed": self.seed,
            "delaySeconds": self.delay_seconds,
            "code": self.code,
            "fired": self.fired,
            "remaining": None if self.times is None else self.times - self.fired,
        }


class FaultPlan:
    def __init__(self) -> None:
        self.rules: list[Rule] = []

    def replace(self, raw: Any) -> None:
        rules = raw.get("rules") if isinstance(raw, Mapping) else None
        if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
            raise ValueError('body must be {"rules": [rule, ...]}')
        self.rules = [Rule.parse(r) for r in rules]  # all or nothing

    def clear(self) -> None:
        self.rules = []

    def take(self, gateway: str, op: str) -> Rule | None:
        """The rule that fires for this call, counted; None for an ordinary call."""
        return next((rule for rule in self.rules if rule.fires(gateway, op)), None)

    def as_json(self) -> dict[str, Any]:
        return {"rules": [rule.as_json() for rule in self.rules]}


async def answer_with_faults(
    request: Request,
    plan: FaultPlan,
    gateway: str,
    op: str,
    work: Callable[[], Any],
    refuse: Callable[[Any], Any],
    on_lost: Callable[[], None] = lambda: None,
) -> Any:
    """Run one merchant-API call under the plan. `work` does the call (synchronously: nothing
    interleaves) and returns its answer; `refuse(code)` answers that code in the gateway's own format
    without doing the work (code None: the 500's ledger entry only). `on_lost` marks, after the work, a
    call whose answer will not reach the merchant in time (slow, lost)."""
    rule = plan.take(gateway, op)
    if rule is None:
        return work()
    if rule.fault == "http_500":
        refuse(None)
        return PlainTextResponse("sandbox fault: internal server error", status_code=500)
    if rule.fault == "error_code":
        return refuse(rule.code)
    answer = work()
    on_lost()
    if rule.fault == "slow":
        await asyncio.sleep(rule.delay_seconds or 0)
        return answer
    return await drop_connection(request)


async def drop_connection(request: Request) -> Response:
    """Close the connection before a byte of the answer is written, as a gateway (or a proxy) that
    died after doing the work would: the client sees "server disconnected without a response".

    Under uvicorn the connection is reached through the server's `receive` (middleware may wrap it
    in closures). Anywhere else, headers go out and the body never does, which the client also
    reads as a lost answer."""
    transport = _transport(request.receive)
    if transport is not None:
        transport.close()
        await asyncio.sleep(0.01)  # let the server see the connection gone: it then sends nothing
        return Response(status_code=204)
    return _Truncated()


def _transport(receive: Any, depth: int = 0) -> Any:
    """The server's connection behind `receive`: a bound method of the server's request cycle,
    possibly wrapped by middleware in closures or in objects keeping the original as `_receive`."""
    owner = getattr(receive, "__self__", None)
    transport = getattr(owner, "transport", None)
    if transport is not None and hasattr(transport, "close"):
        return transport
    if depth >= 8:
        return None
    inner = [getattr(owner, "_receive", None)]
    for cell in getattr(receive, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            inner.append(cell.cell_contents)
    for candidate in inner:
        if not callable(candidate):
            candidate = getattr(candidate, "_receive", None)
        if callable(candidate):
            found = _transport(candidate, depth + 1)
            if found is not None:
                return found
    return None


class _Truncated(Response):
    """Headers promising a body that never comes; the server then closes the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        raise ConnectionAbortedError("sandbox fault: answer lost")
