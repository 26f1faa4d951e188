"""Bearer tokens: no token, no service; probes and reflection stay open; writes name the caller."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
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
