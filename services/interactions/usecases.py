"""What callers and contacts events can do to the timeline: validate, decide, commit once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

import structlog

from interactions.domain import rules
from interactions.domain.events import InteractionAmended, InteractionRated, InteractionRecorded
from interactions.domain.model import (
    Interaction,
    InteractionDraft,
    KnownContact,
    PromiseDraft,
)
from interactions.ports import (
    AlreadyHandledError,
    Change,
    ContactGoneError,
    DuplicateRequestError,
    IdempotencyKey,
    InteractionStore,
    TimelineFilter,
    VersionConflictError,
)
from interactions.validation import (
    MAX_SHORT,
    validate_details,
    validate_mask,
    validate_promises,
    validate_reason,
)
from promesa import pagination
from promesa.auth import Identity
from promesa.clock import Clock
from promesa.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    StaleEtagError,
    Violations,
)
from promesa.ids import derived_id, fingerprint, new_id

log = structlog.get_logger(__name__)

CASCADE_BATCH = 500
MAX_MERGE_HOPS = 10
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Page:
    interactions: Sequence[Interaction]
    next_page_token: str


class Timeline:
    """The interactions service's use cases, free of gRPC, NATS and database types."""

    def __init__(
        self,
        store: InteractionStore,
        clock: Clock,
        *,
        on_commit: Callable[[], None] = lambda: None,
        cascade_batch: int = CASCADE_BATCH,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_commit = on_commit
        self._batch = cascade_batch

    async def _commit(self, change: Change) -> None:
        await self._store.commit(change)
        if change.events:
            self._on_commit()

    # --- commands from callers -------------------------------------------------------------

    async def record(
        self,
        contact_id: str,
        draft: InteractionDraft,
        promises: Sequence[PromiseDraft],
        request_id: str,
        who: Identity,
    ) -> Interaction:
        """A touch joins the contact's timeline, with the promises made in it, exactly once."""
        v = Violations()
        contact_id = contact_id.strip()
        v.check(bool(contact_id), "interaction.contact_id", "must not be empty")
        v.check(len(contact_id) <= MAX_SHORT, "interaction.contact_id", "is too long")
        v.check(
            len(request_id) <= MAX_SHORT, "request_id", f"must be at most {MAX_SHORT} characters"
        )
        v.raise_if_any()
        # The digest is of the request as sent: defaults filled in from the clock would make a
        # retry look like another request.
        digest = fingerprint(
            {
                "contact_id": contact_id,
                "draft": asdict(draft),
                "promises": list(map(asdict, promises)),
            }
        )
        # A retry is answered before validation: time has passed, and a promise that was due
        # later when first sent may be overdue now.
        if request_id and (previous := await self._store.find_request(request_id)):
            return await self._replay(previous, digest)
        now = self._clock.now()
        draft = replace(
            draft,
            occurred_at=draft.occurred_at or now,
            agent_id=draft.agent_id.strip() or who.subject,
            team=draft.team.strip() or who.team,
        )
        details = validate_details(draft, v, now)
        checked = validate_promises(promises, v, now, draft.occurred_at)
        v.raise_if_any()
        assert details is not None
        for _ in range(MAX_ATTEMPTS):
            contact = await self._live_contact(contact_id)
            await self._check_thread(details.thread_id, contact.id, own_id="")
            interaction_id = new_id()
            promise_ids = [derived_id(interaction_id, str(i)) for i in range(len(checked))]
            interaction = Interaction(
                id=interaction_id,
                contact_id=contact.id,
                details=details,
                promises=rules.promises_made(checked, promise_ids, details),
                created_at=now,
                updated_at=now,
                created_by=who.subject,
                updated_by=who.subject,
            )
            key = IdempotencyKey(request_id, "record", digest, interaction_id)
            change = Change(
                saves=[(interaction, 0)],
                events=[InteractionRecorded(interaction, who.subject, now)],
                idempotency=key if request_id else None,
                live_contact=contact.id,
            )
            try:
                await self._commit(change)
            except ContactGoneError:
                continue  # erased or merged meanwhile: look the contact up again
            except DuplicateRequestError:
                previous = await self._store.find_request(request_id)
                assert previous is not None
                return await self._replay(previous, digest)
            log.info(
                "interaction_recorded",
                interaction_id=interaction_id,
                contact_id=contact.id,
                type=details.type.value,
                promises=len(checked),
            )
            return interaction
        raise FailedPreconditionError(f"contact {contact_id!r} kept changing; try again")

    async def rate(self, interaction_id: str, satisfaction: int, who: Identity) -> Interaction:
        """The customer's verdict, given once: a second one would rewrite what they said."""
        v = Violations()
        v.check(bool(interaction_id), "id", "must not be empty")
        v.check(1 <= satisfaction <= 5, "satisfaction", "must be from 1 (poor) to 5 (excellent)")
        v.raise_if_any()
        for _ in range(MAX_ATTEMPTS):
            current = await self.get(interaction_id)
            _refuse_erased(current)
            if current.satisfaction is not None:
                assert current.rated_at is not None
                raise FailedPreconditionError(
                    f"interaction {interaction_id!r} was already rated {current.satisfaction}"
                    f" at {current.rated_at.isoformat()}; a rating is given once"
                )
            now = self._clock.now()
            updated = rules.rated(current, satisfaction, who.subject, now)
            change = Change(
                saves=[(updated, current.version)],
                events=[InteractionRated(updated, who.subject, now)],
            )
            try:
                await self._commit(change)
            except VersionConflictError:
                continue  # amended meanwhile; read again (and see a concurrent rating)
            log.info("interaction_rated", interaction_id=interaction_id, satisfaction=satisfaction)
            return updated
        raise StaleEtagError("interaction", interaction_id)

    async def amend(
        self,
        interaction_id: str,
        etag: str,
        sent: InteractionDraft,
        paths: Sequence[str],
        reason: str,
        who: Identity,
    ) -> Interaction:
        """A correction: the new values, plus an amendment that keeps the old ones."""
        v = Violations()
        v.check(bool(interaction_id), "id", "must not be empty")
        paths = validate_mask(paths, v)
        reason = validate_reason(reason, v)
        v.raise_if_any()
        current = await self.get(interaction_id)
        _refuse_erased(current)
        wanted_draft = replace(current.details.as_draft(), **{p: getattr(sent, p) for p in paths})
        now = self._clock.now()
        wanted = validate_details(wanted_draft, v, now)
        v.raise_if_any()
        assert wanted is not None
        if wanted.thread_id != current.details.thread_id:
            await self._check_thread(wanted.thread_id, current.contact_id, own_id=current.id)
        updated, changed = rules.amended(current, wanted, who.subject, reason, now)
        if etag and etag != current.etag and changed:
            raise StaleEtagError("interaction", interaction_id)
        if not changed:
            return current  # nothing to correct, or a retry of a correction that landed
        change = Change(
            saves=[(updated, current.version)],
            events=[InteractionAmended(updated, changed, who.subject, now)],
        )
        try:
            await self._commit(change)
        except VersionConflictError:
            raise StaleEtagError("interaction", interaction_id) from None
        log.info("interaction_amended", interaction_id=interaction_id, fields=list(changed))
        return updated

    # --- queries -----------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> Interaction:
        if not interaction_id:
            raise InvalidArgumentError([FieldViolation("id", "must not be empty")])
        interaction = await self._store.get(interaction_id)
        if interaction is None:
            raise NotFoundError("interaction", interaction_id)
        return interaction

    async def list(self, f: TimelineFilter, page_size: int, page_token: str) -> Page:
        """A contact's timeline, newest first, a page at a time (keyset: stays fast deep in)."""
        v = Violations()
        v.check(bool(f.contact_id), "contact_id", "must not be empty")
        if f.occurred_after and f.occurred_before:
            v.check(
                f.occurred_after < f.occurred_before,
                "occurred_before",
                "must be later than occurred_after",
            )
        v.raise_if_any()
        size = pagination.page_size(page_size)
        query = repr(f)
        after = _cursor(pagination.decode_token(page_token, query))
        rows = await self._store.timeline(f, after, size + 1)
        if len(rows) <= size:
            return Page(rows, "")
        last = rows[size - 1]
        cursor = [last.details.occurred_at.isoformat(), last.id]
        return Page(rows[:size], pagination.encode_token(cursor, query))

    # --- reactions to the contacts stream ----------------------------------------------------

    async def contact_created(self, consumer: str, event_id: str, contact_id: str) -> bool:
        """The contact may now get touches; a late or repeated creation revives nobody."""
        known = await self._store.contact(contact_id)
        rows = [] if known else [KnownContact(contact_id)]
        return await self._mark_handled(consumer, event_id, rows)

    async def contact_erased(
        self, consumer: str, event_id: str, contact_id: str, actor: str
    ) -> bool:
        """The right to be forgotten: no new touches, and the words of the old ones removed."""
        known = await self._store.contact(contact_id) or KnownContact(contact_id)
        if known.erased_at is None:
            # First, so that no touch can be recorded behind the cascade.
            erased = replace(known, erased_at=self._clock.now())
            await self._commit(Change(contacts=[erased]))
        count = await self._cascade(
            lambda: self._store.of_contact(contact_id, self._batch, unerased_only=True),
            lambda i, now: rules.erased(i, actor, now),
        )
        handled = await self._mark_handled(consumer, event_id)
        if handled:
            log.info("contact_erased_from_timeline", contact_id=contact_id, interactions=count)
        return handled

    async def contacts_merged(
        self, consumer: str, event_id: str, merged_id: str, survivor_id: str, actor: str
    ) -> bool:
        """One customer, one timeline: the duplicate's touches move to the survivor."""
        merged = await self._store.contact(merged_id) or KnownContact(merged_id)
        rows = []
        if merged.merged_into_id != survivor_id:
            rows.append(replace(merged, merged_into_id=survivor_id))
        if await self._store.contact(survivor_id) is None:
            rows.append(KnownContact(survivor_id))
        if rows:
            await self._commit(Change(contacts=rows))
        count = await self._cascade(
            lambda: self._store.of_contact(merged_id, self._batch),
            lambda i, now: rules.repointed(i, survivor_id, actor, now),
        )
        handled = await self._mark_handled(consumer, event_id)
        if handled:
            log.info(
                "timeline_merged",
                merged_id=merged_id,
                survivor_id=survivor_id,
                interactions=count,
            )
        return handled

    # --- helpers -----------------------------------------------------------------------------

    async def _live_contact(self, contact_id: str) -> KnownContact:
        """Follows merges to the survivor; an unknown or erased contact gets no new touches.

        Read from the local model of the contacts stream: recording never waits on (or fails
        with) the contacts service.
        """
        contact = await self._store.contact(contact_id)
        hops = 0
        while contact is not None and contact.merged_into_id and hops < MAX_MERGE_HOPS:
            contact = await self._store.contact(contact.merged_into_id)
            hops += 1
        via = "" if hops == 0 or contact is None else f" (merged into {contact.id!r})"
        if contact is None:
            raise FailedPreconditionError(
                f"contact {contact_id!r} is not known to the interactions service: it does not"
                " exist, or its creation has not arrived yet"
            )
        if contact.erased_at is not None:
            raise FailedPreconditionError(f"contact {contact_id!r}{via} was erased")
        if contact.merged_into_id:
            raise FailedPreconditionError(f"contact {contact_id!r} has too long a merge chain")
        return contact

    async def _check_thread(self, thread_id: str, contact_id: str, own_id: str) -> None:
        """A thread continues an earlier touch with the same customer."""
        if not thread_id:
            return
        earlier = await self._store.get(thread_id)
        if earlier is None or earlier.contact_id != contact_id or earlier.id == own_id:
            raise InvalidArgumentError(
                [
                    FieldViolation(
                        "interaction.thread_id",
                        f"no earlier interaction {thread_id!r} with contact {contact_id!r}",
                    )
                ]
            )

    async def _cascade(
        self,
        select: Callable[[], Awaitable[Sequence[Interaction]]],
        change: Callable[[Interaction, datetime], Interaction],
    ) -> int:
        """Rewrites a contact's interactions a batch per transaction, however many there are.

        Each batch leaves the selection, so a redelivered event resumes where a crash stopped.
        """
        done = conflicts = 0
        while batch := await select():
            now = self._clock.now()
            try:
                await self._commit(Change(saves=[(change(i, now), i.version) for i in batch]))
            except VersionConflictError:
                conflicts += 1  # one was amended or rated meanwhile: read the batch again
                if conflicts > MAX_ATTEMPTS:
                    raise
                continue
            done += len(batch)
        return done

    async def _mark_handled(
        self, consumer: str, event_id: str, contacts: Sequence[KnownContact] = ()
    ) -> bool:
        try:
            await self._commit(Change(contacts=list(contacts), handled=(consumer, event_id)))
        except AlreadyHandledError:
            return False
        return True

    async def _replay(self, key: IdempotencyKey, digest: str) -> Interaction:
        if key.operation != "record" or key.fingerprint != digest:
            raise InvalidArgumentError(
                [FieldViolation("request_id", "was already used for a different request")]
            )
        return await self.get(key.resource_id)


def _refuse_erased(interaction: Interaction) -> None:
    if interaction.erased_at is not None:
        raise FailedPreconditionError(
            f"interaction {interaction.id!r} belongs to an erased contact and cannot change"
        )


def _cursor(cursor: list[object] | None) -> tuple[datetime, str] | None:
    """The last (occurred_at, id) of the previous page, as the page token carried it."""
    if cursor is None:
        return None
    try:
        at, last_id = cursor
        instant = datetime.fromisoformat(str(at))
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise InvalidArgumentError([FieldViolation("page_token", "is not a valid page token")])
    return instant, str(last_id)
