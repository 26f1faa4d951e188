"""The evidence of an erasure, and that nothing of the person lingers in the database files.

EraseContact keeps who, when and why in an erasure record (no personal data); the other
services' confirmations come on their streams and are added once each, in any order;
ListErasures shows the records newest first. After EraseContact answers, neither the SQLite
database nor its WAL holds any of the person's data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from google.protobuf.message import Message

from contacts.domain.model import ContactDetails, ContactDraft, ContactKind
from contacts.entrypoints.followup_consumer import CONSUMER as FOLLOWUP_CONSUMER
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.followup.v1 import events_pb2 as followup_events
from crm.interactions.v1 import events_pb2 as interactions_events
from promesa.auth import Identity, Role
from promesa.bus import FOLLOWUP_STREAM, INTERACTIONS_STREAM, StreamSpec
from promesa.event_catalog import FOLLOWUP, INTERACTIONS, EventCatalog
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.contacts.conftest import ContactsDesk, RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.support import SUPERVISOR_TOKEN, bearer, eventually

SAM = Identity("sup-sam", Role.SUPERVISOR)


async def erase(
    svc: RunningContacts, contact_id: str, reason: str
) -> contacts_pb.EraseContactResponse:
    return await svc.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=contact_id, reason=reason),
        metadata=bearer(SUPERVISOR_TOKEN),
    )


async def erasures(svc: RunningContacts) -> list[contacts_pb.ErasureRecord]:
    reply = await svc.stub.ListErasures(
        contacts_pb.ListErasuresRequest(), metadata=bearer(SUPERVISOR_TOKEN)
    )
    return list(reply.erasures)


async def publish(
    svc: RunningContacts,
    stream: StreamSpec,
    catalog: EventCatalog,
    message: Message,
    contact_id: str,
    *,
    event_id: str = "",
) -> str:
    """Publishes as the producing service would (it declares its own stream)."""
    event_id = event_id or new_id()
    await svc.bus.declare_stream(stream)
    await svc.bus.js.publish(
        catalog.subject(message, contact_id),
        message.SerializeToString(),
        headers={
            "ce-id": event_id,
            "ce-type": message.DESCRIPTOR.full_name,
            "ce-source": f"promesa/{catalog.domain}",
            "ce-subject": contact_id,
            "Nats-Msg-Id": new_id(),  # a new message id: a redelivery past the duplicate window
        },
    )
    return event_id


async def test_erase_keeps_who_when_and_why_in_a_record_without_personal_data(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["record@example.com"]))

    erased = await erase(contacts_service, created.id, "GDPR request REF-118")

    [record] = await erasures(contacts_service)
    assert record.contact_id == created.id
    assert record.requested_by == "sup-sam"
    assert record.reason == "GDPR request REF-118"
    assert record.erased_at == erased.erased_at
    assert list(record.confirmations) == []
    text = str(record)
    for personal in ("María", "Pepa", "record@example.com", "+34612345678"):
        assert personal not in text
    # Erasing again is harmless: still one record, the first one.
    again = await erase(contacts_service, created.id, "asked twice")
    assert again.erased_at == erased.erased_at
    assert [r.reason for r in await erasures(contacts_service)] == ["GDPR request REF-118"]


async def test_each_services_confirmation_is_added_once_in_whatever_order_they_come(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["confirm@example.com"]))
    await erase(contacts_service, created.id, "REF-7")
    now = contacts_service.clock.now()
    by_interactions = interactions_events.ContactErasureConfirmed(
        contact_id=created.id,
        service="interactions",
        occurred_at=to_timestamp(now + timedelta(seconds=1)),
    )
    by_followup = followup_events.ContactErasureConfirmed(
        contact_id=created.id,
        service="followup",
        occurred_at=to_timestamp(now + timedelta(seconds=2)),
    )

    # The later confirmation comes first, and is redelivered after the other one.
    first = await publish(contacts_service, FOLLOWUP_STREAM, FOLLOWUP, by_followup, created.id)
    await publish(contacts_service, INTERACTIONS_STREAM, INTERACTIONS, by_interactions, created.id)
    await publish(
        contacts_service, FOLLOWUP_STREAM, FOLLOWUP, by_followup, created.id, event_id=first
    )

    async def both() -> list[contacts_pb.ErasureConfirmation]:
        [record] = await erasures(contacts_service)
        return list(record.confirmations) if len(record.confirmations) == 2 else []

    confirmations = await eventually(both)
    assert [(c.service, c.confirmed_at) for c in confirmations] == [
        ("interactions", by_interactions.occurred_at),
        ("followup", by_followup.occurred_at),
    ]
    # A redelivery under a new event id (a producer replaying its outbox) adds nothing either:
    # it is published, then a marker behind it on the same stream, to know it was handled.
    marker = await create(contacts_service, a_person(emails=["marker@example.com"]))
    await erase(contacts_service, marker.id, "REF-8")
    await publish(contacts_service, FOLLOWUP_STREAM, FOLLOWUP, by_followup, created.id)
    marked = followup_events.ContactErasureConfirmed(
        contact_id=marker.id, service="followup", occurred_at=to_timestamp(now)
    )
    await publish(contacts_service, FOLLOWUP_STREAM, FOLLOWUP, marked, marker.id)

    async def marker_confirmed() -> bool:
        record = await contacts_service.store.erasure(marker.id)
        return record is not None and bool(record.confirmations)

    await eventually(marker_confirmed)
    record = await contacts_service.store.erasure(created.id)
    assert record is not None
    assert [(c.service, c.confirmed_at) for c in record.confirmations] == [
        ("interactions", now + timedelta(seconds=1)),
        ("followup", now + timedelta(seconds=2)),
    ]
    assert not await contacts_service.store.dead_letters()


async def test_a_confirmation_without_a_contact_goes_to_the_dead_letters(
    contacts_service: RunningContacts,
) -> None:
    blank = followup_events.ContactErasureConfirmed(
        service="followup", occurred_at=to_timestamp(contacts_service.clock.now())
    )
    event_id = await publish(contacts_service, FOLLOWUP_STREAM, FOLLOWUP, blank, "nobody")

    async def dead() -> list[dict[str, object]]:
        letters = await contacts_service.store.dead_letters()
        return [d for d in letters if d["event_id"] == event_id]

    [letter] = await eventually(dead)
    assert letter["consumer"] == FOLLOWUP_CONSUMER


async def test_list_erasures_pages_newest_first(contacts_desk: ContactsDesk) -> None:
    ids = []
    for i in range(5):
        details = ContactDetails(kind=ContactKind.PERSON, display_name=f"Gone {i}")
        contact = await contacts_desk.commands.create(
            ContactDraft(ContactKind.PERSON, details), "", SAM
        )
        await contacts_desk.commands.erase(contact.id, f"REF-{i}", SAM)
        ids.append(contact.id)
        contacts_desk.clock.advance(timedelta(minutes=1))
    seen: list[str] = []
    token = ""
    while True:
        page = await contacts_desk.queries.erasures(2, token, SAM)
        seen.extend(r.contact_id for r in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))


# --- nothing lingers in the files ----------------------------------------------------------------

PERSONAL = {
    "display_name": "Zenobia Quillfeather",
    "preferred_name": "Zezette",
    "email": "zenobia.quill@example.org",
    "phone": "+34 699 12 34 56",
    "address_line": "17 Calle Imaginaria",
    "locality": "Villaquimera",
    "postal_code": "QX9 7ZZ",
    "tag": "zanzibar-collector",
}
# As the service stores them: the phone in E.164, names also lower-cased for search.
TRACES = [
    *(value for key, value in PERSONAL.items() if key != "phone"),
    "+34699123456",
    "zenobia quillfeather",
    "zezette",
]


def files_hold(data: Path) -> set[str]:
    """The traces of the person found in the raw bytes of the database and its WAL."""
    raw = b"".join(
        path.read_bytes()
        for path in (data / "contacts.db", data / "contacts.db-wal")
        if path.exists()
    )
    return {t for t in TRACES if t.encode() in raw}


async def test_after_the_erasure_answers_the_database_files_hold_none_of_the_persons_data(
    contacts_service: RunningContacts, tmp_path: Path
) -> None:
    # Given a person with every kind of personal data, changed once (an older version too),
    person = a_person(
        display_name=PERSONAL["display_name"],
        preferred_name=PERSONAL["preferred_name"],
        emails=[PERSONAL["email"]],
        phones=[PERSONAL["phone"]],
        postal_address=contact_pb2.PostalAddress(
            lines=[PERSONAL["address_line"]],
            locality=PERSONAL["locality"],
            postal_code=PERSONAL["postal_code"],
            country_code="ES",
        ),
        tags=[PERSONAL["tag"]],
    )
    created = await create(contacts_service, person)
    await contacts_service.stub.SearchContacts(
        contacts_pb.SearchContactsRequest(name_prefix="zeno"), metadata=bearer()
    )
    assert files_hold(tmp_path) == set(TRACES)  # the test reads the files the data is in

    # when the erasure answers,
    await erase(contacts_service, created.id, "REF-900")

    # then neither the database nor its WAL holds any of it.
    assert files_hold(tmp_path) == set()
    # The contact's tombstone and the record of the erasure are still there.
    [record] = await erasures(contacts_service)
    assert record.contact_id == created.id
