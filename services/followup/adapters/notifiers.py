"""Notifiers that take an owner-facing reminder out of the service: a signed webhook and email.

The webhook body is the Reminder message as JSON; `X-Promesa-Signature: sha256=<hex>` is the
HMAC-SHA256 of the exact body with the shared secret, and `Idempotency-Key` is the reminder id,
so a receiver drops the copy a taken-over lease may send again. The standard library's HTTP
client runs in a thread: one POST per reminder does not justify a dependency.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import urllib.error
import urllib.request
from email.message import EmailMessage

import aiosmtplib
from google.protobuf import json_format

from followup.adapters.event_codec import reminder_message
from followup.domain.model import Promise
from followup.domain.reminders import ReminderDelivery, ReminderKind
from followup.settings import SmtpSettings, WebhookSettings

SIGNATURE_HEADER = "X-Promesa-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDeliveryError(Exception):
    """The receiver did not accept the reminder after every retry."""


class WebhookNotifier:
    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self._s = settings

    async def send(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> None:
        message = reminder_message(delivery, promise, discreet)
        body = json_format.MessageToJson(message, indent=None).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._s.secret, body),
            IDEMPOTENCY_HEADER: delivery.id,
        }
        error = ""
        for attempt in range(self._s.attempts):
            if attempt:
                await asyncio.sleep(self._s.backoff_seconds * 2 ** (attempt - 1))
            try:
                status = await asyncio.to_thread(self._post, body, headers)
            except (urllib.error.URLError, OSError) as exc:
                error = repr(exc)
                continue
            if 200 <= status < 300:
                return
            error = f"HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                break  # the receiver refuses this request; repeating it will not help
        raise WebhookDeliveryError(error)

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(self._s.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._s.timeout_seconds) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


SUBJECTS = {
    ReminderKind.BEFORE_DUE_24H: "Due tomorrow",
    ReminderKind.BEFORE_DUE_1H: "Due in an hour",
    ReminderKind.AT_DUE: "Due now",
    ReminderKind.ESCALATION: "Overdue promise in your team",
}


class EmailNotifier:
    """Plain-text email to the recipient's address, made from CRM_SMTP_TO."""

    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self._s = settings

    def render(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._s.sender
        msg["To"] = self._s.to_template.format(recipient=delivery.recipient_id)
        msg["Subject"] = f"{SUBJECTS[delivery.kind]}: promise {promise.id}"
        msg["Message-ID"] = f"<{delivery.id}@promesa>"
        what = "(the contact asked for discretion)" if discreet else promise.text
        due = promise.due_at.isoformat().replace("+00:00", "Z")
        msg.set_content(
            f"Promise {promise.id} to contact {promise.contact_id}\n"
            f"Owner: {promise.owner_id}\nDue: {due}\nWhat was promised: {what}\n"
        )
        return msg

    async def send(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> None:
        await smtp_send(self._s, self.render(delivery, promise, discreet))


async def smtp_send(settings: SmtpSettings, message: EmailMessage) -> None:
    """One message through the configured server: STARTTLS when it offers it, and a login when
    CRM_SMTP_USERNAME is set."""
    await aiosmtplib.send(
        message,
        hostname=settings.host,
        port=settings.port,
        username=settings.username or None,
        password=settings.password or None,
        timeout=10,
    )
