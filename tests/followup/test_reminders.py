"""Reminders and escalations: the policy on an injected clock, leases across replicas, and the
webhook, email and streaming notifiers against real servers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from devtools.natsserver import NatsServer
from followup.adapters.event_codec import encode
from followup.adapters.notifiers import verify_webhook
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.ports import Claim
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM
from promesa.clock import ManualClock
from tests.followup.conftest import (
    Mailbox,
    RecordingNotifier,
    RunningFollowup,
    followup_env,
    make,
    start_followup,
)
from tests.followup.test_events import publish
from tests.support import SERVICE_TOKEN, SUPERVISOR_TOKEN, bearer, events_about, eventually

ESCALATED = promise_pb2.HISTORY_ACTION_ESCALATED
OVERDUE = promise_pb2.HISTORY_ACTION_OVERDUE


async def get(svc: RunningFollowup, promise_id: str) -> promise_pb2.Promise:
    reply = await svc.stub.GetPromise(
        followup_pb.GetPromiseRequest(id=promise_id), metadata=bearer()
    )
    return reply.promise


async def test_owner_is_reminded_a_day_and_an_hour_before_and_at_due_then_supervisor_daily(
    followup_service: RunningFollowup,
) -> None:
    svc, clock, scheduler = followup_service, followup_service.clock, followup_service.scheduler
    p = await make(svc, due_in=timedelta(hours=48))
    due = clock.now() + timedelta(hours=48)
    assert await scheduler.tick() == 0

    seen: list[tuple[str, str]] = []
    for at, expected in [
        (due - timedelta(hours=24), ("BEFORE_DUE_24H", "agent-ana")),
        (due - timedelta(hours=1), ("BEFORE_DUE_1H", "agent-ana")),
        (due, ("AT_DUE", "agent-ana")),
        (due + timedelta(hours=4), ("ESCALATION", "sup-sam")),
        (due + timedelta(hours=28), ("ESCALATION", "sup-sam")),
    ]:
        clock.set(at - timedelta(seconds=1))
        assert await scheduler.tick() == 0
        clock.set(at)
        assert await scheduler.tick() == 1
        assert await scheduler.tick() == 0
        seen.append(svc.recorder.sent[-1][1:])
        assert seen[-1] == expected

    late = await get(svc, p.id)
    assert late.overdue and late.HasField("escalated_at")
    assert [h.action for h in late.history].count(ESCALATED) == 2
    assert [h.action for h in late.history].count(OVERDUE) == 1

    deliveries = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=p.id), metadata=bearer()
    )
    sent = [d for d in deliveries.reminder_deliveries if d.attempts]
    assert len(sent) == 5
    assert all(d.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED for d in sent)
    assert {a.notifier for a in sent[0].attempts} == {"nats", "recorder"}

    # Kept: nothing more is sent.
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
        metadata=bearer(),
    )
    clock.advance(timedelta(days=3))
    assert await scheduler.tick() == 0

    async def published() -> set[str]:
        msgs = await events_about(svc.bus.js, FOLLOWUP_STREAM.name, p.id)
        subjects = {m.subject for m in msgs}
        wanted = {
            "crm.followup.promise_overdue.contact-1",
            "crm.followup.promise_escalated.contact-1",
            "crm.followup.reminder_sent.contact-1",
            "crm.followup.reminders.agent-ana.contact-1",
            "crm.followup.reminders.sup-sam.contact-1",
        }
        return subjects if wanted <= subjects else set()

    await eventually(published)


async def test_a_paused_promise_holds_its_reminders(followup_service: RunningFollowup) -> None:
    svc, clock = followup_service, followup_service.clock
    p = await make(svc, due_in=timedelta(hours=2))
    await svc.stub.PausePromise(
        followup_pb.PausePromiseRequest(id=p.id, reason="waiting for photos"), metadata=bearer()
    )
    clock.advance(timedelta(hours=10))
    assert await svc.scheduler.tick() == 0
    await svc.stub.ResumePromise(followup_pb.ResumePromiseRequest(id=p.id), metadata=bearer())
    clock.advance(timedelta(hours=1))  # the hour-before reminder, two hours after resuming…
    assert await svc.scheduler.tick() == 1
    assert svc.recorder.sent[-1][1] == "BEFORE_DUE_1H"


async def test_a_failed_delivery_is_recorded_and_retried(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    p = await make(svc, due_in=timedelta(minutes=30))
    svc.recorder.failing = True
    clock.advance(timedelta(minutes=30))
    assert await svc.scheduler.tick() == 1
    [d] = (
        await svc.stub.ListReminderDeliveries(
            followup_pb.ListReminderDeliveriesRequest(promise_id=p.id), metadata=bearer()
        )
    ).reminder_deliveries[-1:]
    failed = [a for a in d.attempts if not a.success]
    assert [a.notifier for a in failed] == ["recorder"] and "down" in failed[0].error

    svc.recorder.failing = False
    clock.advance(timedelta(seconds=30))
    assert await svc.scheduler.tick() == 1
    assert [kind for _, kind, _ in svc.recorder.sent] == ["AT_DUE"]
    assert await svc.scheduler.tick() == 0


async def test_handing_a_promise_over_too_often_escalates_to_the_supervisor(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    p = await make(svc)
    for owner in ("agent-bea", "agent-cid", "agent-dan"):
        await svc.stub.ReassignPromise(
            followup_pb.ReassignPromiseRequest(id=p.id, new_owner_id=owner, reason="shift"),
            metadata=bearer(SUPERVISOR_TOKEN),  # the owner changes: their supervisor hands over
        )
    assert await svc.scheduler.tick() == 1
    assert svc.recorder.sent[-1][1:] == ("ESCALATION", "sup-sam")
    escalated = await get(svc, p.id)
    assert escalated.HasField("escalated_at") and escalated.handoff_count == 3


async def test_a_crashed_replicas_claims_are_taken_over_when_the_lease_ends(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    await make(svc, due_in=timedelta(minutes=10))
    clock.advance(timedelta(minutes=10))
    # A replica claims the reminder and dies before sending it.
    [claim] = await svc.store.claim_due(clock.now(), clock.now() + timedelta(seconds=60), 10)
    assert await svc.scheduler.tick() == 0  # leased
    clock.advance(timedelta(seconds=60))
    assert await svc.scheduler.tick() == 1
    assert svc.recorder.counts() == {claim.delivery.id: 1}
    # …and the late replica cannot complete what was taken over.
    from followup.ports import Change, LeaseLostError

    with pytest.raises(LeaseLostError):
        await svc.store.commit(Change(completed=[claim]))


async def test_replicas_racing_on_one_sqlite_file_never_claim_the_same_reminder(
    followup_service: RunningFollowup, tmp_path: Path
) -> None:
    svc, clock = followup_service, followup_service.clock
    for _ in range(60):
        await make(svc, due_in=timedelta(minutes=5))
    clock.advance(timedelta(minutes=5))
    path = Path(followup_env(NatsServer(tmp_path), tmp_path)["CRM_SQLITE_PATH"])
    # Opened off the loop: opening waits for the write lock, which the running service's
    # writer may hold until the loop runs its group's statements.
    stores = [await asyncio.to_thread(SqlitePromiseStore, path, encode, clock) for _ in range(3)]
    claimed: list[list[Claim]] = [[] for _ in stores]

    async def replica(i: int) -> None:
        """Each store claims on its own writer connection (its BEGIN and COMMIT on a thread of
        its own): a real race."""
        while batch := await stores[i].claim_due(
            clock.now(), clock.now() + timedelta(minutes=1), 3
        ):
            claimed[i].extend(batch)

    await asyncio.gather(*(replica(i) for i in range(3)))
    ids = [c.delivery.id for batch in claimed for c in batch]
    assert len(ids) == len(set(ids)) == 60
    for store in stores:
        await store.close()


async def test_stream_reminders_sends_an_owners_reminders_as_they_fall_due(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    p = await make(svc, owner_id="agent.eva", due_in=timedelta(minutes=30))
    call = svc.stub.StreamReminders(
        followup_pb.StreamRemindersRequest(owner_id="agent.eva"), metadata=bearer(SERVICE_TOKEN)
    )
    received: list[reminder_pb2.Reminder] = []

    async def read() -> None:
        async for reply in call:
            received.append(reply.reminder)

    reader = asyncio.create_task(read())
    await call.initial_metadata()  # the server is listening now
    clock.advance(timedelta(minutes=30))
    assert await svc.scheduler.tick() == 1
    await svc.runtime.parts.relay.flush()
    await eventually(lambda: _received(received))
    call.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    [reminder] = received
    assert reminder.promise_id == p.id and reminder.kind == reminder_pb2.REMINDER_KIND_AT_DUE
    assert reminder.recipient_id == "agent.eva"
    assert reminder.text == "Call back with the refund reference"


async def _received(received: list[reminder_pb2.Reminder]) -> bool:
    return bool(received)


# --- notifiers against real servers ---------------------------------------------------------


class Hook:
    """A webhook receiver: answers each POST with the next status in line (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook([500])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((dict(self.headers.items()), body))
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/reminders"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def notifying_service(
    nats_server: NatsServer,
    tmp_path: Path,
    hook: tuple[Hook, str],
    mailbox: tuple[Mailbox, int],
) -> AsyncIterator[RunningFollowup]:
    env = followup_env(
        nats_server,
        tmp_path,
        CRM_WEBHOOK_URL=hook[1],
        CRM_WEBHOOK_SIGNING_KEY="s3cret",
        CRM_WEBHOOK_BACKOFF_SECONDS="0",
        CRM_SMTP_HOST="127.0.0.1",
        CRM_SMTP_PORT=str(mailbox[1]),
        CRM_SMTP_TO="{recipient}@staff.example",
        CRM_SERVICE_TOKEN=SERVICE_TOKEN,
    )
    svc = await start_followup(nats_server, env, ManualClock())
    yield svc
    await svc.stop()


async def test_webhook_is_signed_retried_with_an_idempotency_key_and_email_is_sent(
    notifying_service: RunningFollowup, hook: tuple[Hook, str], mailbox: tuple[Mailbox, int]
) -> None:
    svc = notifying_service
    p = await make(svc, due_in=timedelta(minutes=5))
    svc.clock.advance(timedelta(minutes=5))
    assert await svc.scheduler.tick() == 1

    (first_headers, first_body), (headers, body) = hook[0].requests
    assert first_body == body  # the retry after the 500 is the same request
    verify_webhook(body, headers, "s3cret")  # signed with a timestamp (test_webhook_signature)
    reminder = json.loads(body)
    assert headers["Idempotency-Key"] == reminder["id"] == first_headers["Idempotency-Key"]
    assert reminder["promiseId"] == p.id and reminder["kind"] == "REMINDER_KIND_AT_DUE"

    [(recipients, content)] = mailbox[0].messages
    assert recipients == ["agent-ana@staff.example"]
    assert "Call back with the refund reference" in content
    listed = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(owner_id="agent-ana"), metadata=bearer()
    )
    [d] = [d for d in listed.reminder_deliveries if d.attempts]
    assert {a.notifier: a.success for a in d.attempts} == {
        "nats": True,
        "webhook": True,
        "email": True,
        "recorder": True,
    }


async def test_a_discreet_contacts_promise_text_stays_out_of_reminders(
    notifying_service: RunningFollowup, hook: tuple[Hook, str], mailbox: tuple[Mailbox, int]
) -> None:
    svc = notifying_service
    profile = contacts_events.ContactProfile(contact_id="discreet-1", discreet=True)
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.created",
        contacts_events.ContactCreated(profile=profile),
    )
    await eventually(lambda: svc.store.profile("discreet-1"))
    await make(svc, contact_id="discreet-1", due_in=timedelta(minutes=5))
    svc.clock.advance(timedelta(minutes=5))
    assert await svc.scheduler.tick() == 1
    assert "refund" not in hook[0].requests[-1][1].decode()
    assert "refund" not in mailbox[0].messages[-1][1]


def test_recorder_is_a_notifier() -> None:
    from followup.ports import Notifier

    notifier: Notifier = RecordingNotifier()
    assert notifier.name == "recorder"
