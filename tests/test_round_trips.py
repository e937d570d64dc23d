"""What an order's life costs Postgres in transactions, on the real stack (API and worker in this
process): from the create to the end of its workflow, one transaction opens, the snapshot's, which
freezes the order and reserves its stock together. Every other statement on the way (the key's
replay read, the link, the inbox, the transition at expiry) is one statement run alone, without the
BEGIN and COMMIT/ROLLBACK round trips around it (infra/db.py `autocommit`). The API's pool still
pings a connection as it checks it out (a transaction of its own, counted apart: taking the ping
out did not show in the benchmark, docs/BENCHMARKS.md). This test breaks when a lone statement goes
back into a transaction."""

from __future__ import annotations

import traceback
import uuid
from collections import Counter
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from domain.messages import OrderOutcome
from tests.conftest import own_stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


def opener() -> str:
    """Who opens a transaction: the pool's pre-ping, or the first of our frames that asked."""
    stack = traceback.extract_stack()
    if any(f.name == "_async_ping" for f in stack):
        return "pre-ping"
    ours = [f for f in reversed(stack) if "/.venv/" not in f.filename and "/tests/" not in f.filename]
    return next(
        (f"{f.filename.rsplit('/', 2)[-2]}/{f.name}" for f in ours if "/python3" not in f.filename), "?"
    )


async def test_an_order_from_create_to_expiry_opens_one_transaction(pg_url, dev_env, monkeypatch):
    async with own_stack(pg_url, dev_env, order_session_reminder_minutes=0) as s:
        product = await s.product(stock=5, price=60_000)
        variant = product["variants"][0]["id"]
        database = make_url(s.settings.database_url).database
        opened: Counter[str] = Counter()
        real = asyncpg.connection.Connection.transaction

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self._params.database == database:  # this stack's, not the shared stack's open windows
                opened[opener()] += 1
            return real(self, *args, **kwargs)

        async def order_life() -> None:
            headers = {**s.auth(), "Idempotency-Key": f"k-{uuid.uuid4()}"}
            r = await s.order(headers, variant, 1, gateway="vnpay", orderType="flash")
            assert r.status_code == 201, r.text
            handle = s.client.get_workflow_handle(
                f"order-{r.json()['data']['orderId']}", result_type=OrderOutcome
            )
            assert (await handle.result()).status == "expired"

        await order_life()  # warms the pools: a new connection's set-up is not an order's cost
        monkeypatch.setattr(asyncpg.connection.Connection, "transaction", counted)
        await order_life()
        monkeypatch.undo()

        assert opened.pop("pre-ping", 0) <= 1, "the API checks out one connection per create"
        assert opened == {"store/reserve": 1}, (
            f"the snapshot only; transactions opened, by caller: {dict(opened)}"
        )
        assert await s.stock(variant) == 5  # both expiries gave their unit back
