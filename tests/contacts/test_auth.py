"""Bearer tokens: no token, no service; probes and reflection stay open; writes name the caller;
a path that binds no caller is refused (fail closed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from contacts.entrypoints.grpc_api import ContactsServicer
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from promesa.errors import UnauthenticatedError
from tests.contacts.conftest import RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.support import SUPERVISOR_TOKEN, bearer, health_status


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic agent-token"),)],
    ids=["missing", "unknown", "not bearer"],
)
async def test_calls_without_a_valid_token_are_unauthenticated(
    contacts_service: RunningContacts, metadata: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await contacts_service.stub.ListContacts(
            contacts_pb.ListContactsRequest(), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_and_reflection_need_no_token(contacts_service: RunningContacts) -> None:
    for service in ("", "crm.contacts.v1.ContactsService"):
        status = await health_status(contacts_service.channel, service)
        assert status == health_pb2.HealthCheckResponse.SERVING

    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(
        contacts_service.channel  # type: ignore[arg-type]
    )
    call = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for response in call:
        names |= {s.name for s in response.list_services_response.service}
    assert "crm.contacts.v1.ContactsService" in names


async def test_every_write_records_who_did_it(contacts_service: RunningContacts) -> None:
    created = await create(contacts_service, a_person(emails=["who@example.com"]))
    assert created.created_by == created.updated_by == "agent-ana"
    merged_into = await create(contacts_service, a_person(emails=["who2@example.com"]))
    merged = await contacts_service.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(survivor_id=merged_into.id, duplicate_id=created.id),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    assert merged.survivor.updated_by == "sup-sam"


async def test_a_payload_that_is_not_the_request_message_is_invalid_argument(
    contacts_service: RunningContacts,
) -> None:
    raw_call: Any = contacts_service.channel.unary_unary(
        "/crm.contacts.v1.ContactsService/CreateContact",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(b"\xff\xff\xff\xff", metadata=bearer())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


NO_CONTEXT: Any = None  # the servicer never reads its context


async def test_a_call_that_skips_the_interceptor_is_refused_and_writes_nothing(
    contacts_service: RunningContacts,
) -> None:
    # Given the servicer reached directly, with no caller bound (no interceptor ran),
    app = contacts_service.app
    servicer = ContactsServicer(app.commands, app.queries)
    known = await create(contacts_service, a_person(emails=["known@example.com"]))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: servicer.CreateContact(
            contacts_pb.CreateContactRequest(contact=a_person(emails=["ghost@example.com"])),
            NO_CONTEXT,
        ),
        "update": lambda: servicer.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=contact_pb2.Contact(id=known.id, preferred_name="Ghost"),
                update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"]),
            ),
            NO_CONTEXT,
        ),
        "merge": lambda: servicer.MergeContacts(
            contacts_pb.MergeContactsRequest(survivor_id=known.id, duplicate_id="other"),
            NO_CONTEXT,
        ),
        "erase": lambda: servicer.EraseContact(
            contacts_pb.EraseContactRequest(id=known.id), NO_CONTEXT
        ),
        "get": lambda: servicer.GetContact(contacts_pb.GetContactRequest(id=known.id), NO_CONTEXT),
        "list": lambda: servicer.ListContacts(contacts_pb.ListContactsRequest(), NO_CONTEXT),
        "search": lambda: servicer.SearchContacts(
            contacts_pb.SearchContactsRequest(name_prefix="Mar"), NO_CONTEXT
        ),
    }
    backlog = await contacts_service.store.outbox_backlog()
    for name, call in calls.items():
        # when it is called, then it refuses, as nobody,
        with pytest.raises(UnauthenticatedError):
            await call()
        assert await contacts_service.store.outbox_backlog() == backlog, name
    # and wrote nothing: no contact, no change to the one there was.
    assert await contacts_service.store.holder_of_email("ghost@example.com") is None
    page = await contacts_service.stub.ListContacts(
        contacts_pb.ListContactsRequest(), metadata=bearer()
    )
    assert [(c.id, c.etag) for c in page.contacts] == [(known.id, known.etag)]
