"""What callers and events can do to contacts: each use case validates, decides, commits once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

import structlog

from contacts.domain import lifecycle, merging
from contacts.domain.events import (
    ContactCreated,
    ContactErased,
    ContactEvent,
    ContactsMerged,
    ContactUpdated,
)
from contacts.domain.model import EDITABLE_FIELDS, Contact, ContactDetails, ContactKind
from contacts.ports import (
    AlreadyHandledError,
    Change,
    ContactFilter,
    ContactStore,
    DuplicateRequestError,
    EmailTakenError,
    IdempotencyKey,
    VersionConflictError,
)
from contacts.validation import MAX_REASON, normalise_email, normalise_phone, validate_details
from promesa import pagination
from promesa.auth import Identity, Role
from promesa.clock import Clock
from promesa.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    StaleEtagError,
    Violations,
)
from promesa.ids import fingerprint, new_id

log = structlog.get_logger(__name__)

OUTPUT_ONLY = frozenset(
    {
        "id",
        "status",
        "last_purchase_at",
        "last_interaction_at",
        "created_at",
        "updated_at",
        "etag",
        "created_by",
        "updated_by",
        "merged_into_id",
        "erased_at",
    }
)


@dataclass(frozen=True)
class Page:
    contacts: Sequence[Contact]
    next_page_token: str


class ContactBook:
    """The contacts service's use cases, free of gRPC, NATS and database types."""

    def __init__(
        self,
        store: ContactStore,
        clock: Clock,
        *,
        active_window: timedelta,
        default_phone_region: str = "US",
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._window = active_window
        self._region = default_phone_region
        self._on_commit = on_commit

    async def _commit(self, change: Change) -> None:
        await self._store.commit(change)
        if change.events:
            self._on_commit()

    # --- commands from callers -------------------------------------------------------------

    async def create(self, details: ContactDetails, request_id: str, who: Identity) -> Contact:
        v = Violations()
        details = validate_details(details, v, self._region)
        v.check(len(request_id) <= 100, "request_id", "must be at most 100 characters")
        await self._check_links(details, v, own_id="")
        v.raise_if_any()
        digest = fingerprint(asdict(details))
        if request_id:
            previous = await self._store.find_request(request_id)
            if previous is not None:
                return await self._replay(previous, "create", digest)
        await self._refuse_taken_emails(details.emails, "")
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
        key = IdempotencyKey(request_id, "create", digest, contact.id) if request_id else None
        change = Change(
            saves=[(contact, 0)],
            events=[ContactCreated(contact, who.subject, now)],
            idempotency=key,
        )
        try:
            await self._commit(change)
        except EmailTakenError as exc:
            raise self._email_taken(exc) from None
        except DuplicateRequestError:
            previous = await self._store.find_request(request_id)
            assert previous is not None
            return await self._replay(previous, "create", digest)
        log.info("contact_created", contact_id=contact.id)
        return contact

    async def get(self, contact_id: str) -> Contact:
        if not contact_id:
            raise InvalidArgumentError([FieldViolation("id", "must not be empty")])
        contact = await self._store.get(contact_id)
        if contact is None:
            raise NotFoundError("contact", contact_id)
        return contact

    async def update(
        self,
        contact_id: str,
        etag: str,
        details: ContactDetails,
        paths: Sequence[str],
        who: Identity,
    ) -> Contact:
        v = Violations()
        v.check(bool(contact_id), "contact.id", "must not be empty")
        v.check(bool(paths), "update_mask.paths", "must name at least one field")
        for i, path in enumerate(paths):
            if path in OUTPUT_ONLY:
                v.add(f"update_mask.paths[{i}]", f"{path!r} is output only")
            elif path not in EDITABLE_FIELDS:
                v.add(f"update_mask.paths[{i}]", f"{path!r} is not a field of Contact")
        v.raise_if_any()
        current = await self.get(contact_id)
        if not current.is_live:
            raise FailedPreconditionError(f"contact {contact_id!r} was {_gone(current)}")
        wanted = replace(current.details, **{p: getattr(details, p) for p in paths})
        wanted = validate_details(wanted, v, self._region)
        await self._check_links(wanted, v, own_id=contact_id)
        v.raise_if_any()
        changed = tuple(
            p for p in EDITABLE_FIELDS if getattr(wanted, p) != getattr(current.details, p)
        )
        if etag and etag != current.etag:
            if not changed:
                return current  # a retry of an update that already landed
            raise StaleEtagError("contact", contact_id)
        if not changed:
            return current
        added = set(wanted.emails) - set(current.details.emails)
        await self._refuse_taken_emails(tuple(added), contact_id)
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
            events=[ContactUpdated(updated, tuple(sorted(changed)), who.subject, now)],
        )
        try:
            await self._commit(change)
        except VersionConflictError:
            raise StaleEtagError("contact", contact_id) from None
        except EmailTakenError as exc:
            raise self._email_taken(exc) from None
        log.info("contact_updated", contact_id=contact_id, fields=sorted(changed))
        return updated

    async def merge(self, survivor_id: str, duplicate_id: str, who: Identity) -> Contact:
        v = Violations()
        v.check(bool(survivor_id), "survivor_id", "must not be empty")
        v.check(bool(duplicate_id), "duplicate_id", "must not be empty")
        if survivor_id and survivor_id == duplicate_id:
            v.add("duplicate_id", "a contact cannot be merged into itself")
        v.raise_if_any()
        survivor = await self.get(survivor_id)
        duplicate = await self.get(duplicate_id)
        if duplicate.merged_into_id == survivor_id:
            return survivor  # already merged: a retry
        for c in (survivor, duplicate):
            if not c.is_live:
                raise FailedPreconditionError(f"contact {c.id!r} was {_gone(c)}")
        now = self._clock.now()
        details = merging.absorb(survivor, duplicate)
        merged_survivor = replace(
            survivor,
            details=details,
            last_purchase_at=merging.latest(survivor.last_purchase_at, duplicate.last_purchase_at),
            last_interaction_at=merging.latest(
                survivor.last_interaction_at, duplicate.last_interaction_at
            ),
            version=survivor.version + 1,
            updated_at=now,
            updated_by=who.subject,
        )
        merged_survivor = replace(
            merged_survivor,
            status=lifecycle.status_for(merged_survivor.last_purchase_at, now, self._window),
        )
        redirect = replace(
            merging.erased(duplicate, now, who.subject), erased_at=None, merged_into_id=survivor_id
        )
        changed = tuple(
            p
            for p in sorted(EDITABLE_FIELDS)
            if getattr(details, p) != getattr(survivor.details, p)
        )
        events: list[ContactEvent] = [
            ContactsMerged(survivor_id, duplicate_id, who.subject, now),
            ContactUpdated(merged_survivor, changed, who.subject, now),
        ]
        change = Change(
            saves=[(redirect, duplicate.version), (merged_survivor, survivor.version)],
            events=events,
        )
        try:
            await self._commit(change)
        except VersionConflictError as exc:
            raise StaleEtagError("contact", exc.resource_id) from None
        log.info("contacts_merged", survivor_id=survivor_id, merged_id=duplicate_id)
        return merged_survivor

    async def erase(self, contact_id: str, reason: str, who: Identity) -> datetime:
        """The right to be forgotten; repeating it is harmless and returns the first erasure."""
        who.require(Role.SUPERVISOR, Role.SERVICE)
        v = Violations()
        v.check(bool(contact_id), "id", "must not be empty")
        v.check(len(reason) <= MAX_REASON, "reason", f"must be at most {MAX_REASON} characters")
        v.raise_if_any()
        contact = await self.get(contact_id)
        if contact.erased_at is not None:
            return contact.erased_at
        now = self._clock.now()
        tombstone = merging.erased(contact, now, who.subject)
        change = Change(
            saves=[(tombstone, contact.version)],
            events=[ContactErased(contact_id, who.subject, now)],
        )
        try:
            await self._commit(change)
        except VersionConflictError:
            return await self.erase(contact_id, reason, who)
        log.info("contact_erased", contact_id=contact_id)
        return now

    # --- queries -----------------------------------------------------------------------------

    async def list(self, f: ContactFilter, page_size: int, page_token: str) -> Page:
        size = pagination.page_size(page_size)
        query = repr(f)
        cursor = pagination.decode_token(page_token, query)
        after = (str(cursor[0]), str(cursor[1])) if cursor and len(cursor) == 2 else None
        if cursor is not None and after is None:
            raise InvalidArgumentError([FieldViolation("page_token", "is not a valid page token")])
        rows = await self._store.list(f, after, size + 1)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = pagination.encode_token([last.created_at.isoformat(), last.id], query)
        return Page(rows[:size], token)

    async def search(
        self, name_prefix: str, email: str, phone: str, page_size: int, page_token: str
    ) -> Page:
        v = Violations()
        name_prefix = name_prefix.strip().lower()
        v.check(len(name_prefix) <= 200, "name_prefix", "must be at most 200 characters")
        norm_email = ""
        if email:
            norm_email = normalise_email(email) or ""
            v.check(bool(norm_email), "email", f"{email[:60]!r} is not an email")
        norm_phone = ""
        if phone:
            norm_phone = normalise_phone(phone, self._region) or ""
            v.check(bool(norm_phone), "phone", f"{phone[:40]!r} is not a phone number")
        v.check(
            bool(name_prefix or email or phone),
            "name_prefix",
            "give at least one of name_prefix, email or phone",
        )
        size = pagination.page_size(page_size)
        v.raise_if_any()
        query = f"{name_prefix}|{norm_email}|{norm_phone}"
        cursor = pagination.decode_token(page_token, query)
        after = str(cursor[0]) if cursor else None
        rows = await self._store.search(name_prefix, norm_email, norm_phone, after, size + 1)
        token = pagination.encode_token([rows[size - 1].id], query) if len(rows) > size else ""
        return Page(rows[:size], token)

    # --- reactions to events and time --------------------------------------------------------

    async def record_touch(
        self,
        consumer: str,
        event_id: str,
        contact_id: str,
        occurred_at: datetime,
        is_purchase: bool,
    ) -> bool:
        """An interaction was recorded: returns False when this event was applied before."""
        for _ in range(5):
            contact = await self._store.get(contact_id)
            if contact is None or not contact.is_live:
                contact_or_survivor = await self._follow_merge(contact)
                if contact_or_survivor is None:
                    return await self._mark_handled(consumer, event_id)
                contact = contact_or_survivor
            updated, events = lifecycle.record_touch(
                contact, occurred_at, is_purchase, self._clock.now(), self._window
            )
            change = Change(
                saves=[(updated, contact.version)], events=events, handled=(consumer, event_id)
            )
            try:
                await self._commit(change)
                return True
            except AlreadyHandledError:
                return False
            except VersionConflictError:
                continue  # a concurrent write: read again and reapply
        raise RuntimeError(f"contact {contact_id} kept changing while applying {event_id}")

    async def sweep_inactive(self, batch: int = 500) -> int:
        """Turns contacts inactive when their active window has passed: exactly once each."""
        now = self._clock.now()
        lapsed = await self._store.lapsed(now - self._window, batch)
        count = 0
        for contact in lapsed:
            updated, events = lifecycle.lapse(contact, now, self._window)
            if not events:
                continue
            try:
                await self._commit(Change(saves=[(updated, contact.version)], events=events))
                count += 1
            except VersionConflictError:
                continue  # changed meanwhile (a purchase?); the next sweep looks again
        if count:
            log.info("contacts_became_inactive", count=count)
        return count

    # --- helpers -----------------------------------------------------------------------------

    async def _follow_merge(self, contact: Contact | None) -> Contact | None:
        """Touches of a merged contact count for its survivor; an erased one keeps nothing."""
        hops = 0
        while contact is not None and contact.merged_into_id and hops < 10:
            contact = await self._store.get(contact.merged_into_id)
            hops += 1
        if contact is None or not contact.is_live:
            return None
        return contact

    async def _check_links(self, d: ContactDetails, v: Violations, own_id: str) -> None:
        """The organisation and the referrer must be live contacts (word of mouth is traced)."""
        if d.organisation_id:
            org = await self._store.get(d.organisation_id)
            if org is None or not org.is_live:
                v.add("contact.organisation_id", f"no contact {d.organisation_id!r}")
            elif org.details.kind is not ContactKind.ORGANISATION:
                v.add("contact.organisation_id", f"{d.organisation_id!r} is not an organisation")
            elif org.id == own_id:
                v.add("contact.organisation_id", "a contact cannot belong to itself")
        if d.referred_by_id:
            referrer = await self._store.get(d.referred_by_id)
            if referrer is None or not referrer.is_live:
                v.add("contact.referred_by_id", f"no contact {d.referred_by_id!r}")
            elif referrer.id == own_id:
                v.add("contact.referred_by_id", "a contact cannot refer itself")

    async def _mark_handled(self, consumer: str, event_id: str) -> bool:
        try:
            await self._commit(Change(handled=(consumer, event_id)))
        except AlreadyHandledError:
            return False
        return True

    async def _refuse_taken_emails(self, emails: Sequence[str], own_id: str) -> None:
        for email in emails:
            holder = await self._store.holder_of_email(email)
            if holder and holder != own_id:
                raise self._email_taken(EmailTakenError(email, holder))

    @staticmethod
    def _email_taken(exc: EmailTakenError) -> AlreadyExistsError:
        return AlreadyExistsError(
            f"email {exc.email!r} already belongs to contact {exc.holder_id}", exc.holder_id
        )

    async def _replay(self, key: IdempotencyKey, operation: str, digest: str) -> Contact:
        if key.operation != operation or key.fingerprint != digest:
            raise InvalidArgumentError(
                [FieldViolation("request_id", "was already used for a different request")]
            )
        return await self.get(key.resource_id)


def _gone(contact: Contact) -> str:
    return "erased" if contact.erased_at else f"merged into {contact.merged_into_id}"


__all__ = ["ContactBook", "ContactEvent", "Page"]
