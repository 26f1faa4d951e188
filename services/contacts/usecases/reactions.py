"""Reactions to events and to time: a recorded interaction moves a contact's last touch (and
last purchase) forward; a service's confirmation that it erased a contact is added to the
erasure record; the sweep turns contacts inactive when their active window has passed."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from contacts.domain import lifecycle
from contacts.domain.erasure import ErasureConfirmation
from contacts.domain.model import Contact
from contacts.ports import Change, ContactStore
from promesa.clock import Clock
from promesa.storage import InboxKey, VersionConflictError
from promesa.usecases import Writes, follow_merges, retry_on_conflict

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


class ContactReactions:
    """What events and time change; a reaction to an event returns False for a redelivery."""

    def __init__(
        self,
        store: ContactStore,
        writes: Writes[Change],
        clock: Clock,
        *,
        active_window: timedelta,
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._window = active_window

    async def interaction_recorded(
        self, inbox: InboxKey, *, contact_id: str, occurred_at: datetime, is_purchase: bool
    ) -> bool:
        """The touch counts for the contact, or for the survivor it was merged into; an erased
        or unknown contact keeps nothing (the event is only marked handled). The result does
        not depend on whether the touch arrives before or after the merge or the erasure: a
        merge takes the later dates of the two, and an erasure forgets them. False when this
        event was applied before."""

        async def attempt() -> bool:
            contact = await self._live(contact_id)
            if contact is None:
                return await self._writes.react(Change(handled=inbox))
            updated, events = lifecycle.record_touch(
                contact, occurred_at, is_purchase, self._clock.now(), self._window
            )
            change = Change(saves=[(updated, contact.version)], events=events, handled=inbox)
            return await self._writes.react(change)

        return await retry_on_conflict(attempt, resource="contact", resource_id=contact_id)

    async def contact_erasure_confirmed(
        self, inbox: InboxKey, *, contact_id: str, service: str, confirmed_at: datetime
    ) -> bool:
        """`service` erased what it held of the contact: the erasure record says so. Each
        service's first confirmation is kept, in whatever order they come; nothing is read
        first, so there is nothing to race. False when this event was applied before."""
        confirmation = ErasureConfirmation(contact_id, service, confirmed_at)
        applied = await self._writes.react(Change(confirmations=[confirmation], handled=inbox))
        if applied:
            log.info("contact_erasure_confirmed", contact_id=contact_id, service=service)
        return applied

    async def sweep_inactive(self, batch: int = SWEEP_BATCH) -> int:
        """Turns contacts inactive when their active window has passed: exactly once each."""
        now = self._clock.now()
        lapsed = await self._store.lapsed(now - self._window, batch)
        count = 0
        for contact in lapsed:
            updated, events = lifecycle.lapse(contact, now, self._window)
            if not events:
                continue
            try:
                await self._writes.commit(Change(saves=[(updated, contact.version)], events=events))
            except VersionConflictError:
                continue  # changed meanwhile (a purchase?); the next sweep looks again
            count += 1
        if count:
            log.info("contacts_became_inactive", count=count)
        return count

    async def _live(self, contact_id: str) -> Contact | None:
        contact = await follow_merges(
            await self._store.get(contact_id), self._store.get, lambda c: c.merged_into_id
        )
        return contact if contact is not None and contact.is_live else None
