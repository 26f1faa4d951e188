"""Reading contacts: one by id, a filtered list, a search, and the erasure records; each read
within what its reader may see (authorization.py); pages through promesa.pagination."""

from __future__ import annotations

from dataclasses import replace

from contacts import authorization
from contacts.domain.erasure import ErasureRecord
from contacts.domain.model import Contact
from contacts.ports import ContactFilter, ContactStore
from contacts.validation import check_filter, check_search
from promesa import pagination
from promesa.auth import Identity
from promesa.errors import NotFoundError, Violations
from promesa.pagination import Cursor, Page

# ListErasures has no filters: its page tokens are bound to this name alone.
ERASURES_QUERY = "ListErasures"


async def existing(store: ContactStore, contact_id: str) -> Contact:
    """The contact with this id, live or not; NOT_FOUND when there is none."""
    contact = await store.get(contact_id)
    if contact is None:
        raise NotFoundError("contact", contact_id)
    return contact


async def readable(store: ContactStore, contact_id: str, *, who: Identity) -> Contact:
    """The contact with this id, if `who` may read it (PERMISSION_DENIED otherwise)."""
    contact = await existing(store, contact_id)
    authorization.read_contact(who, contact)
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
        return await readable(self._store, contact_id, who=who)

    async def list(
        self, f: ContactFilter, page_size: int, page_token: str, who: Identity
    ) -> Page[Contact]:
        """Live contacts in the order they were created, of the teams the reader sees."""
        v = Violations()
        f = replace(check_filter(f, v), teams=authorization.visible_teams(who))
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
        """Live contacts matching every criterion given, of the teams the reader sees, in the
        order of their ids."""
        v = Violations()
        q = check_search(name_prefix, email, phone, v, self._region)
        q = replace(q, teams=authorization.visible_teams(who))
        v.raise_if_any()
        size = pagination.page_size(page_size)
        after = pagination.decode_token(page_token, q)
        rows = await self._store.search(q, after, size + 1)
        return pagination.paginate(rows, size, q, lambda c: Cursor(None, c.id))

    async def erasures(self, page_size: int, page_token: str, who: Identity) -> Page[ErasureRecord]:
        """The evidence of every erasure, newest first, with the services' confirmations."""
        authorization.list_erasures(who)
        size = pagination.page_size(page_size)
        after = pagination.decode_token(page_token, ERASURES_QUERY)
        rows = await self._store.erasures(after, size + 1)
        return pagination.paginate(
            rows, size, ERASURES_QUERY, lambda r: Cursor(r.erased_at, r.contact_id)
        )
