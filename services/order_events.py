"""Live order events: one Postgres LISTEN connection per API process fans the `order_events`
notifications (sent by the activities in the same transaction as every change) out to the
streams watching each order. Nothing polls: a stream wakes only when its order changed.

The transport starts one hub per process (api/app.py) and streams what it pushes (api/routes/stream.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.statuses import OrderStatus
from services.caller import User
from services.errors import AppError
from services.order_reads import find_order, order_detail

log = logging.getLogger("api.events")

CHANNEL = "order_events"
APPLICATION_NAME = "paywindow-order-events"  # how operators (and tests) spot the listener in pg_stat_activity
HEARTBEAT_SECONDS = 15.0
# The reader behind every push: each stream checked its caller once, when it opened.
_READER = User(id="order-events", role="admin")


def is_final(detail: dict[str, Any]) -> bool:
    """The order has ended; its stream ends with it."""
    return OrderStatus(detail["status"]).is_terminal


class Subscription:
    """What one stream waits on. Only the newest detail matters, so a slow reader skips stale ones
    instead of queueing them."""

    def __init__(self) -> None:
        self._latest: dict[str, Any] | None = None
        self._ready = asyncio.Event()

    def push(self, detail: dict[str, Any]) -> None:
        self._latest = detail
        self._ready.set()

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next detail, or None when `timeout` passes without a change."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return None
        self._ready.clear()
        detail, self._latest = self._latest, None
        return detail


class OrderEvents:
    def __init__(self, dsn: str, engine: AsyncEngine, check_seconds: float = 30.0) -> None:
        self._dsn, self._engine, self._check_seconds = dsn, engine, check_seconds
        self._subs: dict[str, set[Subscription]] = {}
        self._loading: set[str] = set()  # orders with a refresh running
        self._stale: set[str] = set()  # ... that changed again meanwhile
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self, wait_seconds: float = 5.0) -> None:
        """Start listening; wait briefly for the first LISTEN so changes right after start-up are
        seen, but never hold the API's start on the database (the supervisor keeps retrying)."""
        self._supervisor = asyncio.create_task(self._supervise(), name="order-events-listener")
        try:
            await asyncio.wait_for(self.listening.wait(), wait_seconds)
        except TimeoutError:
            log.warning("order events: not listening yet; retrying in the background")

    async def stop(self) -> None:
        tasks = [t for t in (self._supervisor, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextmanager
    def subscribe(self, order_id: str) -> Iterator[Subscription]:
        sub = Subscription()
        self._subs.setdefault(order_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(order_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[order_id]

    def watching(self, order_id: str) -> int:
        """How many streams watch the order now."""
        return len(self._subs.get(order_id, ()))

    async def load(self, order_id: str) -> dict[str, Any]:
        """The order detail as `GET /orders/{ref}` answers it (camelCase, JSON-ready)."""
        async with self._engine.connect() as conn:
            detail = await order_detail(conn, await find_order(conn, order_id, _READER))
        return detail.model_dump(mode="json", by_alias=True)

    # ---- the listener -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": APPLICATION_NAME}
                )
            except Exception as err:  # noqa: BLE001 - any failure to connect means "try again later"
                log.warning("order events: cannot connect (%s); retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            try:
                await self._listen(conn)
            except Exception as err:  # noqa: BLE001 - the listener must outlive any database hiccup
                log.warning("order events: listener lost (%s); reconnecting", err)
            finally:
                # Back off only while LISTEN keeps failing; a connection that was listening comes back fast.
                delay = 0.5 if self.listening.is_set() else min(delay * 2, 10.0)
                self.listening.clear()
                conn.terminate()
            await asyncio.sleep(delay)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.listening.set()
        for order_id in list(self._subs):  # notifications sent while we were not listening are gone
            self._refresh(order_id)
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), self._check_seconds)
            except TimeoutError:
                # A half-open socket raises nothing by itself: ask, so a dead link is noticed. Only
                # while someone watches: an idle service costs the database nothing, and a stream
                # that opens later loads its order first and is checked within the interval.
                if self._subs:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
        raise ConnectionError("listener connection closed")

    def _on_notify(self, _conn: object, _pid: int, _channel: str, order_id: str) -> None:
        if order_id in self._subs:
            self._refresh(order_id)

    def _refresh(self, order_id: str) -> None:
        """Load the detail once for all of the order's streams; a burst of notifications while a
        load runs costs one more load, not one per notification."""
        if order_id in self._loading:
            self._stale.add(order_id)
            return
        self._loading.add(order_id)
        task = asyncio.create_task(self._push(order_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, order_id: str) -> None:
        try:
            while order_id in self._subs:
                self._stale.discard(order_id)
                detail = await self._load_retrying(order_id)
                if detail is not None:
                    for sub in self._subs.get(order_id, ()):
                        sub.push(detail)
                if order_id not in self._stale:
                    break
        finally:
            self._loading.discard(order_id)
            self._stale.discard(order_id)

    async def _load_retrying(self, order_id: str, tries: int = 3) -> dict[str, Any] | None:
        for attempt in range(tries):
            try:
                return await self.load(order_id)
            except AppError:
                return None  # no such order (any more): nothing to tell
            except Exception as err:  # noqa: BLE001 - a failed read must not lose the change for good
                log.warning("order events: reading order %s failed (%s)", order_id, err)
                await asyncio.sleep(0.5 * (attempt + 1))
        return None
