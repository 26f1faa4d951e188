"""Notifiers that take an owner-facing reminder out of the service: a signed webhook and email.

The webhook body is the Reminder message as JSON. Each POST carries `X-Promesa-Timestamp`, the
Unix time in seconds at which it was signed, and `X-Promesa-Signature: sha256=<hex>`, the
HMAC-SHA256 with the shared key (CRM_WEBHOOK_SIGNING_KEY) of `<timestamp>.<body>`: the exact
bytes. Signing the time lets a receiver refuse a captured request replayed later
(`verify_webhook`, the recipe receivers follow); `Idempotency-Key` repeats the reminder id
(the `id` in the signed body), so a receiver drops the copy a retry or a taken-over lease
sends again within the tolerance.

Posts go through one `httpx.AsyncClient` per notifier (closed at shutdown) with a bounded pool
and a semaphore of the same size, so a slow receiver ties up this notifier's connections and
nothing else; each attempt has its own timeout (CRM_WEBHOOK_TIMEOUT_SECONDS, the whole attempt,
not per socket read), and the scheduler's lane bounds the whole send (`worst_case`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
import httpx
from google.protobuf import json_format

from followup.adapters.event_codec import reminder_message
from followup.domain.model import Promise
from followup.domain.reminders import ReminderDelivery, ReminderKind
from followup.settings import SmtpSettings, WebhookSettings
from promesa.clock import Clock, SystemClock

SIGNATURE_HEADER = "X-Promesa-Signature"
TIMESTAMP_HEADER = "X-Promesa-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SCHEME = "sha256="
# How far a receiver lets the signing time be from its own clock, either way: room for the
# POST's timeout and for clocks a little apart, short enough that a replay soon goes stale.
DEFAULT_TOLERANCE = timedelta(minutes=5)
_MAX_TIMESTAMP_DIGITS = 12  # Unix seconds until the year 33658: longer is not a timestamp


def sign(key: str | bytes, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the shared key of `<timestamp>.<body>`."""
    secret = key.encode() if isinstance(key, str) else key
    content = f"{timestamp}.".encode() + body
    return SCHEME + hmac.new(secret, content, hashlib.sha256).hexdigest()


class WebhookSignatureError(Exception):
    """The request is not a genuine, fresh reminder from Promesa: answer it 4xx, act on
    nothing in it."""


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    key: str | bytes,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> datetime:
    """The receiver's recipe, as a function: the time the request was signed, or
    WebhookSignatureError when a header is missing, the signature does not match `body` as
    received (the raw bytes, before any JSON parsing) with `key`, or the signing time is
    more than `tolerance` away from `now` (a replay; default the system clock). Header names
    are matched ignoring case. The signature header may list several `sha256=` values
    separated by spaces or commas (one per key while a key is rotated): one match is enough.
    Then act once per reminder: a request whose reminder `id` (in the signed body; the
    `Idempotency-Key` header repeats it, unsigned) was handled already is a retry, or a replay
    within the tolerance: answer it 2xx and do nothing more."""
    found = {name.lower(): value for name, value in headers.items()}
    stamp = found.get(TIMESTAMP_HEADER.lower(), "").strip()
    signatures = found.get(SIGNATURE_HEADER.lower(), "").replace(",", " ").split()
    if not stamp:
        raise WebhookSignatureError(f"no {TIMESTAMP_HEADER} header")
    if not signatures:
        raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    expected = sign(key, stamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures if s.startswith(SCHEME)):
        raise WebhookSignatureError("the signature does not match the body and timestamp")
    now = now or datetime.now(UTC)
    if abs(now.timestamp() - int(stamp)) > tolerance.total_seconds():
        raise WebhookSignatureError(
            f"signed at {stamp}, outside the tolerance of {tolerance} around now: a replay?"
        )
    return datetime.fromtimestamp(int(stamp), UTC)


class WebhookDeliveryError(Exception):
    """The receiver did not accept the reminder after every retry."""


class WebhookNotifier:
    name = "webhook"

    def __init__(
        self, settings: WebhookSettings, clock: Clock | None = None, *, concurrency: int = 16
    ) -> None:
        """`clock` stamps the signatures: the wall clock, which receivers compare with theirs
        (a service running on a test clock still signs with the real time). `concurrency`
        bounds the POSTs in flight and the pool's connections."""
        self._s = settings
        self._clock = clock or SystemClock()
        self._slots = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def headers(self, delivery_id: str, body: bytes) -> dict[str, str]:
        """Signed now: each attempt anew, so a retry after a back-off is as fresh as the
        first try."""
        timestamp = int(self._clock.now().timestamp())
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._s.secret, timestamp, body),
            IDEMPOTENCY_HEADER: delivery_id,
        }

    async def send(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> None:
        message = reminder_message(delivery, promise, discreet)
        body = json_format.MessageToJson(message, indent=None).encode()
        error = ""
        for attempt in range(self._s.attempts):
            if attempt:
                await asyncio.sleep(self._s.backoff_seconds * 2 ** (attempt - 1))
            try:
                status = await self._post(body, delivery.id)
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                error = repr(exc) if str(exc) else f"{type(exc).__name__} from {self._s.url}"
                continue
            if 200 <= status < 300:
                return
            error = f"HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                break  # the receiver refuses this request; repeating it will not help
        raise WebhookDeliveryError(error)

    async def _post(self, body: bytes, delivery_id: str) -> int:
        """One attempt, signed when its turn comes (not while it waits for a connection)."""
        async with self._slots, asyncio.timeout(self._s.timeout_seconds):
            headers = self.headers(delivery_id, body)
            response = await self._client.post(self._s.url, content=body, headers=headers)
            return response.status_code


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
