"""Reactions to the contacts stream: the local model of contacts, and the cascades that erase
or move a contact's touches. Each is applied once per event (the inbox)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from interactions.domain import rules
from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Change, InteractionStore
from promesa.clock import Clock
from promesa.storage import InboxKey
from promesa.usecases import Writes, retry_on_conflict

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
        cascade_batch: int = CASCADE_BATCH,
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._batch = cascade_batch

    async def contact_created(self, inbox: InboxKey, *, contact_id: str) -> bool:
        """The contact may now get touches; a late or repeated creation revives nobody."""
        known = await self._store.contact(contact_id)
        rows = [] if known else [KnownContact(contact_id)]
        return await self._writes.react(Change(contacts=rows, handled=inbox))

    async def contact_erased(self, inbox: InboxKey, *, contact_id: str, actor: str) -> bool:
        """The right to be forgotten: no new touches, and the words of the old ones removed."""
        known = await self._store.contact(contact_id) or KnownContact(contact_id)
        if known.erased_at is None:
            # First, so that no touch can be recorded behind the cascade.
            erased = replace(known, erased_at=self._clock.now())
            await self._writes.commit(Change(contacts=[erased]))
        count = await self._cascade(
            contact_id,
            lambda: self._store.of_contact(contact_id, self._batch, unerased_only=True),
            lambda i, now: rules.erased(i, actor, now),
        )
        handled = await self._writes.react(Change(handled=inbox))
        if handled:
            log.info("contact_erased_from_timeline", contact_id=contact_id, interactions=count)
        return handled

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
        count = await self._cascade(
            merged_id,
            lambda: self._store.of_contact(merged_id, self._batch),
            lambda i, now: rules.repointed(i, survivor_id, actor, now),
        )
        handled = await self._writes.react(Change(handled=inbox))
        if handled:
            log.info(
                "timeline_merged",
                merged_id=merged_id,
                survivor_id=survivor_id,
                interactions=count,
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
