"""The order-event relay: delivers the outbox (`order_event`) to ORDER_EVENTS_URLS, beside the
workflows, never on an order's critical path.

Events are written in the same transaction as the change they report (store/outbox.py), and
that statement also NOTIFYs `paywindow_outbox`. Each worker runs one relay: it LISTENs, and on a
notification (or when the earliest retry falls due) claims due events with `FOR UPDATE SKIP LOCKED`
under a lease, posts them, and marks them delivered or schedules the next try. So:
- an idle service costs the database nothing (no polling), and many workers never post one event
  twice at the same time (a crashed one's lease runs out and another takes over);
- a receiver that is down is asked once per round, not once per event, and retries back off to at
  most ORDER_EVENTS_RETRY_CAP_SECONDS (60 s), so the backlog reaches a receiver that is back within
  that long;
- an order's events go out oldest first: only an order's oldest undelivered event is ever due, so
  one that keeps failing holds back its order's later events (and no other order's).
Receivers deduplicate on the event id (`X-Paywindow-Event-Id`): delivery is at least once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.notify import post_signed
from gateways.http import http_client
from infra.db import listen_dsn
from infra.settings import Settings
from store import outbox

log = logging.getLogger(__name__)

APPLICATION_NAME = "paywindow-event-relay"
BATCH = 200  # events claimed per statement
LEASE_S = 60  # a claimed event is another relay's again after this, should this one die
PARALLEL_ORDERS = 8  # orders delivered at once


@dataclass
class Round:
    delivered: list[Any]
    failed: dict[Any, str]  # event id -> why


class EventRelay:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.urls = settings.event_endpoints
        self.wake = asyncio.Event()
        self.listening = asyncio.Event()
        self.delivered = 0  # since start, for logs and tests
        self.failed = 0

    async def run(self) -> None:
        """Forever: listen, deliver what is due, sleep until the next event or retry."""
        listener = asyncio.create_task(self._listen(), name="event-relay-listener")
        try:
            next_in: float | None = 0.0  # a first round at start: events written while no relay ran
            while True:
                if next_in is None or next_in > 0:
                    try:
                        await asyncio.wait_for(self.wake.wait(), next_in)
                    except TimeoutError:
                        pass
                self.wake.clear()
                try:
                    next_in = await self.deliver_due()
                except Exception as err:  # noqa: BLE001 - the database may be away; try again soon
                    next_in = min(15.0, self.settings.order_events_retry_cap_seconds)
                    log.warning("event relay: round failed (%s); again in %.0f s", err, next_in)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def deliver_due(self) -> float | None:
        """Claim and deliver due events until none is left; seconds until the next retry falls due
        (None: nothing waits, sleep until notified)."""
        async with http_client(10.0) as http:
            while True:
                async with self.engine.begin() as conn:
                    claimed = await outbox.claim_due(conn, BATCH, LEASE_S)
                if not claimed:
                    break
                outcome = await self._deliver(http, claimed)
                await self._record(outcome)
                if len(claimed) < BATCH:
                    break
        async with self.engine.connect() as conn:
            next_in = await outbox.next_due_in(conn)
        return None if next_in is None else max(0.0, next_in)

    async def _deliver(self, http: httpx.AsyncClient, events: list[Any]) -> Round:
        """One event per order (the claim sees to it), several orders at once."""
        down: dict[str, str] = {}  # receivers that failed this round: asked once, not once per event
        done = Round([], {})
        gate = asyncio.Semaphore(PARALLEL_ORDERS)

        async def one(event: Any) -> None:
            async with gate:
                error = await self._post(http, event, down)
            if error is None:
                done.delivered.append(event.id)
            else:
                done.failed[event.id] = error

        await asyncio.gather(*(one(event) for event in events))
        return done

    async def _post(self, http: httpx.AsyncClient, event: Any, down: dict[str, str]) -> str | None:
        """None when every receiver took the event, else why not."""
        for url in self.urls:
            if url in down:
                return down[url]
            try:
                await post_signed(
                    url,
                    self.settings.notification_secret,
                    str(event.id),
                    event.type,
                    event.payload,
                    client=http,
                )
            except (httpx.HTTPError, OSError) as err:
                down[url] = f"{url}: {type(err).__name__}: {err}"[:300]
                return down[url]
        return None

    async def _record(self, outcome: Round) -> None:
        async with self.engine.begin() as conn:
            if outcome.delivered:
                await outbox.delivered(conn, outcome.delivered)
            if outcome.failed:
                await outbox.failed(conn, outcome.failed, self.settings.order_events_retry_cap_seconds)
        self.delivered += len(outcome.delivered)
        self.failed += len(outcome.failed)
        if outcome.failed:
            log.warning(
                "event relay: %d delivered, %d to retry (%s)",
                len(outcome.delivered),
                len(outcome.failed),
                next(iter(outcome.failed.values())),
            )

    # ---- wake-ups ------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        delay = 0.5
        dsn = listen_dsn(self.settings.database_url)
        while True:
            try:
                conn = await asyncpg.connect(dsn, server_settings={"application_name": APPLICATION_NAME})
            except Exception as err:  # noqa: BLE001 - down or restarting: try again later
                log.warning("event relay: cannot listen (%s); retrying in %.1f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(outbox.RELAY_CHANNEL, lambda *_: self.wake.set())
                self.listening.set()
                delay = 0.5
                self.wake.set()  # whatever was written while we were not listening
                await lost.wait()
            except Exception as err:  # noqa: BLE001 - reconnect on any listener failure
                log.warning("event relay: listener lost (%s); reconnecting", err)
            finally:
                self.listening.clear()
                conn.terminate()
            await asyncio.sleep(delay)
