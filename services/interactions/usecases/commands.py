"""Commands from callers: record a touch (exactly once), rate it, amend it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from interactions import authorization
from interactions.domain import rules
from interactions.domain.events import InteractionAmended, InteractionRated, InteractionRecorded
from interactions.domain.model import Interaction, InteractionDraft, KnownContact, PromiseDraft
from interactions.ports import Change, ContactGoneError, InteractionStore, VersionConflictError
from interactions.validation import (
    CheckedRecord,
    validate_details,
    validate_mask,
    validate_rating,
    validate_reason,
    validate_record,
)
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
from promesa.ids import derived_id, new_id
from promesa.instants import DEFAULT_HORIZON
from promesa.usecases import (
    MAX_MERGE_HOPS,
    CreateRequest,
    Writes,
    create_once,
    follow_merges,
    retry_on_conflict,
)

log = structlog.get_logger(__name__)


class InteractionCommands:
    """What callers do to the timeline, free of gRPC, NATS and database types."""

    def __init__(
        self,
        store: InteractionStore,
        writes: Writes[Change],
        clock: Clock,
        *,
        promise_horizon: timedelta = DEFAULT_HORIZON,
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._horizon = promise_horizon

    async def record(
        self,
        contact_id: str,
        draft: InteractionDraft,
        promises: Sequence[PromiseDraft],
        request_id: str,
        who: Identity,
    ) -> Interaction:
        """A touch joins the contact's timeline, with the promises made in it, exactly once."""
        # The digest is of the request as sent: defaults filled in from the clock or the token
        # would make a retry look like another request.
        sent = {"contact_id": contact_id.strip(), "draft": draft, "promises": promises}
        request = CreateRequest.of(request_id, "record", sent)

        async def create() -> Interaction:
            now = self._clock.now()
            filled = replace(
                draft,
                occurred_at=draft.occurred_at or now,
                agent_id=draft.agent_id.strip() or who.subject,
                team=draft.team.strip() or who.team,
            )
            v = Violations()
            checked = validate_record(
                contact_id, request_id, filled, promises, v, now, self._horizon
            )
            v.raise_if_any()
            assert checked is not None
            return await retry_on_conflict(
                lambda: self._record(checked, request, who, now),
                resource="contact",
                resource_id=checked.contact_id,
                conflicts=(ContactGoneError,),
            )

        async def answer(interaction_id: str) -> Interaction:
            """A retry's answer is the touch itself: only for a caller who may read it."""
            interaction = await self._current(interaction_id)
            authorization.get_interaction(who, interaction)
            return interaction

        return await create_once(request, self._store, load=answer, create=create)

    async def _record(
        self, checked: CheckedRecord, request: CreateRequest, who: Identity, now: datetime
    ) -> Interaction:
        """One attempt; ContactGoneError when an erasure or merge lands before the commit,
        and the next attempt looks the contact up again."""
        contact = await self._live_contact(checked.contact_id)
        authorization.record_interaction(who, contact)
        details = checked.details
        if not details.team:
            # Neither the caller nor their token named a team: the touch is the contact's team's.
            details = replace(details, team=contact.team)
        await self._check_thread(details.thread_id, contact.id, own_id="")
        interaction_id = new_id()
        promise_ids = [derived_id(interaction_id, str(i)) for i in range(len(checked.promises))]
        interaction = Interaction(
            id=interaction_id,
            contact_id=contact.id,
            details=details,
            promises=rules.promises_from(checked.promises, promise_ids, details),
            created_at=now,
            updated_at=now,
            created_by=who.subject,
            updated_by=who.subject,
        )
        await self._writes.commit(
            Change(
                saves=[(interaction, 0)],
                events=[InteractionRecorded(interaction, who.subject, now)],
                idempotency=request.key(interaction_id),
                live_contact=contact.id,
            )
        )
        log.info(
            "interaction_recorded",
            interaction_id=interaction_id,
            contact_id=contact.id,
            type=details.type.value,
            promises=len(checked.promises),
        )
        return interaction

    async def rate(self, interaction_id: str, satisfaction: int, who: Identity) -> Interaction:
        """The customer's verdict, given once: a second one would rewrite what they said."""
        v = Violations()
        interaction_id = validate_rating(interaction_id, satisfaction, v)
        v.raise_if_any()

        async def attempt() -> Interaction:
            # Read afresh each time: an amendment meanwhile conflicts, a rating meanwhile wins.
            current = await self._current(interaction_id)
            authorization.rate_interaction(who, current)
            _refuse_erased(current)
            if current.satisfaction is not None:
                assert current.rated_at is not None
                raise FailedPreconditionError(
                    f"interaction {interaction_id!r} was already rated {current.satisfaction}"
                    f" at {current.rated_at.isoformat()}; a rating is given once"
                )
            now = self._clock.now()
            updated = rules.rated(current, satisfaction, who.subject, now)
            await self._writes.commit(
                Change(
                    saves=[(updated, current.version)],
                    events=[InteractionRated(updated, who.subject, now)],
                )
            )
            return updated

        updated = await retry_on_conflict(
            attempt, resource="interaction", resource_id=interaction_id
        )
        log.info("interaction_rated", interaction_id=interaction_id, satisfaction=satisfaction)
        return updated

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
        interaction_id = v.identifier("id", interaction_id)
        paths = validate_mask(paths, v)
        reason = validate_reason(reason, v)
        v.raise_if_any()
        current = await self._current(interaction_id)
        authorization.amend_interaction(who, current)
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
            await self._writes.commit(change)
        except VersionConflictError:
            # The caller's etag was current when read: a concurrent change makes it stale.
            raise StaleEtagError("interaction", interaction_id) from None
        log.info("interaction_amended", interaction_id=interaction_id, fields=list(changed))
        return updated

    # --- helpers -----------------------------------------------------------------------------

    async def _current(self, interaction_id: str) -> Interaction:
        interaction = await self._store.get(interaction_id)
        if interaction is None:
            raise NotFoundError("interaction", interaction_id)
        return interaction

    async def _live_contact(self, contact_id: str) -> KnownContact:
        """Follows merges to the survivor; an unknown or erased contact gets no new touches.

        Read from the local model of the contacts stream: recording never waits on (or fails
        with) the contacts service.
        """
        first = await self._store.contact(contact_id)
        if first is None:
            raise FailedPreconditionError(
                f"contact {contact_id!r} is not known to the interactions service: it does not"
                " exist, or its creation has not arrived yet"
            )
        contact = await follow_merges(first, self._store.contact, lambda c: c.merged_into_id)
        if contact is None:
            raise FailedPreconditionError(
                f"contact {contact_id!r} was merged, but its merges lead to no contact known"
                f" here (or along more than {MAX_MERGE_HOPS} merges)"
            )
        via = "" if contact.id == contact_id else f" (merged into {contact.id!r})"
        if contact.erased_at is not None:
            raise FailedPreconditionError(f"contact {contact_id!r}{via} was erased")
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


def _refuse_erased(interaction: Interaction) -> None:
    if interaction.erased_at is not None:
        raise FailedPreconditionError(
            f"interaction {interaction.id!r} belongs to an erased contact and cannot change"
        )
