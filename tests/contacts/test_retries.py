"""A retried create or merge gets its first answer, whatever has changed since; a request id
reused for another request is refused."""

from __future__ import annotations

import grpc
import pytest

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from tests.contacts.conftest import RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.support import SUPERVISOR_TOKEN, bearer, field_violations


async def an_organisation(svc: RunningContacts, email: str) -> contact_pb2.Contact:
    org = contact_pb2.Contact(
        kind=contact_pb2.CONTACT_KIND_ORGANISATION, display_name="Acme S.L.", emails=[email]
    )
    return await create(svc, org)


async def erase(svc: RunningContacts, contact_id: str) -> None:
    await svc.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=contact_id, reason="asked"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )


async def merge(
    svc: RunningContacts, survivor_id: str, duplicate_id: str, request_id: str = ""
) -> contact_pb2.Contact:
    reply = await svc.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(
            survivor_id=survivor_id, duplicate_id=duplicate_id, request_id=request_id
        ),
        metadata=bearer(),
    )
    return reply.survivor


async def test_a_retried_create_gets_its_contact_even_after_its_organisation_was_erased(
    contacts_service: RunningContacts,
) -> None:
    # Given a person created in an organisation with a request id,
    org = await an_organisation(contacts_service, "hello@acme.example")
    sent = a_person(emails=["staff@acme.example"], organisation_id=org.id)
    first = await create(contacts_service, sent, "req-staff")
    # when the organisation is erased and the create is retried,
    await erase(contacts_service, org.id)
    again = await create(contacts_service, sent, "req-staff")
    # then the retry gets the first contact, unchecked;
    assert again.id == first.id
    assert again.organisation_id == org.id
    # a new request with the same contact is checked, and refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_service, sent, "req-staff-2")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contact.organisation_id" in field_violations(caught.value)


async def test_a_retried_merge_gets_the_same_survivor(contacts_service: RunningContacts) -> None:
    survivor = await create(contacts_service, a_person(emails=["keep@example.com"]))
    duplicate = await create(contacts_service, a_person(emails=["dup@example.com"]))
    merged = await merge(contacts_service, survivor.id, duplicate.id, "merge-1")

    again = await merge(contacts_service, survivor.id, duplicate.id, "merge-1")

    assert again.id == merged.id == survivor.id
    assert again.etag == merged.etag  # nothing merged the second time
    assert set(again.emails) == {"keep@example.com", "dup@example.com"}


async def test_a_retried_merge_is_answered_even_after_the_survivor_was_erased(
    contacts_service: RunningContacts,
) -> None:
    survivor = await create(contacts_service, a_person(emails=["keep2@example.com"]))
    duplicate = await create(contacts_service, a_person(emails=["dup2@example.com"]))
    await merge(contacts_service, survivor.id, duplicate.id, "merge-2")
    await erase(contacts_service, survivor.id)

    again = await merge(contacts_service, survivor.id, duplicate.id, "merge-2")

    assert again.id == survivor.id and again.HasField("erased_at")


async def test_a_merge_request_id_reused_for_another_merge_is_refused(
    contacts_service: RunningContacts,
) -> None:
    survivor = await create(contacts_service, a_person(emails=["s@example.com"]))
    first = await create(contacts_service, a_person(emails=["d1@example.com"]))
    second = await create(contacts_service, a_person(emails=["d2@example.com"]))
    await merge(contacts_service, survivor.id, first.id, "merge-3")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await merge(contacts_service, survivor.id, second.id, "merge-3")

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(caught.value)
    untouched = await contacts_service.stub.GetContact(
        contacts_pb.GetContactRequest(id=second.id), metadata=bearer()
    )
    assert not untouched.contact.merged_into_id


async def test_a_create_request_id_reused_for_a_merge_is_refused(
    contacts_service: RunningContacts,
) -> None:
    survivor = await create(contacts_service, a_person(emails=["s4@example.com"]), "req-4")
    duplicate = await create(contacts_service, a_person(emails=["d4@example.com"]))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await merge(contacts_service, survivor.id, duplicate.id, "req-4")

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(caught.value)
