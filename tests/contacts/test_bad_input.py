"""Bad input gets INVALID_ARGUMENT with a field violation naming the field, and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from tests.contacts.conftest import RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.support import SUPERVISOR_TOKEN, bearer, field_violations

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
    "unset kind": (a_person(kind=contact_pb2.CONTACT_KIND_UNSPECIFIED), "contact.kind"),
    "NUL in the name": (a_person(display_name="Pepa\x00"), "contact.display_name"),
    "escape in the preferred name": (
        a_person(preferred_name="\x1b[31mPepa"),
        "contact.preferred_name",
    ),
    "NUL in a tag": (a_person(tags=["vip", "v\x00ip"]), "contact.tags[1]"),
    "NUL in an email": (a_person(emails=["pe\x00pa@example.com"]), "contact.emails[0]"),
    "NUL in a phone": (a_person(phones=["+34 612\x00 34 56 78"]), "contact.phones[0]"),
    "line break in an address line": (
        a_person(postal_address=contact_pb2.PostalAddress(lines=["Calle Mayor 1\nBajo"])),
        "contact.postal_address.lines[0]",
    ),
    "NUL in the locality": (
        a_person(postal_address=contact_pb2.PostalAddress(locality="Madrid\x00")),
        "contact.postal_address.locality",
    ),
    "NUL in the owner": (a_person(owner_id="agent-ana\x00"), "contact.owner_id"),
    "NUL in the team": (a_person(team="mad\x00rid"), "contact.team"),
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


async def test_link_ids_with_control_characters_are_refused_as_such(
    contacts_service: RunningContacts,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(organisation_id="org\x00", referred_by_id="c\x00"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    refused = {(v.field, v.description) for v in all_violations(caught.value)}
    for field in ("contact.organisation_id", "contact.referred_by_id"):
        assert (field, "must not contain control characters") in refused


async def test_a_request_id_with_control_characters_is_refused_and_nothing_written(
    contacts_service: RunningContacts,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(emails=["nul@example.com"]), "req\x00")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(caught.value)
    assert await contacts_service.store.holder_of_email("nul@example.com") is None


async def test_ids_filters_and_reasons_with_control_characters_are_refused(
    contacts_service: RunningContacts,
) -> None:
    stub = contacts_service.stub
    known = await create(contacts_service, a_person(emails=["ctl@example.com"]))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "id": lambda: stub.GetContact(
            contacts_pb.GetContactRequest(id=known.id + "\x00"), metadata=bearer()
        ),
        "contact.id": lambda: stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=contact_pb2.Contact(id="\x07" + known.id, preferred_name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"]),
            ),
            metadata=bearer(),
        ),
        "update_mask.paths[0]": lambda: stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=contact_pb2.Contact(id=known.id, preferred_name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["preferred_name\x00"]),
            ),
            metadata=bearer(),
        ),
        "survivor_id": lambda: stub.MergeContacts(
            contacts_pb.MergeContactsRequest(survivor_id="s\x00", duplicate_id=known.id),
            metadata=bearer(),
        ),
        "reason": lambda: stub.EraseContact(
            contacts_pb.EraseContactRequest(id=known.id, reason="ticket\x00 42"),
            metadata=bearer(SUPERVISOR_TOKEN),
        ),
        "tag": lambda: stub.ListContacts(
            contacts_pb.ListContactsRequest(tag="vip\x00"), metadata=bearer()
        ),
        "name_prefix": lambda: stub.SearchContacts(
            contacts_pb.SearchContactsRequest(name_prefix="Pe\x00"), metadata=bearer()
        ),
        "email": lambda: stub.SearchContacts(
            contacts_pb.SearchContactsRequest(email="ctl\x00@example.com"), metadata=bearer()
        ),
    }
    for field, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in field_violations(caught.value), field
    still = await stub.GetContact(contacts_pb.GetContactRequest(id=known.id), metadata=bearer())
    assert still.contact.etag == known.etag and not still.contact.erased_at.seconds


async def test_an_update_refuses_an_unset_kind_only_when_the_mask_names_it(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["kind@example.com"]))
    unset = contact_pb2.Contact(id=created.id, preferred_name="Pepita")  # kind left unset

    renamed = await contacts_service.stub.UpdateContact(
        contacts_pb.UpdateContactRequest(
            contact=unset, update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"])
        ),
        metadata=bearer(),
    )
    assert renamed.contact.kind == contact_pb2.CONTACT_KIND_PERSON

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=unset, update_mask=field_mask_pb2.FieldMask(paths=["kind"])
            ),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contact.kind" in field_violations(caught.value)


# Clients such as grpc-js refuse trailers past 8 KB, and then hang until their deadline.
TRAILER_LIMIT = 8 * 1024


def trailer_size(error: grpc.aio.AioRpcError) -> int:
    """The bytes of an error's trailers: its trailing metadata (the rich status among them)
    and its message."""
    metadata = error.trailing_metadata() or ()
    return sum(len(key) + len(value) for key, value in metadata) + len(
        (error.details() or "").encode()
    )


def all_violations(
    error: grpc.aio.AioRpcError,
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.extend(bad.field_violations)
    return found


async def test_a_thousand_bad_tags_answer_a_capped_list_in_a_small_trailer(
    contacts_service: RunningContacts,
) -> None:
    tags = [f"{i}\x00" + "t" * 100 for i in range(1000)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(tags=tags))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = all_violations(caught.value)
    assert len(violations) == 21
    assert violations[0].field == "contact.tags"  # more than the 50 tags a contact may have
    assert "more" in violations[-1].description
    assert trailer_size(caught.value) < TRAILER_LIMIT
    # The channel is still good for the next call.
    page = await contacts_service.stub.ListContacts(
        contacts_pb.ListContactsRequest(), metadata=bearer()
    )
    assert list(page.contacts) == []


async def test_a_huge_id_is_refused_and_an_unknown_one_not_found_in_small_trailers(
    contacts_service: RunningContacts,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.GetContact(
            contacts_pb.GetContactRequest(id="x" * 100_000), metadata=bearer()
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer_size(caught.value) < TRAILER_LIMIT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.GetContact(
            contacts_pb.GetContactRequest(id="😀" * 200), metadata=bearer()
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert trailer_size(caught.value) < TRAILER_LIMIT


async def test_an_over_long_display_name_answers_in_a_small_trailer(
    contacts_service: RunningContacts,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, a_person(display_name="x" * 100_000, emails=["y" * 50_000]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailer_size(caught.value) < TRAILER_LIMIT


YEAR_ONE = -62135596800
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59
IN_THE_CALENDAR = [
    timestamp_pb2.Timestamp(seconds=YEAR_ONE),
    timestamp_pb2.Timestamp(seconds=LAST_SECOND, nanos=999_999_999),
]
OUTSIDE_THE_CALENDAR = [
    timestamp_pb2.Timestamp(seconds=YEAR_ONE - 1),
    timestamp_pb2.Timestamp(seconds=LAST_SECOND + 1),
    timestamp_pb2.Timestamp(seconds=0, nanos=-1),
    timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000),
]
EXTREMES = IN_THE_CALENDAR + OUTSIDE_THE_CALENDAR
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("at", EXTREMES, ids=lambda t: f"{t.seconds}s{t.nanos}ns")
async def test_updated_since_at_the_ends_of_the_timestamp_range_is_never_an_internal_error(
    contacts_service: RunningContacts, at: timestamp_pb2.Timestamp
) -> None:
    stub = contacts_service.stub
    for i in range(3):
        await create(contacts_service, a_person(emails=[f"since{i}@example.com"]))
    request = contacts_pb.ListContactsRequest(updated_since=at, page_size=2)

    code = await code_of(stub.ListContacts(request, metadata=bearer()))

    assert code in ANSWERS
    if at in OUTSIDE_THE_CALENDAR:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        return
    # In the calendar: a filter like any other, and its pages follow on.
    first = await stub.ListContacts(request, metadata=bearer())
    seen = [c.id for c in first.contacts]
    if first.next_page_token:
        request.page_token = first.next_page_token
        rest = await stub.ListContacts(request, metadata=bearer())
        seen += [c.id for c in rest.contacts]
    assert len(seen) == (3 if at.seconds == YEAR_ONE else 0)


def stamped(contact: contact_pb2.Contact, at: timestamp_pb2.Timestamp) -> contact_pb2.Contact:
    for name in (
        "created_at",
        "updated_at",
        "last_purchase_at",
        "last_interaction_at",
        "erased_at",
    ):
        getattr(contact, name).CopyFrom(at)
    return contact


@pytest.mark.parametrize("at", EXTREMES, ids=lambda t: f"{t.seconds}s{t.nanos}ns")
async def test_output_only_timestamps_at_the_ends_of_the_range_are_ignored_on_writes(
    contacts_service: RunningContacts, at: timestamp_pb2.Timestamp
) -> None:
    """Contact's Timestamps are output only: whatever a caller puts there is not read."""
    email = f"stamp{at.seconds}.{at.nanos}@example.com".replace("-", "m")
    created = await create(contacts_service, stamped(a_person(emails=[email]), at))
    assert created.created_at != at and not created.HasField("erased_at")

    change = stamped(contact_pb2.Contact(id=created.id, preferred_name="Stamped"), at)
    update = contacts_service.stub.UpdateContact(
        contacts_pb.UpdateContactRequest(
            contact=change, update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"])
        ),
        metadata=bearer(),
    )
    assert await code_of(update) == grpc.StatusCode.OK
