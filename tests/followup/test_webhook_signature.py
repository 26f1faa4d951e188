"""Webhook signatures carry their signing time: the receiver's recipe (`verify_webhook`) refuses
a forged, altered, unsigned or replayed request, and a receiver that follows it accepts what the
webhook notifier really sends."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from followup.adapters.notifiers import (
    DEFAULT_TOLERANCE,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDeliveryError,
    WebhookNotifier,
    WebhookSignatureError,
    sign,
    verify_webhook,
)
from followup.domain.model import Promise, PromiseKind
from followup.domain.reminders import ReminderDelivery, ReminderKind, ReminderPolicy, delivery
from followup.settings import WebhookSettings
from promesa.clock import ManualClock

KEY = "whsec-test-key"
BODY = b'{"id":"rem-1","promiseId":"p-1"}'
CLOCK = ManualClock()
NOW = CLOCK.now()
STAMP = int(NOW.timestamp())


def signed(body: bytes = BODY, stamp: int = STAMP, key: str = KEY) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(key, stamp, body)}


# --- the recipe -------------------------------------------------------------------------------


def test_a_genuine_fresh_request_is_accepted_and_its_signing_time_returned() -> None:
    assert verify_webhook(BODY, signed(), KEY, NOW) == NOW.replace(microsecond=0)
    # within the tolerance either way (clocks a little apart, a slow POST)
    assert verify_webhook(BODY, signed(stamp=STAMP - 299), KEY, NOW)
    assert verify_webhook(BODY, signed(stamp=STAMP + 299), KEY, NOW)


def test_header_names_are_matched_ignoring_case() -> None:
    headers = {name.lower(): value for name, value in signed().items()}
    assert verify_webhook(BODY, headers, KEY, NOW)


def test_the_signature_covers_the_timestamp_and_the_exact_body() -> None:
    # Stripe / Standard Webhooks style: HMAC-SHA256 of "<timestamp>.<body>".
    digest = hmac.new(KEY.encode(), f"{STAMP}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signed()[SIGNATURE_HEADER] == f"sha256={digest}"


@pytest.mark.parametrize(
    ("body", "headers", "key", "complaint"),
    [
        pytest.param(BODY, signed(key="another-key"), KEY, "does not match", id="wrong-key"),
        pytest.param(BODY + b" ", signed(), KEY, "does not match", id="body-altered"),
        pytest.param(
            BODY,
            {**signed(), TIMESTAMP_HEADER: str(STAMP + 1)},  # a fresh time on an old signature
            KEY,
            "does not match",
            id="timestamp-altered",
        ),
        pytest.param(
            BODY,
            {TIMESTAMP_HEADER: str(STAMP), SIGNATURE_HEADER: "sha256=" + "0" * 64},
            KEY,
            "does not match",
            id="forged",
        ),
        pytest.param(
            BODY,
            {TIMESTAMP_HEADER: str(STAMP), SIGNATURE_HEADER: sign(KEY, STAMP, BODY)[7:]},
            KEY,
            "does not match",
            id="no-scheme",
        ),
        pytest.param(
            BODY,
            {SIGNATURE_HEADER: sign(KEY, STAMP, BODY)},
            KEY,
            "no X-Promesa-Time",
            id="timestamp-missing",
        ),
        pytest.param(
            BODY,
            {TIMESTAMP_HEADER: str(STAMP)},
            KEY,
            "no X-Promesa-Signature",
            id="signature-missing",
        ),
        pytest.param(BODY, {}, KEY, "no X-Promesa", id="unsigned"),
        pytest.param(
            BODY,
            {TIMESTAMP_HEADER: "1e9", SIGNATURE_HEADER: sign(KEY, "1e9", BODY)},
            KEY,
            "not a Unix time",
            id="timestamp-not-seconds",
        ),
        pytest.param(
            BODY,
            {TIMESTAMP_HEADER: "9" * 40, SIGNATURE_HEADER: sign(KEY, "9" * 40, BODY)},
            KEY,
            "not a Unix time",
            id="timestamp-absurd",
        ),
    ],
)
def test_a_forged_altered_or_unsigned_request_is_refused(
    body: bytes, headers: dict[str, str], key: str, complaint: str
) -> None:
    with pytest.raises(WebhookSignatureError, match=complaint):
        verify_webhook(body, headers, key, NOW)


@pytest.mark.parametrize("age", [DEFAULT_TOLERANCE + timedelta(seconds=1), timedelta(days=3)])
def test_a_genuine_request_replayed_after_the_tolerance_is_refused(age: timedelta) -> None:
    with pytest.raises(WebhookSignatureError, match="replay"):
        verify_webhook(BODY, signed(), KEY, NOW + age)


def test_a_request_signed_too_far_ahead_of_the_receivers_clock_is_refused() -> None:
    """Else a request signed with a skewed (or stolen-and-abused) clock far in the future
    could be replayed for as long as that lasts."""
    with pytest.raises(WebhookSignatureError, match="replay"):
        verify_webhook(BODY, signed(stamp=STAMP + 3600), KEY, NOW)


def test_a_narrower_tolerance_is_the_receivers_choice() -> None:
    late = NOW + timedelta(seconds=45)
    assert verify_webhook(BODY, signed(), KEY, late)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(BODY, signed(), KEY, late, tolerance=timedelta(seconds=30))


def test_while_a_key_is_rotated_one_matching_signature_of_several_is_enough() -> None:
    both = f"{sign('old-key', STAMP, BODY)} {sign(KEY, STAMP, BODY)}"
    assert verify_webhook(BODY, {TIMESTAMP_HEADER: str(STAMP), SIGNATURE_HEADER: both}, KEY, NOW)


# --- a receiver that follows the recipe, and the notifier that posts to it -------------------


@dataclass
class Receiver:
    """A front-office endpoint: verifies each POST with the recipe on its own clock, and acts
    once per reminder id, read from the signed body (a retry within the tolerance is answered,
    not acted on again)."""

    key: str
    clock: ManualClock
    acted_on: list[bytes] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            verify_webhook(body, headers, self.key, self.clock.now())
        except WebhookSignatureError as exc:
            self.refusals.append(str(exc))
            return 401
        reminder_id = str(json.loads(body)["id"])
        if reminder_id not in self.seen:
            self.seen.add(reminder_id)
            self.acted_on.append(body)
        return 204


@dataclass
class Captured:
    body: bytes
    headers: dict[str, str]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str, list[Captured]]]:
    state = Receiver(KEY, ManualClock())
    captured: list[Captured] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            captured.append(Captured(body, headers))
            self.send_response(state.handle(body, headers))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/reminders", captured
    server.shutdown()
    server.server_close()


def a_reminder() -> tuple[Promise, ReminderDelivery]:
    now = CLOCK.now()
    promise = Promise(
        id="p-1",
        contact_id="c-1",
        text="Call back with the refund reference",
        kind=PromiseKind.CALL_BACK,
        owner_id="agent-ana",
        team="madrid",
        created_by="agent-ana",
        due_at=now,
        created_at=now,
    )
    reminder = delivery(promise, ReminderKind.AT_DUE, now, "agent-ana", ReminderPolicy(), "rem-1")
    return promise, reminder


def notifier(url: str, key: str = KEY, clock: ManualClock | None = None) -> WebhookNotifier:
    settings = WebhookSettings(
        url=url, secret=key, attempts=1, backoff_seconds=0, timeout_seconds=5
    )
    return WebhookNotifier(settings, clock or ManualClock())


def replay(url: str, request: Captured) -> int:
    """The captured request sent again, byte for byte, as an attacker who recorded it would."""
    again = urllib.request.Request(url, data=request.body, headers=request.headers, method="POST")
    try:
        with urllib.request.urlopen(again, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_a_receiver_following_the_recipe_accepts_a_reminder_and_refuses_its_replay(
    receiver: tuple[Receiver, str, list[Captured]],
) -> None:
    state, url, captured = receiver
    promise, reminder = a_reminder()

    # Given a reminder posted by the notifier, verified and acted on by the receiver,
    await notifier(url).send(reminder, promise, discreet=False)
    [sent] = captured
    assert sent.headers[TIMESTAMP_HEADER] == str(STAMP)
    assert sent.headers[IDEMPOTENCY_HEADER] == "rem-1"
    assert len(state.acted_on) == 1 and not state.refusals

    # when the same request comes again within the tolerance, it is a retry: answered, once
    # (also with another Idempotency-Key: that header is not signed, the body's id is);
    state.clock.advance(timedelta(minutes=1))
    assert replay(url, sent) == 204
    relabelled = Captured(sent.body, {**sent.headers, IDEMPOTENCY_HEADER: "fresh-looking"})
    assert replay(url, relabelled) == 204
    assert len(state.acted_on) == 1

    # and when it is replayed after the tolerance, it is refused.
    state.clock.advance(DEFAULT_TOLERANCE)
    assert replay(url, sent) == 401
    assert len(state.acted_on) == 1
    assert "replay" in state.refusals[-1]


async def test_each_attempt_is_signed_when_it_is_sent(
    receiver: tuple[Receiver, str, list[Captured]],
) -> None:
    """A reminder sent again later (a new round of retries) carries a fresh time, so the
    receiver takes it: only a recorded copy of an old request goes stale."""
    state, url, captured = receiver
    promise, reminder = a_reminder()
    sender_clock = ManualClock()
    post = notifier(url, clock=sender_clock)

    await post.send(reminder, promise, discreet=False)
    sender_clock.advance(timedelta(hours=1))
    state.clock.advance(timedelta(hours=1))
    await post.send(reminder, promise, discreet=False)

    first, second = captured
    assert int(second.headers[TIMESTAMP_HEADER]) - int(first.headers[TIMESTAMP_HEADER]) == 3600
    assert first.body == second.body and not state.refusals
    assert len(state.acted_on) == 1  # the same reminder id: acted on once


async def test_a_receiver_with_another_key_refuses_and_the_delivery_fails(
    receiver: tuple[Receiver, str, list[Captured]],
) -> None:
    state, url, _ = receiver
    promise, reminder = a_reminder()

    with pytest.raises(WebhookDeliveryError, match="HTTP 401"):
        await notifier(url, key="not-the-receivers-key").send(reminder, promise, discreet=False)
    assert "does not match" in state.refusals[-1] and not state.acted_on
