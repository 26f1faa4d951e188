"""The ContactsService servicer: proto in, use case, proto out; errors are mapped at the edge."""

from __future__ import annotations

from contacts.entrypoints.proto_mapping import (
    contact_to_proto,
    details_from_proto,
    filter_from_request,
)
from contacts.usecases import ContactBook
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from promesa.auth import current_identity
from promesa.errors import Violations
from promesa.interceptors import Context
from promesa.protos import to_timestamp

SERVICE_NAME = contacts_pb.DESCRIPTOR.services_by_name["ContactsService"].full_name


class ContactsServicer(contacts_grpc.ContactsServiceServicer):
    def __init__(self, book: ContactBook) -> None:
        self._book = book

    async def CreateContact(
        self, request: contacts_pb.CreateContactRequest, context: Context
    ) -> contacts_pb.CreateContactResponse:
        v = Violations()
        details = details_from_proto(request.contact, v)
        v.raise_if_any()
        contact = await self._book.create(details, request.request_id, current_identity())
        return contacts_pb.CreateContactResponse(contact=contact_to_proto(contact))

    async def GetContact(
        self, request: contacts_pb.GetContactRequest, context: Context
    ) -> contacts_pb.GetContactResponse:
        contact = await self._book.get(request.id)
        return contacts_pb.GetContactResponse(contact=contact_to_proto(contact))

    async def UpdateContact(
        self, request: contacts_pb.UpdateContactRequest, context: Context
    ) -> contacts_pb.UpdateContactResponse:
        v = Violations()
        details = details_from_proto(request.contact, v)
        v.raise_if_any()
        contact = await self._book.update(
            request.contact.id,
            request.contact.etag,
            details,
            list(request.update_mask.paths),
            current_identity(),
        )
        return contacts_pb.UpdateContactResponse(contact=contact_to_proto(contact))

    async def ListContacts(
        self, request: contacts_pb.ListContactsRequest, context: Context
    ) -> contacts_pb.ListContactsResponse:
        v = Violations()
        f = filter_from_request(request, v)
        v.raise_if_any()
        page = await self._book.list(f, request.page_size, request.page_token)
        return contacts_pb.ListContactsResponse(
            contacts=[contact_to_proto(c) for c in page.contacts],
            next_page_token=page.next_page_token,
        )

    async def SearchContacts(
        self, request: contacts_pb.SearchContactsRequest, context: Context
    ) -> contacts_pb.SearchContactsResponse:
        page = await self._book.search(
            request.name_prefix,
            request.email,
            request.phone,
            request.page_size,
            request.page_token,
        )
        return contacts_pb.SearchContactsResponse(
            contacts=[contact_to_proto(c) for c in page.contacts],
            next_page_token=page.next_page_token,
        )

    async def MergeContacts(
        self, request: contacts_pb.MergeContactsRequest, context: Context
    ) -> contacts_pb.MergeContactsResponse:
        survivor = await self._book.merge(
            request.survivor_id, request.duplicate_id, current_identity()
        )
        return contacts_pb.MergeContactsResponse(survivor=contact_to_proto(survivor))

    async def EraseContact(
        self, request: contacts_pb.EraseContactRequest, context: Context
    ) -> contacts_pb.EraseContactResponse:
        erased_at = await self._book.erase(request.id, request.reason, current_identity())
        return contacts_pb.EraseContactResponse(erased_at=to_timestamp(erased_at))
