"""Customer notices on real parts: the contacts service over gRPC, an SMTP server, NATS, SQLite.

The customer is told the new date of a renegotiated promise (and, when switched on, that a
promise is in hand) on a channel they consented to, outside their quiet hours, in their own time
zone, and never in the agent's words.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import events_pb2 as followup_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from followup.adapters.contacts_client import GrpcContactDirectory
from followup.domain.model import Channel
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM
from promesa.clock import ManualClock
from promesa.protos import to_timestamp
from tests.contacts import conftest as contacts_fixtures
from tests.contacts.conftest import RunningContacts
from tests.followup.conftest import (
    Mailbox,
    RunningFollowup,
    followup_env,
    make,
    start_followup,
)
from tests.followup.test_events import publish
from tests.support import SERVICE_TOKEN, SUPERVISOR_TOKEN, bearer, events_about, eventually

contacts_service = contacts_fixtures.contacts_service

INTERNAL_TEXT = "INTERNAL: customer is difficult, offer 10% at most"
INTERNAL_REASON = "supplier X let us down again (do not tell the customer)"
NOTICE = reminder_pb2.REMINDER_KIND_CUSTOMER_NOTICE
EMAIL = contact_pb2.CHANNEL_EMAIL
PHONE = contact_pb2.CHANNEL_PHONE


def notices_env(
    nats: NatsServer, data: Path, contacts: RunningContacts, smtp_port: int, **extra: str
) -> dict[str, str]:
    return followup_env(
        nats,
        data,
        CRM_SMTP_HOST="127.0.0.1",
        CRM_SMTP_PORT=str(smtp_port),
        CRM_SMTP_TO="{recipient}@staff.example",
        CRM_NOTICE_FROM="care@shop.example",
        CRM_CONTACTS_ADDRESS=f"127.0.0.1:{contacts.runtime.port}",
        CRM_SERVICE_TOKEN=SERVICE_TOKEN,
        **extra,
    )


@pytest.fixture
async def followup_noticing(
    contacts_service: RunningContacts,
    nats_server: NatsServer,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
) -> AsyncIterator[RunningFollowup]:
    """The follow-up service beside the contacts service, on its clock and its NATS."""
    env = notices_env(nats_server, tmp_path, contacts_service, mailbox[1])
    svc = await start_followup(nats_server, env, contacts_service.clock)
    yield svc
    await svc.stop()


async def a_customer(
    contacts: RunningContacts, followup: RunningFollowup, **overrides: object
) -> str:
    """A contact created through the contacts API, once the follow-up service knows its
    preferences."""
    fields: dict[str, object] = {
        "kind": contact_pb2.CONTACT_KIND_PERSON,
        "display_name": "María José García",
        "preferred_name": "Pepa",
        "emails": ["pepa@example.com"],
        "time_zone": "America/New_York",
        "owner_id": "agent-ana",
        "team": "madrid",
        "preferred_channel": EMAIL,
        "consents": [contact_pb2.ChannelConsent(channel=EMAIL, granted=True)],
    }
    fields.update(overrides)
    reply = await contacts.stub.CreateContact(
        contacts_pb.CreateContactRequest(contact=contact_pb2.Contact(**fields)),  # type: ignore[arg-type]
        metadata=bearer(),
    )
    contact_id = reply.contact.id
    await eventually(lambda: followup.store.profile(contact_id))
    return contact_id


async def renegotiate(svc: RunningFollowup, promise_id: str, new_due: datetime) -> None:
    await svc.stub.RenegotiateDueDate(
        followup_pb.RenegotiateDueDateRequest(
            id=promise_id,
            new_due_at=to_timestamp(new_due),
            reason=INTERNAL_REASON,
            customer_agreed=True,
        ),
        metadata=bearer(),
    )


async def notices_of(svc: RunningFollowup, promise_id: str) -> list[reminder_pb2.ReminderDelivery]:
    reply = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=promise_id), metadata=bearer()
    )
    return [d for d in reply.reminder_deliveries if d.kind == NOTICE]


def mail_to(box: Mailbox, address: str) -> list[EmailMessage]:
    found = []
    for recipients, content in box.messages:
        if address in recipients:
            message = email.message_from_string(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
    return found


def body_of(message: EmailMessage) -> str:
    content = message.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def text_of(message: EmailMessage) -> str:
    return f"{message['Subject']}\n{body_of(message)}"


async def test_a_renegotiated_due_date_is_emailed_to_the_customer_in_their_time_zone(
    contacts_service: RunningContacts,
    followup_noticing: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock, box = followup_noticing, contacts_service.clock, mailbox[0]
    # Given a customer in New York who consented to email, and a promise made to them
    contact_id = await a_customer(contacts_service, svc)
    p = await make(svc, contact_id=contact_id, text=INTERNAL_TEXT)
    assert await svc.scheduler.tick() == 0  # notices on making a promise are off by default

    # when the due date moves with their agreement,
    new_due = datetime(2026, 1, 8, 16, 30, tzinfo=UTC)
    await renegotiate(svc, p.id, new_due)
    assert await svc.scheduler.tick() == 1

    # then they get an email with the new date in their time zone, and nothing internal.
    [message] = mail_to(box, "pepa@example.com")
    assert message["From"] == "care@shop.example"
    assert message["Subject"] == "A new date for your request"
    body = body_of(message)
    assert "Dear Pepa," in body
    assert "we will call you back by Thursday 8 January 2026 at 11:30 (America/New_York)" in body
    assert p.id in body
    for internal in (INTERNAL_TEXT, INTERNAL_REASON, "agent-ana", "10%"):
        assert internal not in text_of(message)

    [notice] = await notices_of(svc, p.id)
    assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED
    assert notice.recipient_id == contact_id
    assert notice.customer_notice.reason == reminder_pb2.NOTICE_REASON_DUE_DATE_RENEGOTIATED
    assert notice.customer_notice.channel == promise_pb2.CHANNEL_EMAIL
    assert notice.customer_notice.template == reminder_pb2.NOTICE_TEMPLATE_NEW_DUE_DATE
    assert notice.customer_notice.due_at.ToDatetime(tzinfo=UTC) == new_due
    assert [(a.notifier, a.success) for a in notice.attempts] == [("customer_email", True)]
    assert await svc.scheduler.tick() == 0  # sent once

    async def announced() -> list[followup_events.CustomerNoticeSent]:
        msgs = await events_about(svc.bus.js, FOLLOWUP_STREAM.name, p.id)
        found = []
        for m in msgs:
            if m.subject == f"crm.followup.customer_notice_sent.{contact_id}":
                event = followup_events.CustomerNoticeSent()
                event.ParseFromString(m.data)
                found.append(event)
        return found

    [event] = await eventually(announced)
    assert (event.notice_id, event.promise_id, event.contact_id) == (notice.id, p.id, contact_id)
    assert event.channel == promise_pb2.CHANNEL_EMAIL
    assert event.template == reminder_pb2.NOTICE_TEMPLATE_NEW_DUE_DATE
    assert "pepa" not in event.SerializeToString().decode(errors="replace").lower()
    assert clock.now() < new_due


async def test_quiet_hours_in_the_customers_zone_hold_the_notice_until_they_end(
    contacts_service: RunningContacts,
    followup_noticing: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock, box = followup_noticing, contacts_service.clock, mailbox[0]
    clock.set(datetime(2026, 1, 5, 21, 30, tzinfo=UTC))  # 22:30 in Madrid
    contact_id = await a_customer(
        contacts_service,
        svc,
        time_zone="Europe/Madrid",
        quiet_hours=contact_pb2.QuietHours(start_minute=21 * 60, end_minute=8 * 60),
    )
    p = await make(svc, contact_id=contact_id)
    await renegotiate(svc, p.id, clock.now() + timedelta(days=3))

    assert await svc.scheduler.tick() == 1  # looked at, and held
    assert mail_to(box, "pepa@example.com") == []
    [held] = await notices_of(svc, p.id)
    quiet_end = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)  # 08:00 in Madrid
    assert held.outcome == reminder_pb2.DELIVERY_OUTCOME_PENDING and not held.attempts
    assert held.customer_notice.quiet_hours_end_at.ToDatetime(tzinfo=UTC) == quiet_end
    assert held.next_attempt_at.ToDatetime(tzinfo=UTC) == quiet_end

    clock.set(quiet_end - timedelta(minutes=1))
    assert await svc.scheduler.tick() == 0
    assert mail_to(box, "pepa@example.com") == []

    clock.set(quiet_end)
    assert await svc.scheduler.tick() == 1
    [message] = mail_to(box, "pepa@example.com")
    assert "Thursday 8 January 2026 at 22:30 (Europe/Madrid)" in body_of(message)
    [sent] = await notices_of(svc, p.id)
    assert sent.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED
    assert sent.attempts[0].attempted_at.ToDatetime(tzinfo=UTC) == quiet_end


async def test_without_a_consented_channel_nothing_is_sent_and_that_is_recorded(
    contacts_service: RunningContacts,
    followup_noticing: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock, box = followup_noticing, contacts_service.clock, mailbox[0]
    phone_only = await a_customer(
        contacts_service,
        svc,
        emails=["phone-only@example.com"],
        preferred_channel=PHONE,
        phones=["+34 612 34 56 78"],
        consents=[
            contact_pb2.ChannelConsent(channel=PHONE, granted=True),
            contact_pb2.ChannelConsent(channel=EMAIL, granted=False),
        ],
    )
    silent = await a_customer(contacts_service, svc, emails=["silent@example.com"], consents=[])
    promises = [await make(svc, contact_id=c) for c in (phone_only, silent)]
    for p in promises:
        await renegotiate(svc, p.id, clock.now() + timedelta(days=3))

    assert await svc.scheduler.tick() == 2
    assert box.messages == []
    reasons = []
    for p in promises:
        [notice] = await notices_of(svc, p.id)
        assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_DROPPED and not notice.attempts
        reasons.append(notice.customer_notice.dropped_reason)
    assert reasons == [
        "no deliverable consented channel (consented to PHONE)",
        "no deliverable consented channel: no consent given",
    ]


async def test_a_discreet_customer_is_only_asked_to_contact_us(
    contacts_service: RunningContacts,
    followup_noticing: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock, box = followup_noticing, contacts_service.clock, mailbox[0]
    contact_id = await a_customer(contacts_service, svc, discreet=True)
    p = await make(svc, contact_id=contact_id, text=INTERNAL_TEXT)
    await renegotiate(svc, p.id, clock.now() + timedelta(days=3))

    assert await svc.scheduler.tick() == 1
    [message] = mail_to(box, "pepa@example.com")
    assert message["Subject"] == "Please contact us"
    assert body_of(message) == "Hello,\n\nPlease contact us.\n"  # no name, date, or id
    [notice] = await notices_of(svc, p.id)
    assert notice.customer_notice.template == reminder_pb2.NOTICE_TEMPLATE_PLEASE_CONTACT_US


async def test_internal_notes_reach_the_owner_and_never_the_customer(
    contacts_service: RunningContacts,
    nats_server: NatsServer,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, clock = mailbox[0], contacts_service.clock
    env = notices_env(
        nats_server, tmp_path, contacts_service, mailbox[1], CRM_CUSTOMER_NOTICES="true"
    )
    svc = await start_followup(nats_server, env, clock)
    try:
        contact_id = await a_customer(contacts_service, svc)
        # A promise made with notices switched on: the customer hears it is in hand,
        p = await make(svc, contact_id=contact_id, text=INTERNAL_TEXT, due_in=timedelta(hours=48))
        assert await svc.scheduler.tick() == 1
        # the owner is reminded in the promise's own words, and the date moves.
        clock.advance(timedelta(hours=24))
        assert await svc.scheduler.tick() == 1
        await renegotiate(svc, p.id, clock.now() + timedelta(days=2))
        assert await svc.scheduler.tick() == 1
        await svc.stub.KeepPromise(
            followup_pb.KeepPromiseRequest(
                id=p.id, evidence=promise_pb2.Evidence(note="INTERNAL: refunded 10%")
            ),
            metadata=bearer(),
        )
        clock.advance(timedelta(days=3))
        await svc.scheduler.drain()
    finally:
        await svc.stop()

    [owner_mail] = mail_to(box, "agent-ana@staff.example")
    assert INTERNAL_TEXT in body_of(owner_mail)
    customer_mail = mail_to(box, "pepa@example.com")
    assert [m["Subject"] for m in customer_mail] == [
        "Your request is in hand",
        "A new date for your request",
    ]
    assert "Your request is in hand: we will call you back by" in body_of(customer_mail[0])
    for message in customer_mail:
        for internal in (INTERNAL_TEXT, INTERNAL_REASON, "refunded", "10%", "agent-ana"):
            assert internal not in text_of(message)


async def test_a_notice_for_a_contact_erased_meanwhile_is_dropped(
    contacts_service: RunningContacts,
    followup_noticing: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock, box = followup_noticing, contacts_service.clock, mailbox[0]
    contact_id = await a_customer(contacts_service, svc, time_zone="Europe/Madrid")
    p = await make(svc, contact_id=contact_id)
    await renegotiate(svc, p.id, clock.now() + timedelta(days=3))
    await contacts_service.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=contact_id, reason="customer asked"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )

    async def erased_here() -> bool:
        return (await svc.app.store.get(p.id) or p).erased_at is not None

    await eventually(erased_here)
    assert await svc.scheduler.tick() == 1
    assert box.messages == []
    [notice] = await notices_of(svc, p.id)
    assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_DROPPED
    assert notice.customer_notice.dropped_reason == "contact erased"


@pytest.fixture
async def followup_on_its_own_nats(
    contacts_service: RunningContacts,
    own_nats: NatsServer,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
) -> AsyncIterator[RunningFollowup]:
    """A follow-up service that has not heard the contacts service's events (another NATS): its
    read model says what a test publishes, while GetContact says what is true now."""
    env = notices_env(own_nats, tmp_path / "own", contacts_service, mailbox[1])
    svc = await start_followup(own_nats, env, contacts_service.clock)
    yield svc
    await svc.stop()


async def test_the_contacts_service_decides_erased_and_unknown_contacts_at_send_time(
    contacts_service: RunningContacts,
    followup_on_its_own_nats: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock, box = followup_on_its_own_nats, contacts_service.clock, mailbox[0]
    created = await contacts_service.stub.CreateContact(
        contacts_pb.CreateContactRequest(
            contact=contact_pb2.Contact(
                kind=contact_pb2.CONTACT_KIND_PERSON,
                display_name="Gone Soon",
                emails=["gone@example.com"],
            )
        ),
        metadata=bearer(),
    )
    erased_id = created.contact.id
    await contacts_service.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=erased_id, reason="customer asked"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    expected = {erased_id: "contact erased", "nobody-by-this-id": "contact not found"}
    for contact_id in expected:
        profile = contacts_events.ContactProfile(
            contact_id=contact_id,
            preferred_channel=EMAIL,
            consents=[contact_pb2.ChannelConsent(channel=EMAIL, granted=True)],
        )
        await publish(
            svc,
            CONTACTS_STREAM,
            "crm.contacts.created",
            contacts_events.ContactCreated(profile=profile),
        )
        await eventually(lambda: svc.store.profile(contact_id))  # noqa: B023
    promises = {c: await make(svc, contact_id=c) for c in expected}
    for p in promises.values():
        await renegotiate(svc, p.id, clock.now() + timedelta(days=3))

    assert await svc.scheduler.tick() == 2
    assert box.messages == []
    for contact_id, reason in expected.items():
        [notice] = await notices_of(svc, promises[contact_id].id)
        assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_DROPPED
        assert notice.customer_notice.dropped_reason == reason


async def test_the_contacts_client_follows_a_merge_and_reads_with_the_service_token(
    contacts_service: RunningContacts,
) -> None:
    async def person(address: str) -> str:
        reply = await contacts_service.stub.CreateContact(
            contacts_pb.CreateContactRequest(
                contact=contact_pb2.Contact(
                    kind=contact_pb2.CONTACT_KIND_PERSON,
                    display_name="Ana Ruiz",
                    preferred_name="Ana",
                    emails=[address],
                )
            ),
            metadata=bearer(),
        )
        return reply.contact.id

    survivor, duplicate = await person("ana@example.com"), await person("ana.r@example.com")
    await contacts_service.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(survivor_id=survivor, duplicate_id=duplicate),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    directory = GrpcContactDirectory(f"127.0.0.1:{contacts_service.runtime.port}", SERVICE_TOKEN)
    try:
        card = await directory.card(duplicate)
        assert card is not None and card.contact_id == survivor and not card.erased
        assert card.name == "Ana" and card.address(Channel.EMAIL) == "ana@example.com"
        assert "ana@" not in repr(card)  # personal data stays out of logs
    finally:
        await directory.close()


async def test_a_notice_waits_and_retries_while_the_contacts_service_is_unreachable(
    nats_server: NatsServer, tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> None:
    env = followup_env(
        nats_server,
        tmp_path,
        CRM_SMTP_HOST="127.0.0.1",
        CRM_SMTP_PORT=str(mailbox[1]),
        CRM_SMTP_TO="{recipient}@staff.example",
        CRM_CONTACTS_ADDRESS=f"127.0.0.1:{free_port()}",  # nothing listens there
        CRM_SERVICE_TOKEN=SERVICE_TOKEN,
    )
    svc = await start_followup(nats_server, env, ManualClock())
    try:
        profile = contacts_events.ContactProfile(
            contact_id="c-away", consents=[contact_pb2.ChannelConsent(channel=EMAIL, granted=True)]
        )
        created = contacts_events.ContactCreated(profile=profile)
        await publish(svc, CONTACTS_STREAM, "crm.contacts.created", created)
        await eventually(lambda: svc.store.profile("c-away"))
        p = await make(svc, contact_id="c-away")
        await renegotiate(svc, p.id, svc.clock.now() + timedelta(days=3))

        assert await svc.scheduler.tick() == 1
        [notice] = await notices_of(svc, p.id)
        assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_PENDING
        [attempt] = notice.attempts
        assert (attempt.notifier, attempt.success) == ("contacts", False)
        assert "UNAVAILABLE" in attempt.error
        retry_at = svc.clock.now() + timedelta(seconds=30)  # CRM_REMINDER_RETRY_SECONDS
        assert notice.next_attempt_at.ToDatetime(tzinfo=UTC) == retry_at
        svc.clock.set(retry_at - timedelta(seconds=1))
        assert await svc.scheduler.tick() == 0
        svc.clock.set(retry_at)
        assert await svc.scheduler.tick() == 1
        [notice] = await notices_of(svc, p.id)
        assert len(notice.attempts) == 2 and mailbox[0].messages == []
    finally:
        await svc.stop()
