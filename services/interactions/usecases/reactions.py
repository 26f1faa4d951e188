"""Reactions to the contacts stream: the local model of contacts (with each one's team), and
the cascades that erase or move a contact's touches; and to the follow-up stream: a customer's
own rating of a kept promise, for the interaction it was made in. Each is applied once per
event (the inbox); an erasure also reaches the disk and the service's stream, and is confirmed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from interactions.domain import rules
from interactions.domain.events import ContactErasureConfirmed, InteractionRated
from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Change, EventStreams, InteractionStore
from promesa.clock import Clock
from promesa.storage import InboxKey
from promesa.usecases import MAX_MERGE_HOPS, Writes, follow_merges, retry_on_conflict

log = structlog.get_logger(__name__)

CASCADE_BATCH = 500


class InteractionReactions:
    """What events about contacts do to the timeline; each returns False for a redelivery."""

    def __init__(
        self,
        store: InteractionStore,
        writes: Writes[Change],
        clock: Clock,
        *,
        streams: EventStreams,
        cascade_batch: int = CASCADE_BATCH,
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._streams = streams
        self._batch = cascade_batch

    async def contact_created(
        self, inbox: InboxKey, *, contact_id: str, owner_id: str, team: str, at: datetime | None
    ) -> bool:
        """The contact may now get touches, from its team; a late or repeated creation revives
        nobody, and does not undo a later profile."""
        return await self._profile(inbox, contact_id, owner_id, team, at)

    async def contact_updated(
        self, inbox: InboxKey, *, contact_id: str, owner_id: str, team: str, at: datetime | None
    ) -> bool:
        """The contact may have moved to another owner or team: who may record touches follows."""
        return await self._profile(inbox, contact_id, owner_id, team, at)

    async def _profile(
        self, inbox: InboxKey, contact_id: str, owner_id: str, team: str, at: datetime | None
    ) -> bool:
        known = await self._store.contact(contact_id)
        current = known or KnownContact(contact_id)
        updated = rules.profiled(current, owner_id, team, at) or (None if known else current)
        rows = [updated] if updated else []
        return await self._writes.react(Change(contacts=rows, handled=inbox))

    async def contact_erased(self, inbox: InboxKey, *, contact_id: str, actor: str) -> bool:
        """The right to be forgotten: no new touches, the words of the old ones removed, their
        old versions gone from the disk and the contact's events from the stream; then a
        confirmation, once.

        Every step is idempotent, so a redelivery after a crash finishes the work. Once
        confirmed, an erasure event (redelivered, or another one) is only acknowledged: purging
        again would take the confirmation itself out of the stream.
        """
        known = await self._store.contact(contact_id) or KnownContact(contact_id)
        if known.erasure_confirmed_at is not None:
            return await self._writes.react(Change(handled=inbox))
        if known.erased_at is None:
            # First, so that no touch can be recorded behind the cascade.
            known = replace(known, erased_at=self._clock.now())
            await self._writes.commit(Change(contacts=[known]))
        count = await self._erase_touches(contact_id, actor)
        # Events recorded under contacts merged into this one carry their ids in the subject.
        await self._purge(contact_id, *await self._merged_into(contact_id))
        now = self._clock.now()
        confirmed = replace(known, erasure_confirmed_at=now)
        handled = await self._writes.react(
            Change(
                contacts=[confirmed],
                events=[ContactErasureConfirmed(contact_id, now)],
                handled=inbox,
            )
        )
        if handled:
            log.info("contact_erased_from_timeline", contact_id=contact_id, interactions=count)
        return handled

    async def _erase_touches(self, contact_id: str, actor: str) -> int:
        return await self._cascade(
            contact_id,
            lambda: self._store.of_contact(contact_id, self._batch, unerased_only=True),
            lambda i, now: rules.erased(i, actor, now),
        )

    async def _purge(self, *contact_ids: str) -> None:
        """The contacts' messages leave the stream, then the disk is scrubbed: after the purge,
        whose outbox flush deletes rows too, so the checkpoint leaves no earlier version of any
        of them in the database or its WAL."""
        for contact_id in contact_ids:
            await self._streams.erase(contact_id)
            await self._store.forget_dead_letters(contact_id)
        await self._store.scrub()

    async def _merged_into(self, contact_id: str) -> list[str]:
        """Every contact merged into this one, directly or along a chain of merges."""
        seen = {contact_id}
        found: list[str] = []
        level = [contact_id]
        for _ in range(MAX_MERGE_HOPS):
            nearer = [m for c in level for m in await self._store.merged_into(c)]
            level = [m for m in dict.fromkeys(nearer) if m not in seen]
            seen.update(level)
            found.extend(level)
        return found

    async def contacts_merged(
        self, inbox: InboxKey, *, merged_id: str, survivor_id: str, actor: str
    ) -> bool:
        """One customer, one timeline: the duplicate's touches move to the survivor."""
        merged = await self._store.contact(merged_id) or KnownContact(merged_id)
        rows = []
        if merged.merged_into_id != survivor_id:
            rows.append(replace(merged, merged_into_id=survivor_id))
        if await self._store.contact(survivor_id) is None:
            rows.append(KnownContact(survivor_id))
        if rows:
            await self._writes.commit(Change(contacts=rows))
        # The survivor may itself have been merged away meanwhile (events in any order):
        # the touches go to the end of the chain, where the customer lives on.
        survivor = await follow_merges(
            await self._store.contact(survivor_id), self._store.contact, lambda c: c.merged_into_id
        )
        target = survivor.id if survivor is not None else survivor_id
        count = await self._cascade(
            merged_id,
            lambda: self._store.of_contact(merged_id, self._batch),
            lambda i, now: rules.repointed(i, target, actor, now),
        )
        if survivor is not None and survivor.erased_at is not None:
            # The merge arrived after the survivor's erasure (delivered late): what it brought
            # is erased too, and the duplicates' events leave the stream. The survivor's own
            # subjects are not purged again: its erasure confirmation is there.
            await self._erase_touches(target, actor)
            await self._purge(merged_id, *await self._merged_into(merged_id))
        handled = await self._writes.react(Change(handled=inbox))
        if handled:
            log.info(
                "timeline_merged",
                merged_id=merged_id,
                survivor_id=survivor_id,
                interactions=count,
            )
        return handled

    async def customer_satisfaction_given(
        self,
        inbox: InboxKey,
        *,
        interaction_id: str,
        contact_id: str,
        score: int,
        actor: str,
        at: datetime | None,
    ) -> bool:
        """The customer rated a kept promise through its satisfaction request: the score is
        the rating of the interaction the promise was made in, given once, by the customer
        (`actor` is customer:<contact id>). An interaction rated already (by staff, or by an
        earlier answer), erased or unknown here keeps what it has; the event is still handled."""

        async def attempt() -> bool:
            current = await self._store.get(interaction_id)
            change = Change(handled=inbox)
            if current is not None and current.erased_at is None and current.satisfaction is None:
                when = at or self._clock.now()
                rated = rules.rated(current, score, actor, when)
                change.saves.append((rated, current.version))
                change.events.append(InteractionRated(rated, actor, when))
            return await self._writes.react(change)

        handled = await retry_on_conflict(
            attempt, resource="interaction", resource_id=interaction_id
        )
        if handled:
            log.info(
                "customer_rating_handled", interaction_id=interaction_id, contact_id=contact_id
            )
        return handled

    async def _cascade(
        self,
        contact_id: str,
        select: Callable[[], Awaitable[Sequence[Interaction]]],
        change: Callable[[Interaction, datetime], Interaction],
    ) -> int:
        """Rewrites a contact's interactions a batch per transaction, however many there are.

        Each batch leaves the selection, so a redelivered event resumes where a crash stopped.
        A batch one of whose touches was amended or rated meanwhile is read again.
        """

        async def batch() -> int:
            rows = await select()
            if rows:
                now = self._clock.now()
                await self._writes.commit(Change(saves=[(change(i, now), i.version) for i in rows]))
            return len(rows)

        done = 0
        while moved := await retry_on_conflict(batch, resource="contact", resource_id=contact_id):
            done += moved
        return done
