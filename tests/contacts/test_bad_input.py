"""Bad input gets INVALID_ARGUMENT with a field violation naming the field, and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from tests.contacts.conftest import RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.support import bearer, field_violations

CREATE_CASES = {
    "empty name": (a_person(display_name="  "), "contact.display_name"),
    "bad email": (a_person(emails=["not-an-email"]), "contact.emails[0]"),
    "unparseable phone": (a_person(phones=["call me maybe"]), "contact.phones[0]"),
    "unknown time zone": (a_person(time_zone="Mars/Olympus_Mons"), "contact.time_zone"),
    "quiet hours out of range": (
        a_person(quiet_hours=contact_pb2.QuietHours(start_minute=-5, end_minute=1440)),
        "contact.quiet_hours.start_minute",
    ),
    "over-long name": (a_person(display_name="x" * 201), "contact.display_name"),
    "over-long tag": (a_person(tags=["t" * 101]), "contact.tags[0]"),
    "unknown enum value": (a_person(kind=42), "contact.kind"),
    "unknown organisation": (a_person(organisation_id="no-such-org"), "contact.organisation_id"),
    "unknown referrer": (a_person(referred_by_id="no-such-person"), "contact.referred_by_id"),
    "consent without a channel": (
        a_person(consents=[contact_pb2.ChannelConsent(granted=True)]),
        "contact.consents[0].channel",
    ),
}


@pytest.mark.parametrize("case", CREATE_CASES, ids=list(CREATE_CASES))
async def test_bad_contact_is_refused_with_a_field_violation_and_nothing_written(
    contacts_service: RunningContacts, case: str
) -> None:
    contact, field = CREATE_CASES[case]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, contact)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    assert await contacts_service.store.outbox_backlog() == 0
    page = await contacts_service.stub.ListContacts(
        contacts_pb.ListContactsRequest(), metadata=bearer()
    )
    assert list(page.contacts) == []


async def test_every_violation_is_reported_at_once(contacts_service: RunningContacts) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(display_name="", emails=["x"], time_zone="Nowhere"))
    assert {"contact.display_name", "contact.emails[0]", "contact.time_zone"} <= set(
        field_violations(caught.value)
    )


async def test_update_refuses_unknown_and_output_only_mask_paths(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["mask@example.com"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=contact_pb2.Contact(id=created.id, etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["shoe_size", "status"]),
            ),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert "update_mask.paths[0]" in violations and "update_mask.paths[1]" in violations


@pytest.mark.parametrize("token", ["garbage", "eyJjIjpbXSwicSI6Im90aGVyIn0", "%%%"])
async def test_a_page_token_that_is_not_ours_is_refused(
    contacts_service: RunningContacts, token: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.ListContacts(
            contacts_pb.ListContactsRequest(page_token=token), metadata=bearer()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(caught.value)


async def test_merging_a_contact_into_itself_is_refused(contacts_service: RunningContacts) -> None:
    created = await create(contacts_service, a_person(emails=["self@example.com"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.MergeContacts(
            contacts_pb.MergeContactsRequest(survivor_id=created.id, duplicate_id=created.id),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "duplicate_id" in field_violations(caught.value)


@pytest.mark.parametrize("rpc", ["get", "update", "merge", "erase"])
async def test_unknown_ids_are_not_found(contacts_service: RunningContacts, rpc: str) -> None:
    stub = contacts_service.stub
    known = await create(contacts_service, a_person(emails=[f"known-{rpc}@example.com"]))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: stub.GetContact(contacts_pb.GetContactRequest(id="nope"), metadata=bearer()),
        "update": lambda: stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=contact_pb2.Contact(id="nope", preferred_name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"]),
            ),
            metadata=bearer(),
        ),
        "merge": lambda: stub.MergeContacts(
            contacts_pb.MergeContactsRequest(survivor_id=known.id, duplicate_id="nope"),
            metadata=bearer(),
        ),
        "erase": lambda: stub.EraseContact(
            contacts_pb.EraseContactRequest(id="nope"),
            metadata=(("authorization", "Bearer supervisor-token"),),
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls[rpc]()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_search_without_criteria_or_with_a_bad_email_is_refused(
    contacts_service: RunningContacts,
) -> None:
    for request, field in (
        (contacts_pb.SearchContactsRequest(), "name_prefix"),
        (contacts_pb.SearchContactsRequest(email="nope"), "email"),
        (contacts_pb.SearchContactsRequest(phone="abc"), "phone"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await contacts_service.stub.SearchContacts(request, metadata=bearer())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(caught.value)


async def test_reusing_a_request_id_for_another_contact_is_refused(
    contacts_service: RunningContacts,
) -> None:
    await create(contacts_service, a_person(emails=["first@example.com"]), "req-x")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(emails=["second@example.com"]), "req-x")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(caught.value)


async def test_a_timestamp_outside_the_calendar_is_invalid_argument(
    contacts_service: RunningContacts,
) -> None:
    before_year_one = timestamp_pb2.Timestamp(seconds=-62135596800 - 86400)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.ListContacts(
            contacts_pb.ListContactsRequest(updated_since=before_year_one), metadata=bearer()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "updated_since" in field_violations(caught.value)
