"""Reading contacts: one by id, a filtered list, a search; pages through promesa.pagination."""

from __future__ import annotations

from contacts.domain.model import Contact
from contacts.ports import ContactFilter, ContactStore
from contacts.validation import check_filter, check_search
from promesa import pagination
from promesa.auth import Identity
from promesa.errors import NotFoundError, Violations
from promesa.pagination import Cursor, Page


async def existing(store: ContactStore, contact_id: str) -> Contact:
    """The contact with this id, live or not; NOT_FOUND when there is none."""
    contact = await store.get(contact_id)
    if contact is None:
        raise NotFoundError("contact", contact_id)
    return contact


class ContactQueries:
    """What callers read; nothing here writes. Every read names its reader (`who`): there is
    no anonymous access, and it is where reads are scoped to what the reader may see."""

    def __init__(self, store: ContactStore, *, default_phone_region: str) -> None:
        self._store = store
        self._region = default_phone_region

    async def get(self, contact_id: str, who: Identity) -> Contact:
        v = Violations()
        contact_id = v.identifier("id", contact_id)
        v.raise_if_any()
        return await existing(self._store, contact_id)

    async def list(
        self, f: ContactFilter, page_size: int, page_token: str, who: Identity
    ) -> Page[Contact]:
        """Live contacts in the order they were created."""
        v = Violations()
        f = check_filter(f, v)
        v.raise_if_any()
        size = pagination.page_size(page_size)
        after = pagination.decode_token(page_token, f)
        rows = await self._store.list(f, after, size + 1)
        return pagination.paginate(rows, size, f, lambda c: Cursor(c.created_at, c.id))

    async def search(
        self,
        name_prefix: str,
        email: str,
        phone: str,
        page_size: int,
        page_token: str,
        who: Identity,
    ) -> Page[Contact]:
        """Live contacts matching every criterion given, in the order of their ids."""
        v = Violations()
        q = check_search(name_prefix, email, phone, v, self._region)
        v.raise_if_any()
        size = pagination.page_size(page_size)
        after = pagination.decode_token(page_token, q)
        rows = await self._store.search(q, after, size + 1)
        return pagination.paginate(rows, size, q, lambda c: Cursor(None, c.id))
