"""The ContactsService servicer: proto in, use case, proto out; errors are mapped at the edge.

Every method asks for the caller first: a call that reached it without the interceptor
binding one is refused (UNAUTHENTICATED) before anything is read or written."""

from __future__ import annotations

from contacts.entrypoints.proto_mapping import (
    contact_from_proto,
    contact_to_proto,
    erasure_to_proto,
    filter_from_request,
)
from contacts.usecases import ContactCommands, ContactQueries
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from promesa.auth import current_identity
from promesa.interceptors import Context
from promesa.protos import to_timestamp

SERVICE_NAME = contacts_pb.DESCRIPTOR.services_by_name["ContactsService"].full_name


class ContactsServicer(contacts_grpc.ContactsServiceServicer):
    def __init__(self, commands: ContactCommands, queries: ContactQueries) -> None:
        self._commands = commands
        self._queries = queries

    async def CreateContact(
        self, request: contacts_pb.CreateContactRequest, context: Context
    ) -> contacts_pb.CreateContactResponse:
        draft = contact_from_proto(request.contact)
        contact = await self._commands.create(draft, request.request_id, current_identity())
        reply = contacts_pb.CreateContactResponse()
        contact_to_proto(contact, into=reply.contact)
        return reply

    async def GetContact(
        self, request: contacts_pb.GetContactRequest, context: Context
    ) -> contacts_pb.GetContactResponse:
        contact = await self._queries.get(request.id, current_identity())
        reply = contacts_pb.GetContactResponse()
        contact_to_proto(contact, into=reply.contact)
        return reply

    async def UpdateContact(
        self, request: contacts_pb.UpdateContactRequest, context: Context
    ) -> contacts_pb.UpdateContactResponse:
        contact = await self._commands.update(
            request.contact.id,
            request.contact.etag,
            contact_from_proto(request.contact),
            list(request.update_mask.paths),
            current_identity(),
        )
        reply = contacts_pb.UpdateContactResponse()
        contact_to_proto(contact, into=reply.contact)
        return reply

    async def ListContacts(
        self, request: contacts_pb.ListContactsRequest, context: Context
    ) -> contacts_pb.ListContactsResponse:
        f = filter_from_request(request)
        page = await self._queries.list(
            f, request.page_size, request.page_token, current_identity()
        )
        return contacts_pb.ListContactsResponse(
            contacts=[contact_to_proto(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    async def SearchContacts(
        self, request: contacts_pb.SearchContactsRequest, context: Context
    ) -> contacts_pb.SearchContactsResponse:
        page = await self._queries.search(
            request.name_prefix,
            request.email,
            request.phone,
            request.page_size,
            request.page_token,
            current_identity(),
        )
        return contacts_pb.SearchContactsResponse(
            contacts=[contact_to_proto(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    async def MergeContacts(
        self, request: contacts_pb.MergeContactsRequest, context: Context
    ) -> contacts_pb.MergeContactsResponse:
        survivor = await self._commands.merge(
            request.survivor_id, request.duplicate_id, request.request_id, current_identity()
        )
        return contacts_pb.MergeContactsResponse(survivor=contact_to_proto(survivor))

    async def EraseContact(
        self, request: contacts_pb.EraseContactRequest, context: Context
    ) -> contacts_pb.EraseContactResponse:
        erased_at = await self._commands.erase(request.id, request.reason, current_identity())
        return contacts_pb.EraseContactResponse(erased_at=to_timestamp(erased_at))

    async def ListErasures(
        self, request: contacts_pb.ListErasuresRequest, context: Context
    ) -> contacts_pb.ListErasuresResponse:
        page = await self._queries.erasures(
            request.page_size, request.page_token, current_identity()
        )
        return contacts_pb.ListErasuresResponse(
            erasures=[erasure_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )
