"""The contacts service over real gRPC, with its events on a real JetStream."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from nats.aio.msg import Msg

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import events_pb2 as contacts_events
from promesa.bus import CONTACTS_STREAM
from tests.contacts.conftest import RunningContacts
from tests.support import (
    AGENT_TOKEN,
    SUPERVISOR_TOKEN,
    bearer,
    events_about,
    eventually,
)


def a_person(**overrides: object) -> contact_pb2.Contact:
    fields: dict[str, object] = {
        "kind": contact_pb2.CONTACT_KIND_PERSON,
        "display_name": "María José García",
        "preferred_name": "Pepa",
        "emails": ["pepa@example.com"],
        "phones": ["+34 612 34 56 78"],
        "time_zone": "Europe/Madrid",
        "owner_id": "agent-ana",
        "team": "madrid",
        "tags": ["VIP"],
        "preferred_channel": contact_pb2.CHANNEL_PHONE,
        "consents": [contact_pb2.ChannelConsent(channel=contact_pb2.CHANNEL_PHONE, granted=True)],
        "quiet_hours": contact_pb2.QuietHours(start_minute=22 * 60, end_minute=8 * 60),
    }
    fields.update(overrides)
    return contact_pb2.Contact(**fields)  # type: ignore[arg-type]


async def create(
    svc: RunningContacts, contact: contact_pb2.Contact, request_id: str = "", token: str = ""
) -> contact_pb2.Contact:
    response = await svc.stub.CreateContact(
        contacts_pb.CreateContactRequest(contact=contact, request_id=request_id),
        metadata=bearer(token or AGENT_TOKEN),
    )
    return response.contact


async def test_created_contact_is_normalised_and_announced_with_cloudevents_headers(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["Pepa@Example.COM"]))

    assert created.id and created.etag == "1"
    assert created.emails == ["pepa@example.com"]
    assert created.phones == ["+34612345678"]
    assert created.tags == ["vip"]
    assert created.created_by == "agent-ana"
    assert created.status == contact_pb2.LIFECYCLE_STATUS_NEVER_PURCHASED

    js = contacts_service.bus.js

    async def announced() -> list[Msg]:
        return await events_about(js, CONTACTS_STREAM.name, created.id)

    [msg] = await eventually(announced)
    headers = msg.headers or {}
    assert msg.subject == f"crm.contacts.created.{created.id}"
    assert headers["ce-type"] == "crm.contacts.v1.ContactCreated"
    assert headers["ce-source"] == "promesa/contacts"
    assert headers["ce-specversion"] == "1.0"
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    assert headers["ce-time"].endswith("Z")
    event = contacts_events.ContactCreated.FromString(msg.data)
    assert event.profile.contact_id == created.id
    assert event.profile.time_zone == "Europe/Madrid"
    assert event.actor == "agent-ana"
    assert b"Pepa" not in msg.data and b"pepa@" not in msg.data


async def test_retried_create_with_the_same_request_id_makes_one_contact(
    contacts_service: RunningContacts,
) -> None:
    first = await create(contacts_service, a_person(emails=["retry@example.com"]), "req-1")
    again = await create(contacts_service, a_person(emails=["retry@example.com"]), "req-1")
    assert again.id == first.id

    async def announced() -> list[Msg]:
        return await events_about(contacts_service.bus.js, CONTACTS_STREAM.name, first.id)

    await eventually(announced)
    await contacts_service.runtime.parts.relay.flush()
    assert len(await announced()) == 1


async def test_duplicate_email_is_refused_naming_the_existing_contact(
    contacts_service: RunningContacts,
) -> None:
    first = await create(contacts_service, a_person(emails=["dup@example.com"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(emails=["DUP@example.com"], display_name="Other"))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id in (caught.value.details() or "")


async def test_update_changes_only_masked_fields_and_refuses_a_stale_etag(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["upd@example.com"]))
    change = contact_pb2.Contact(
        id=created.id, etag=created.etag, preferred_name="Pepita", team="ignored"
    )
    response = await contacts_service.stub.UpdateContact(
        contacts_pb.UpdateContactRequest(
            contact=change, update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"])
        ),
        metadata=bearer(),
    )
    updated = response.contact
    assert updated.preferred_name == "Pepita"
    assert updated.team == "madrid"
    assert updated.etag == "2"

    stale = contact_pb2.Contact(id=created.id, etag=created.etag, preferred_name="Pepi")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=stale, update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"])
            ),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED


async def test_list_filters_and_pages_through_contacts(contacts_service: RunningContacts) -> None:
    # Another team's contacts: a supervisor of every team creates and lists them.
    ids = []
    for i in range(5):
        c = await create(
            contacts_service,
            a_person(emails=[f"page{i}@example.com"], team="lisbon", display_name=f"Page {i}"),
            token=SUPERVISOR_TOKEN,
        )
        ids.append(c.id)
        contacts_service.clock.advance(timedelta(seconds=1))
    seen: list[str] = []
    token = ""
    while True:
        page = await contacts_service.stub.ListContacts(
            contacts_pb.ListContactsRequest(team="lisbon", page_size=2, page_token=token),
            metadata=bearer(SUPERVISOR_TOKEN),
        )
        seen.extend(c.id for c in page.contacts)
        token = page.next_page_token
        if not token:
            break
    assert seen == ids


async def test_list_by_tag_matches_it_written_in_any_case(
    contacts_service: RunningContacts,
) -> None:
    tagged = await create(contacts_service, a_person(emails=["tag@example.com"], tags=["Gold"]))
    page = await contacts_service.stub.ListContacts(
        contacts_pb.ListContactsRequest(tag=" GOLD "), metadata=bearer()
    )
    assert [c.id for c in page.contacts] == [tagged.id]


async def test_search_finds_a_phone_written_in_any_common_format(
    contacts_service: RunningContacts,
) -> None:
    created = await create(
        contacts_service,
        a_person(emails=["phone@example.com"], phones=["+1 (415) 555-0132"], display_name="Zoe"),
    )
    for written in ("415-555-0132", "+14155550132", "001 415 555 0132", "(415) 555 0132"):
        found = await contacts_service.stub.SearchContacts(
            contacts_pb.SearchContactsRequest(phone=written), metadata=bearer()
        )
        assert [c.id for c in found.contacts] == [created.id], written
    by_name = await contacts_service.stub.SearchContacts(
        contacts_pb.SearchContactsRequest(name_prefix="zo"), metadata=bearer()
    )
    assert created.id in [c.id for c in by_name.contacts]


async def test_merge_folds_a_duplicate_into_the_survivor(
    contacts_service: RunningContacts,
) -> None:
    survivor = await create(contacts_service, a_person(emails=["keep@example.com"]))
    duplicate = await create(
        contacts_service,
        a_person(emails=["other@example.com"], phones=["+44 20 7946 0958"], tags=["press"]),
    )
    response = await contacts_service.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(survivor_id=survivor.id, duplicate_id=duplicate.id),
        metadata=bearer(),
    )
    merged = response.survivor
    assert set(merged.emails) == {"keep@example.com", "other@example.com"}
    assert "+442079460958" in merged.phones
    assert set(merged.tags) == {"vip", "press"}
    gone = await contacts_service.stub.GetContact(
        contacts_pb.GetContactRequest(id=duplicate.id), metadata=bearer()
    )
    assert gone.contact.merged_into_id == survivor.id
    assert not gone.contact.emails
    # Retrying the merge is harmless.
    again = await contacts_service.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(survivor_id=survivor.id, duplicate_id=duplicate.id),
        metadata=bearer(),
    )
    assert again.survivor.id == survivor.id


async def test_erase_removes_personal_data_keeps_a_tombstone_and_frees_the_email(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["forget@example.com"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.EraseContact(
            contacts_pb.EraseContactRequest(id=created.id), metadata=bearer()
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    erased = await contacts_service.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=created.id, reason="customer asked"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    tombstone = (
        await contacts_service.stub.GetContact(
            contacts_pb.GetContactRequest(id=created.id), metadata=bearer()
        )
    ).contact
    assert tombstone.erased_at == erased.erased_at
    assert tombstone.display_name == "" and not tombstone.emails and not tombstone.phones
    assert tombstone.owner_id == "agent-ana"
    again = await create(contacts_service, a_person(emails=["forget@example.com"]))
    assert again.id != created.id

    async def erased_event() -> list[object]:
        msgs = await events_about(contacts_service.bus.js, CONTACTS_STREAM.name, created.id)
        return [m for m in msgs if m.subject == f"crm.contacts.erased.{created.id}"]

    await eventually(erased_event)


async def test_a_person_can_belong_to_an_organisation_and_be_referred_by_a_customer(
    contacts_service: RunningContacts,
) -> None:
    org = await create(
        contacts_service,
        contact_pb2.Contact(
            kind=contact_pb2.CONTACT_KIND_ORGANISATION,
            display_name="Acme S.L.",
            emails=["hello@acme.example"],
        ),
    )
    referrer = await create(contacts_service, a_person(emails=["friend@example.com"]))
    person = await create(
        contacts_service,
        a_person(emails=["new@example.com"], organisation_id=org.id, referred_by_id=referrer.id),
    )
    assert person.organisation_id == org.id
    assert person.referred_by_id == referrer.id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(
            contacts_service, a_person(emails=["x@example.com"], organisation_id=referrer.id)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
