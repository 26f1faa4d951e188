"""The contacts service over gRPC, as the follow-up service's `ContactDirectory`.

Events carry no personal data, so a customer notice asks `GetContact` for the address and the
name at the moment it is sent, with the follow-up service's own bearer token
(CRM_SERVICE_TOKEN). The channel is opened on first use and reconnects by itself; nothing
connects at import or at boot.
"""

from __future__ import annotations

import grpc

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from followup.domain.contacts import ContactCard
from followup.ports import ContactsUnavailableError
from promesa.usecases import MAX_MERGE_HOPS


class GrpcContactDirectory:
    def __init__(self, address: str, token: str, *, timeout_seconds: float = 5.0) -> None:
        self._address = address
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: contacts_grpc.ContactsServiceAsyncStub | None = None

    def _contacts(self) -> contacts_grpc.ContactsServiceAsyncStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self._address)
            self._stub = contacts_grpc.ContactsServiceStub(self._channel)
        assert self._stub is not None
        return self._stub

    async def card(self, contact_id: str) -> ContactCard | None:
        for _ in range(MAX_MERGE_HOPS + 1):
            try:
                reply = await self._contacts().GetContact(
                    contacts_pb.GetContactRequest(id=contact_id),
                    metadata=self._metadata,
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise ContactsUnavailableError(f"GetContact: {exc.code().name}") from None
            c = reply.contact
            if c.HasField("erased_at"):
                return ContactCard(contact_id, erased=True)
            if c.merged_into_id and c.merged_into_id != contact_id:
                contact_id = c.merged_into_id
                continue
            return ContactCard(
                c.id or contact_id, name=c.preferred_name or c.display_name, emails=tuple(c.emails)
            )
        raise ContactsUnavailableError(f"GetContact: more than {MAX_MERGE_HOPS} merges to follow")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
