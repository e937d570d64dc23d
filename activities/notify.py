"""Telling people and other services: payment reminders to the shopper (signed webhook, e-mail
over SMTP, or the log) and order events from the outbox to configured endpoints.

Both are signed the same way (`sign`), so a receiver verifies one header for either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.messages import ReminderInput
from gateways.http import http_client
from infra.settings import Settings
from store import notifications, outbox

log = logging.getLogger(__name__)
HTTP_TIMEOUT = 10.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the timestamp is signed too, so a
    receiver can refuse old replays."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What a receiver does (our tests use it): constant-time compare, bounded clock skew."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


async def post_signed(
    url: str,
    secret: str,
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
    client: httpx.AsyncClient | None = None,
) -> None:
    """POST one signed event; raises on a transport error or a non-2xx answer. `client`: a kept-alive
    one of the caller's (the relay's), else a short-lived one."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Paywindow-Event-Id": event_id,
        "X-Paywindow-Event-Type": event_type,
        "X-Paywindow-Signature": sign(secret, body, int(time.time())),
    }
    if client is None:
        async with http_client(HTTP_TIMEOUT) as own:
            response = await own.post(url, content=body, headers=headers)
    else:
        response = await client.post(url, content=body, headers=headers)
    response.raise_for_status()


# ---- reminder channels ---------------------------------------------------------------------------


class Channel(Protocol):
    name: str

    async def send(self, reminder: dict[str, Any]) -> str | None:
        """Deliver; returns None when sent, or why it was skipped. Raises when it failed."""
        ...


class LogChannel:
    name = "log"

    async def send(self, reminder: dict[str, Any]) -> str | None:
        log.info("reminder: order %s closes at %s", reminder["orderCode"], reminder["expiresAt"])
        return None


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret

    async def send(self, reminder: dict[str, Any]) -> str | None:
        await post_signed(self.url, self.secret, reminder["eventId"], "payment.reminder", reminder)
        return None


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, reminder: dict[str, Any]) -> str | None:
        if not reminder.get("email"):
            return "no e-mail address on the order"
        await asyncio.to_thread(self._send_sync, reminder)
        return None

    def _send_sync(self, reminder: dict[str, Any]) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from
        msg["To"] = reminder["email"]
        msg["Subject"] = (
            f"Đơn hàng {reminder['orderCode']} sắp hết hạn thanh toán / Your payment window closes soon"
        )
        msg["Message-ID"] = f"<{reminder['eventId']}@paywindow>"
        msg.set_content(
            f"Đơn hàng {reminder['orderCode']} sẽ hết hạn lúc {reminder['expiresAt']} (UTC).\n"
            f"Order {reminder['orderCode']} closes at {reminder['expiresAt']} (UTC).\n\n"
            f"Thanh toán / Pay: {reminder.get('paymentUrl') or '-'}\n"
        )
        with smtplib.SMTP(s.smtp_host or "localhost", s.smtp_port, timeout=HTTP_TIMEOUT) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
            smtp.send_message(msg)


def reminder_channels(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.reminder_webhook_url:
        channels.append(WebhookChannel(settings.reminder_webhook_url, settings.notification_secret))
    if settings.smtp_host:
        channels.append(EmailChannel(settings))
    return channels or [LogChannel()]


# ---- activities ------------------------------------------------------------------------------------


class NotifyActivities:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.channels = reminder_channels(settings)

    @activity.defn
    async def send_reminder(self, inp: ReminderInput) -> list[str]:
        """Each channel at most once per order, and never once the order has ended: a channel is
        claimed (row inserted) before sending; a send that failed releases its claim for a retry."""
        done, failures = [], []
        for channel in self.channels:
            reminder = await self._claim(inp, channel.name)
            if reminder is None:
                continue  # sent before, or the order is no longer waiting for payment
            try:
                skipped = await channel.send(reminder)
            except Exception as err:  # noqa: BLE001 - one channel down must not silence the others
                why = f"{type(err).__name__}: {err}"[:300]
                await self._mark(inp.order_id, channel.name, "failed", why)
                failures.append(f"{channel.name}: {why}")
                continue
            await self._mark(inp.order_id, channel.name, "skipped" if skipped else "sent", skipped)
            done.append(channel.name)
        if failures:
            # Retried by the workflow's policy; channels already sent are skipped by their claim.
            raise ApplicationError("reminder not sent: " + "; ".join(failures), type="REMINDER_FAILED")
        return done

    async def _claim(self, inp: ReminderInput, channel: str) -> dict[str, Any] | None:
        async with self.engine.begin() as conn:
            reminder = await notifications.claim_reminder(conn, inp.order_id, channel)
        if reminder is None:
            return None
        remaining = max(0, int((reminder.expires_at - datetime.now(UTC)).total_seconds()))
        return {
            "eventId": str(reminder.id),
            "type": "payment.reminder",
            "orderId": inp.order_id,
            "orderCode": reminder.order_code,
            "customerId": reminder.customer_id,
            "expiresAt": reminder.expires_at.isoformat(),
            "remainingSeconds": remaining,
            "paymentUrl": reminder.payment_url,
            "email": reminder.email,
        }

    async def _mark(self, order_id: str, channel: str, status: str, detail: str | None) -> None:
        async with self.engine.begin() as conn:
            await notifications.mark_reminder(conn, order_id, channel, status, detail)

    @activity.defn
    async def deliver_order_events(self, order_id: str) -> int:
        """Legacy: workflows started before `critical-path-v1` deliver their events through this
        activity; newer ones leave it to the relay (activities/event_relay.py). Sends this order's
        undelivered events, oldest first; a failure raises; receivers dedupe on the event id."""
        urls = self.settings.event_endpoints
        async with self.engine.connect() as conn:
            events = await outbox.undelivered_of(conn, order_id)
        for event in events:
            try:
                for url in urls:
                    await post_signed(
                        url, self.settings.notification_secret, str(event.id), event.type, event.payload
                    )
            finally:
                async with self.engine.begin() as conn:
                    await outbox.count_try(conn, event.id)
            async with self.engine.begin() as conn:
                await outbox.mark_delivered(conn, event.id)
        return len(events)
