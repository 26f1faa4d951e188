"""`python -m bench.null_server PORT`: Contacts and Interactions services that answer at once.

No interceptors, no store, no events: what is left is the cost of grpc.aio and protobuf in one
uvloop process, the ceiling any real servicer in this stack can reach.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING, Any

import grpc
import uvloop
from google.protobuf.timestamp_pb2 import Timestamp

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc

if TYPE_CHECKING:  # generic only in the type stubs
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext

# A contact shaped like what the real service returns, so responses weigh about the same.
_CONTACT = contact_pb2.Contact(
    id="00000000-0000-4000-8000-000000000000",
    kind=contact_pb2.CONTACT_KIND_PERSON,
    display_name="Null Contact",
    emails=["null@bench.example"],
    relationship=contact_pb2.RELATIONSHIP_EXTERNAL_CUSTOMER,
    status=contact_pb2.LIFECYCLE_STATUS_NEVER_PURCHASED,
    created_at=Timestamp(seconds=1_767_600_000),
    updated_at=Timestamp(seconds=1_767_600_000),
    etag="1",
)
_CREATED = contacts_pb.CreateContactResponse(contact=_CONTACT)
_GOT = contacts_pb.GetContactResponse(contact=_CONTACT)
_FOUND = contacts_pb.SearchContactsResponse(contacts=[_CONTACT])

# An interaction shaped like what the bench records: an inquiry by phone with one promise.
_INTERACTION = interaction_pb2.Interaction(
    id="00000000-0000-4000-8000-000000000001",
    contact_id=_CONTACT.id,
    channel=interaction_pb2.CHANNEL_PHONE,
    direction=interaction_pb2.DIRECTION_INBOUND,
    type=interaction_pb2.INTERACTION_TYPE_INQUIRY,
    occurred_at=Timestamp(seconds=1_767_600_000),
    agent_id="bench",
    summary="Asked when order 4711 will be delivered",
    notes="The carrier is late; promised to call back with a date.",
    promises=[
        interaction_pb2.PromiseMade(
            id="00000000-0000-5000-8000-000000000002",
            text="Call back with the delivery date",
            due_at=Timestamp(seconds=1_767_772_800),
            owner_id="bench",
            kind=interaction_pb2.PROMISE_KIND_CALL_BACK,
        )
    ],
    etag="1",
    created_by="bench",
    updated_by="bench",
    created_at=Timestamp(seconds=1_767_600_000),
    updated_at=Timestamp(seconds=1_767_600_000),
)
_RECORDED = interactions_pb.RecordInteractionResponse(interaction=_INTERACTION)
_PAGE = interactions_pb.ListInteractionsResponse(
    interactions=[_INTERACTION] * 50, next_page_token="bnVsbA"
)


class NullContactsServicer(contacts_grpc.ContactsServiceServicer):
    async def CreateContact(
        self, request: contacts_pb.CreateContactRequest, context: Context
    ) -> contacts_pb.CreateContactResponse:
        return _CREATED

    async def GetContact(
        self, request: contacts_pb.GetContactRequest, context: Context
    ) -> contacts_pb.GetContactResponse:
        return _GOT

    async def SearchContacts(
        self, request: contacts_pb.SearchContactsRequest, context: Context
    ) -> contacts_pb.SearchContactsResponse:
        return _FOUND


class NullInteractionsServicer(interactions_grpc.InteractionsServiceServicer):
    async def RecordInteraction(
        self, request: interactions_pb.RecordInteractionRequest, context: Context
    ) -> interactions_pb.RecordInteractionResponse:
        return _RECORDED

    async def ListInteractions(
        self, request: interactions_pb.ListInteractionsRequest, context: Context
    ) -> interactions_pb.ListInteractionsResponse:
        return _PAGE


async def serve(port: int) -> None:
    server = grpc.aio.server()
    # The generated bases answer UNIMPLEMENTED for the RPCs the bench never calls.
    contacts = NullContactsServicer()  # type: ignore[abstract]
    contacts_grpc.add_ContactsServiceServicer_to_server(contacts, server)
    interactions = NullInteractionsServicer()  # type: ignore[abstract]
    interactions_grpc.add_InteractionsServiceServicer_to_server(interactions, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(0.5)


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
