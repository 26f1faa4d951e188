"""`client.contacts`: people and organisations (crm.contacts.v1.ContactsService)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from promesa_client import _fields, errors
from promesa_client._connection import Connection
from promesa_client._fields import EnumArg
from promesa_client.pages import Page, Pager

Contact = contact_pb2.Contact
ErasureRecord = contacts_pb.ErasureRecord


def _id_and_etag(contact: str | Contact, etag: str | None) -> tuple[str, str]:
    """A message carries its own etag; an explicit etag wins; a bare id sends none (the change
    then applies to whatever version is current)."""
    if isinstance(contact, str):
        return contact, etag or ""
    return contact.id, contact.etag if etag is None else etag


class Contacts:
    """Create, read, change, find, merge and erase contacts."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._stub: contacts_grpc.ContactsServiceAsyncStub | None = None

    @property
    def stub(self) -> contacts_grpc.ContactsServiceAsyncStub:
        """The generated stub, for an RPC the SDK does not wrap (pass `metadata` yourself)."""
        if self._stub is None:
            self._stub = contacts_grpc.ContactsServiceStub(self._conn.channel("contacts"))
        return self._stub

    async def create(
        self,
        /,
        display_name: str,
        *,
        kind: EnumArg = "person",
        request_id: str | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Contact:
        """Creates a contact from Contact's fields (`emails=[...]`, `time_zone="Europe/Madrid"`,
        `relationship="external_customer"`, `quiet_hours={"start_minute": 1320, ...}`).
        One request_id serves every retry of this call, so a retry never makes a second one."""
        contact = Contact()
        _fields.assign(contact, {"display_name": display_name, "kind": kind, **fields}, "contact.")
        request = contacts_pb.CreateContactRequest(
            contact=contact, request_id=request_id or str(uuid.uuid4())
        )
        reply = await self._conn.call(self.stub.CreateContact, request, timeout)
        return reply.contact

    async def get(self, id: str, *, timeout: float | None = None) -> Contact:
        """One contact by id (NotFound if there is none)."""
        request = contacts_pb.GetContactRequest(id=id)
        reply = await self._conn.call(self.stub.GetContact, request, timeout)
        return reply.contact

    async def update(
        self,
        /,
        contact: str | Contact,
        *,
        etag: str | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Contact:
        """Changes exactly the fields given as keyword arguments (the FieldMask is built from
        their names; None empties a field). Given a Contact, its etag is sent: a change made
        meanwhile by someone else raises Conflict instead of being overwritten."""
        if not fields:
            raise errors.invalid_argument("update_mask", "name at least one field")
        contact_id, current_etag = _id_and_etag(contact, etag)
        changed = Contact(id=contact_id, etag=current_etag)
        _fields.assign(changed, fields, "contact.")
        request = contacts_pb.UpdateContactRequest(
            contact=changed, update_mask=_fields.update_mask(fields)
        )
        reply = await self._conn.call(self.stub.UpdateContact, request, timeout)
        return reply.contact

    def list(
        self,
        *,
        status: EnumArg | None = None,
        owner_id: str = "",
        team: str = "",
        tag: str = "",
        kind: EnumArg | None = None,
        relationship: EnumArg | None = None,
        updated_since: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Pager[Contact]:
        """Contacts matching every filter given, a page fetched as the iteration needs it."""
        template = contacts_pb.ListContactsRequest(
            page_size=page_size, owner_id=owner_id, team=team, tag=tag
        )
        _fields.assign(
            template,
            {
                "status": status,
                "kind": kind,
                "relationship": relationship,
                "updated_since": updated_since,
            },
        )

        async def fetch(token: str) -> Page[Contact]:
            request = contacts_pb.ListContactsRequest()
            request.CopyFrom(template)
            request.page_token = token
            reply = await self._conn.call(self.stub.ListContacts, request, timeout)
            return Page(list(reply.contacts), reply.next_page_token)

        return Pager(fetch, page_token)

    def search(
        self,
        *,
        name_prefix: str = "",
        email: str = "",
        phone: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Pager[Contact]:
        """Contacts whose name starts with `name_prefix`, with this email, with this phone
        (every criterion given must match)."""

        async def fetch(token: str) -> Page[Contact]:
            request = contacts_pb.SearchContactsRequest(
                name_prefix=name_prefix,
                email=email,
                phone=phone,
                page_size=page_size,
                page_token=token,
            )
            reply = await self._conn.call(self.stub.SearchContacts, request, timeout)
            return Page(list(reply.contacts), reply.next_page_token)

        return Pager(fetch, page_token)

    async def merge(
        self,
        survivor_id: str,
        duplicate_id: str,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Contact:
        """Folds the duplicate into the survivor; returns the survivor."""
        request = contacts_pb.MergeContactsRequest(
            survivor_id=survivor_id,
            duplicate_id=duplicate_id,
            request_id=request_id or str(uuid.uuid4()),
        )
        reply = await self._conn.call(self.stub.MergeContacts, request, timeout)
        return reply.survivor

    async def erase(self, id: str, reason: str, *, timeout: float | None = None) -> datetime:
        """Erases the contact's personal data in every service (supervisors, services);
        returns when it was erased."""
        request = contacts_pb.EraseContactRequest(id=id, reason=reason)
        reply = await self._conn.call(self.stub.EraseContact, request, timeout)
        return _fields.to_datetime(reply.erased_at)

    def erasures(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> Pager[ErasureRecord]:
        """The record of every erasure, newest first (supervisors only)."""

        async def fetch(token: str) -> Page[ErasureRecord]:
            request = contacts_pb.ListErasuresRequest(page_size=page_size, page_token=token)
            reply = await self._conn.call(self.stub.ListErasures, request, timeout)
            return Page(list(reply.erasures), reply.next_page_token)

        return Pager(fetch, page_token)
