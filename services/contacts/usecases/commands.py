"""Commands from callers: create, update, merge and erase contacts. Each one checks the rules
of validation.py and of authorization.py, decides with the domain, and commits once through
`Writes`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

import structlog

from contacts import authorization
from contacts.domain import lifecycle, merging
from contacts.domain.erasure import ErasureRecord
from contacts.domain.events import (
    ContactCreated,
    ContactErased,
    ContactsMerged,
    ContactUpdated,
)
from contacts.domain.model import EDITABLE_FIELDS, Contact, ContactDetails, ContactDraft
from contacts.ports import Change, ContactStore, EmailTakenError
from contacts.usecases.queries import existing, readable
from contacts.validation import (
    check_etag,
    check_links,
    check_mask,
    check_merge,
    check_reason,
    details_to_create,
    details_to_update,
)
from promesa.auth import Identity
from promesa.clock import Clock
from promesa.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    StaleEtagError,
    Violations,
)
from promesa.ids import fingerprint, new_id
from promesa.storage import VersionConflictError
from promesa.usecases import (
    CreateRequest,
    Writes,
    check_request_id,
    create_once,
    retry_on_conflict,
)

log = structlog.get_logger(__name__)


class ContactCommands:
    """What callers ask to change; each command commits once, through the one `Writes`."""

    def __init__(
        self,
        store: ContactStore,
        writes: Writes[Change],
        clock: Clock,
        *,
        active_window: timedelta,
        default_phone_region: str,
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._window = active_window
        self._region = default_phone_region
        self._existing = partial(existing, store)

    async def create(self, draft: ContactDraft, request_id: str, who: Identity) -> Contact:
        """A new contact, once per request id: a retry gets the first one back, whatever has
        changed since (a linked organisation erased, an email taken), if the caller may
        read it. It lands in the team named, or in the caller's own."""
        request = CreateRequest.of(request_id, "create", draft)

        async def create() -> Contact:
            v = Violations()
            check_request_id(request_id, v)
            details = details_to_create(draft, v, self._region)
            await self._check_links(details, v, own_id="")
            v.raise_if_any()
            details = replace(details, team=authorization.create_contact(who, details.team))
            # A taken email is not looked up first: the store refuses it in the commit with
            # the same answer (EmailTakenError names the holder), one read fewer per create,
            # and a concurrent twin of this request is answered with the first one's result.
            now = self._clock.now()
            contact = Contact(
                id=new_id(),
                details=details,
                status=lifecycle.status_for(None, now, self._window),
                created_at=now,
                updated_at=now,
                created_by=who.subject,
                updated_by=who.subject,
            )
            change = Change(
                saves=[(contact, 0)],
                events=[ContactCreated(contact, who.subject, now)],
                idempotency=request.key(contact.id),
            )
            try:
                await self._writes.commit(change)
            except EmailTakenError as exc:
                raise _email_taken(exc) from None
            log.info("contact_created", contact_id=contact.id)
            return contact

        load = partial(readable, self._store, who=who)
        return await create_once(request, self._store, load=load, create=create)

    async def update(
        self,
        contact_id: str,
        etag: str,
        sent: ContactDraft,
        paths: Sequence[str],
        who: Identity,
    ) -> Contact:
        """The fields named in the mask take the sent values; an update from a stale etag is
        refused unless it changes nothing (a retry of one that landed)."""
        v = Violations()
        contact_id = v.identifier("contact.id", contact_id)
        etag = check_etag(etag, v)
        masked = check_mask(paths, v)
        v.raise_if_any()
        current = await self._existing(contact_id)
        authorization.update_contact(who, current, current.details.team)
        if not current.is_live:
            raise FailedPreconditionError(f"contact {contact_id!r} was {_gone(current)}")
        wanted = details_to_update(current.details, sent, masked, v, self._region)
        await self._check_links(wanted, v, own_id=contact_id)
        v.raise_if_any()
        authorization.update_contact(who, current, wanted.team)
        changed = _changed(current.details, wanted)
        if etag and etag != current.etag:
            if not changed:
                return current  # a retry of an update that already landed
            raise StaleEtagError("contact", contact_id)
        if not changed:
            return current
        added = set(wanted.emails) - set(current.details.emails)
        await self._refuse_taken_emails(tuple(added), own_id=contact_id)
        now = self._clock.now()
        updated = replace(
            current,
            details=wanted,
            version=current.version + 1,
            updated_at=now,
            updated_by=who.subject,
        )
        change = Change(
            saves=[(updated, current.version)],
            events=[ContactUpdated(updated, changed, who.subject, now)],
        )
        try:
            await self._writes.commit(change)
        except VersionConflictError:
            raise StaleEtagError("contact", contact_id) from None
        except EmailTakenError as exc:
            raise _email_taken(exc) from None
        log.info("contact_updated", contact_id=contact_id, fields=list(changed))
        return updated

    async def merge(
        self, survivor_id: str, duplicate_id: str, request_id: str, who: Identity
    ) -> Contact:
        """The duplicate is folded into the survivor and redirects to it. Once per request id,
        like a create; without one, merging again what was merged is harmless too."""
        digest = fingerprint({"survivor_id": survivor_id, "duplicate_id": duplicate_id})
        request = CreateRequest(request_id, "merge", digest)

        async def merge() -> Contact:
            v = Violations()
            check_request_id(request_id, v)
            survivor, duplicate = check_merge(survivor_id, duplicate_id, v)
            v.raise_if_any()
            return await retry_on_conflict(
                partial(self._merge, survivor, duplicate, request, who),
                resource="contact",
                resource_id=survivor,
            )

        load = partial(readable, self._store, who=who)
        return await create_once(request, self._store, load=load, create=merge)

    async def _merge(
        self, survivor_id: str, duplicate_id: str, request: CreateRequest, who: Identity
    ) -> Contact:
        survivor = await self._existing(survivor_id)
        duplicate = await self._existing(duplicate_id)
        authorization.merge_contacts(who, survivor, duplicate)
        if duplicate.merged_into_id == survivor_id:
            return survivor  # already merged: a retry
        for c in (survivor, duplicate):
            if not c.is_live:
                raise FailedPreconditionError(f"contact {c.id!r} was {_gone(c)}")
        now = self._clock.now()
        details = merging.absorb(survivor, duplicate)
        last_purchase_at = merging.latest(survivor.last_purchase_at, duplicate.last_purchase_at)
        merged_survivor = replace(
            survivor,
            details=details,
            status=lifecycle.status_for(last_purchase_at, now, self._window),
            last_purchase_at=last_purchase_at,
            last_interaction_at=merging.latest(
                survivor.last_interaction_at, duplicate.last_interaction_at
            ),
            version=survivor.version + 1,
            updated_at=now,
            updated_by=who.subject,
        )
        redirect = replace(
            merging.erased(duplicate, now, who.subject), erased_at=None, merged_into_id=survivor_id
        )
        change = Change(
            saves=[(redirect, duplicate.version), (merged_survivor, survivor.version)],
            events=[
                ContactsMerged(survivor_id, duplicate_id, who.subject, now),
                ContactUpdated(
                    merged_survivor, _changed(survivor.details, details), who.subject, now
                ),
                # The duplicate's purchase may make the survivor active: said as a touch would.
                *lifecycle.transitions(survivor, merged_survivor, now),
            ],
            idempotency=request.key(survivor_id),
        )
        await self._writes.commit(change)
        log.info("contacts_merged", survivor_id=survivor_id, merged_id=duplicate_id)
        return merged_survivor

    async def erase(self, contact_id: str, reason: str, who: Identity) -> datetime:
        """The right to be forgotten; repeating it is harmless and returns the first erasure.

        The tombstone, the erasure record (who, when, why) and ContactErased commit together;
        then the store is scrubbed, so that no copy of the erased data lingers in its files
        once the caller has the answer (a retry scrubs again, in case the first one died in
        between)."""
        authorization.erase_contact(who)
        v = Violations()
        contact_id = v.identifier("id", contact_id)
        reason = check_reason(reason, v)
        v.raise_if_any()

        async def erase() -> datetime:
            contact = await self._existing(contact_id)
            authorization.erase_contact(who, contact)
            if contact.erased_at is not None:
                return contact.erased_at
            now = self._clock.now()
            change = Change(
                saves=[(merging.erased(contact, now, who.subject), contact.version)],
                events=[ContactErased(contact_id, who.subject, now)],
                erasure=ErasureRecord(contact_id, who.subject, reason, now),
            )
            await self._writes.commit(change)
            log.info("contact_erased", contact_id=contact_id)
            return now

        erased_at = await retry_on_conflict(erase, resource="contact", resource_id=contact_id)
        await self._store.forget_dead_letters(contact_id)
        await self._store.scrub()
        return erased_at

    async def _check_links(self, d: ContactDetails, v: Violations, *, own_id: str) -> None:
        organisation = await self._store.get(d.organisation_id) if d.organisation_id else None
        referrer = await self._store.get(d.referred_by_id) if d.referred_by_id else None
        check_links(d, v, own_id=own_id, organisation=organisation, referrer=referrer)

    async def _refuse_taken_emails(self, emails: Sequence[str], *, own_id: str) -> None:
        """Checked before the commit for a clear answer; the store's unique index still has
        the last word when two callers race for one email."""
        for email in emails:
            holder = await self._store.holder_of_email(email)
            if holder and holder != own_id:
                raise _email_taken(EmailTakenError(email, holder))


def _changed(before: ContactDetails, after: ContactDetails) -> tuple[str, ...]:
    return tuple(p for p in sorted(EDITABLE_FIELDS) if getattr(after, p) != getattr(before, p))


def _email_taken(exc: EmailTakenError) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"email {exc.email!r} already belongs to contact {exc.holder_id}", exc.holder_id
    )


def _gone(contact: Contact) -> str:
    return "erased" if contact.erased_at else f"merged into {contact.merged_into_id}"
