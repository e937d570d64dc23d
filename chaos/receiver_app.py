"""The shop's own systems for a chaos run: what receives Paywindow's reminders (a signed webhook and
e-mail over SMTP) and order events (ORDER_EVENTS_URLS), as production runs with both on. Its own
process, so that it can be made to fail while the stack goes on:

  POST /reminders          reminder webhook: 204, or 500 while `reminders` is "failing"
  POST /events             order events: 204, or 503 while `events` is "down"
  SMTP on CHAOS_SMTP_PORT  reminder e-mails (aiosmtpd), always accepted
  POST /chaos/receiver     {"events": "up" | "down", "reminders": "up" | "failing"}
  GET  /chaos/receiver     what arrived: event ids (deduplicated as a receiver would), counts

Run with `uvicorn chaos.receiver_app:app_factory --factory`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request, Response


class Received:
    def __init__(self) -> None:
        self.events_down = False
        self.reminders_failing = False
        self.event_ids: dict[str, str] = {}  # event id -> order id
        self.event_posts = 0
        self.events_refused = 0
        self.reminders = 0
        self.reminders_refused = 0
        self.mails = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd handler
        self.mails += 1
        return "250 OK"


def create_receiver_app(smtp_port: int) -> FastAPI:
    got = Received()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        smtp = Controller(got, hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        yield
        smtp.stop()

    app = FastAPI(title="chaos receiver", lifespan=lifespan)

    @app.post("/events")
    async def events(request: Request) -> Response:
        got.event_posts += 1
        if got.events_down:
            got.events_refused += 1
            return Response(status_code=503)
        body = json.loads(await request.body())
        got.event_ids[request.headers.get("x-paywindow-event-id", "")] = str(body.get("orderId"))
        return Response(status_code=204)

    @app.post("/reminders")
    async def reminders(request: Request) -> Response:
        if got.reminders_failing:
            got.reminders_refused += 1
            return Response(status_code=500)
        got.reminders += 1
        return Response(status_code=204)

    @app.post("/chaos/receiver")
    async def control(body: dict[str, str]) -> dict[str, Any]:
        got.events_down = body.get("events", "down" if got.events_down else "up") == "down"
        got.reminders_failing = (
            body.get("reminders", "failing" if got.reminders_failing else "up") == "failing"
        )
        return {"events_down": got.events_down, "reminders_failing": got.reminders_failing}

    @app.get("/chaos/receiver")
    async def stats() -> dict[str, Any]:
        return {
            "event_ids": got.event_ids,
            "event_posts": got.event_posts,
            "events_refused": got.events_refused,
            "reminders": got.reminders,
            "reminders_refused": got.reminders_refused,
            "mails": got.mails,
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_factory() -> FastAPI:
    return create_receiver_app(int(os.environ["CHAOS_SMTP_PORT"]))
