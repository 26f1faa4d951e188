"""What events from the other services do to promises: interactions make them, contacts that
became inactive get a win-back which a purchase keeps, erased and merged contacts carry over,
profiles are kept.

Events arrive in any order (two streams, redeliveries, a consumer that was down), so the fate
of every contact heard of is kept (`ContactFate`) and applied to what comes late: nothing is
made for an erased contact (the event is acknowledged and counted), what is made for a
merged-away one lands on the survivor with a history entry saying so, and a lapse or a
purchase older than the latest one of the other kind is stale. A change that puts something on
a contact is refused if that contact's fate changed since it was read (ContactGoneError), and
decided again.

Each reaction commits its effect with the event's inbox row, so a redelivery changes nothing
(it returns False). A caller's concurrent write makes the commit fail (a version conflict): the
reaction reads again and retries. The actor is the event's when it names one, else the worker
handling it (`current_identity()`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from followup import metrics
from followup.domain import lifecycle
from followup.domain.contacts import ContactFate, ContactPreferences
from followup.domain.events import ContactErasureConfirmed
from followup.domain.model import (
    Channel,
    Evidence,
    Priority,
    Promise,
    PromiseDraft,
    PromiseKind,
)
from followup.ports import Change, ContactGoneError, EventStreams, PromiseStore
from followup.usecases.planning import PromisePlanner, new_promise
from promesa.auth import current_identity
from promesa.clock import Clock
from promesa.ids import derived_id
from promesa.storage import InboxKey, VersionConflictError
from promesa.usecases import MAX_MERGE_HOPS, Writes, follow_merges, retry_on_conflict

log = structlog.get_logger(__name__)

COMPLAINT_TEXT = "Resolve the complaint and tell the customer what was done"
WIN_BACK_TEXT = "Find out why they left and invite them back"


@dataclass(frozen=True)
class PromiseInInteraction:
    """One promise an interaction records; its id becomes the promise's."""

    id: str
    text: str
    due_at: datetime
    owner_id: str
    kind: PromiseKind | None


@dataclass(frozen=True)
class InteractionFacts:
    """The part of InteractionRecorded the follow-up service acts on."""

    interaction_id: str
    contact_id: str
    is_complaint: bool
    channel: Channel | None
    occurred_at: datetime
    agent_id: str
    team: str
    actor: str
    promises: tuple[PromiseInInteraction, ...]


class PromiseReactions:
    def __init__(
        self,
        store: PromiseStore,
        writes: Writes[Change],
        clock: Clock,
        *,
        planner: PromisePlanner,
        streams: EventStreams,
        complaint_resolution: timedelta = timedelta(hours=48),
        win_back_within: timedelta = timedelta(days=7),
    ) -> None:
        """`streams` is the service's own event stream, purged of an erased contact."""
        self._store = store
        self._writes = writes
        self._clock = clock
        self._planner = planner
        self._streams = streams
        self._complaint_resolution = complaint_resolution
        self._win_back_within = win_back_within

    async def interaction_recorded(self, inbox: InboxKey, facts: InteractionFacts) -> bool:
        """One promise per promise made (idempotent by its id); a complaint with none gets a
        resolution promise by policy, owned by the agent who took it. Due times are the
        interaction's, however far ahead: they were checked where the interaction entered.
        Nothing for an erased contact; a merged-away contact's promises land on the survivor."""

        async def attempt() -> bool:
            place = await self._destination(facts.contact_id)
            if place is None or place.erased_at is not None:
                return await self._ignored(inbox, "interaction_recorded", facts.contact_id, place)
            now = self._clock.now()
            profile = await self._store.profile(place.contact_id)
            drafts = self._drafts(facts, profile)
            known = {p.id for p in await self._store.get_many([pid for pid, _ in drafts])}
            actor = facts.actor or facts.agent_id or current_identity().subject
            change = Change(handled=inbox, live_contact=place.contact_id)
            for promise_id, draft in drafts:
                if promise_id not in known:
                    promise = self._landed(new_promise(promise_id, draft, actor, now), place, now)
                    promise = self._planner.levelled(promise, profile)
                    self._planner.made(change, promise, actor, now)
            return await self._writes.react(change)

        return await self._deciding(attempt, facts.contact_id)

    def _drafts(
        self, facts: InteractionFacts, profile: ContactPreferences | None
    ) -> list[tuple[str, PromiseDraft]]:
        drafts = [
            (
                p.id or derived_id(facts.interaction_id, "promise", str(i)),
                PromiseDraft(
                    contact_id=facts.contact_id,
                    text=p.text,
                    kind=p.kind or PromiseKind.OTHER,
                    owner_id=p.owner_id or facts.agent_id,
                    due_at=p.due_at,
                    team=facts.team,
                    channel=facts.channel,
                    source_interaction_id=facts.interaction_id,
                ),
            )
            for i, p in enumerate(facts.promises)
        ]
        if facts.is_complaint and not drafts:
            drafts.append(
                (
                    derived_id(facts.interaction_id, "complaint-resolution"),
                    PromiseDraft(
                        contact_id=facts.contact_id,
                        text=COMPLAINT_TEXT,
                        kind=PromiseKind.RESOLVE_COMPLAINT,
                        owner_id=facts.agent_id,
                        due_at=self._planner.target(
                            PromiseKind.RESOLVE_COMPLAINT,
                            Priority.HIGH,
                            facts.channel,
                            profile,
                            facts.team,
                            facts.occurred_at,
                            self._complaint_resolution,
                        ),
                        team=facts.team,
                        channel=facts.channel,
                        source_interaction_id=facts.interaction_id,
                        priority=Priority.HIGH,
                    ),
                )
            )
        return drafts

    async def contact_became_inactive(
        self,
        inbox: InboxKey,
        *,
        contact_id: str,
        owner_id: str,
        team: str,
        occurred_at: datetime | None = None,
    ) -> bool:
        """An inactive customer is worth a call: a win-back, unless one made for them is open.
        A lapse older than a purchase heard of already is stale: its win-back is made and kept
        at once, as it would have been had the events come in order."""
        now = self._clock.now()
        lapsed_at = occurred_at or now

        async def attempt() -> bool:
            place = await self._destination(contact_id)
            if place is None or place.erased_at is not None:
                return await self._ignored(inbox, "contact_became_inactive", contact_id, place)
            own = await self._store.fate(contact_id) or ContactFate(contact_id)
            change = Change(
                handled=inbox,
                live_contact=place.contact_id,
                fates=[ContactFate(contact_id, inactive_at=lapsed_at)],
            )
            owner = owner_id or self._planner.supervisor_of(team)
            if not owner:
                log.warning("win_back_without_owner", contact_id=contact_id, team=team)
            elif not await self._open_win_backs(contact_id, place):
                profile = await self._store.profile(place.contact_id)
                due_at = self._planner.target(
                    PromiseKind.WIN_BACK,
                    Priority.NORMAL,
                    None,
                    profile,
                    team,
                    now,
                    self._win_back_within,
                )
                draft = PromiseDraft(
                    contact_id=contact_id,
                    text=WIN_BACK_TEXT,
                    kind=PromiseKind.WIN_BACK,
                    owner_id=owner,
                    due_at=due_at,
                    team=team,
                )
                actor = current_identity().subject
                made = new_promise(derived_id(inbox.event_id, "win-back"), draft, actor, now)
                promise = self._planner.levelled(self._landed(made, place, now), profile)
                if own.active_at is not None and own.active_at >= lapsed_at:
                    promise, kept = lifecycle.keep(promise, bought(own.active_at), actor, now)
                    self._planner.made(change, promise, actor, now)
                    change.events.extend(kept)
                else:
                    self._planner.made(change, promise, actor, now)
            return await self._writes.react(change)

        return await self._deciding(attempt, contact_id)

    async def contact_became_active(
        self,
        inbox: InboxKey,
        *,
        contact_id: str,
        purchased_at: datetime | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """The customer bought again: the win-back made for them is kept, by this event, with
        the purchase as evidence (not left to escalate). A purchase older than a lapse heard
        of already is stale: the customer left again after it, so their win-back stays open."""
        now = self._clock.now()
        active_at = purchased_at or occurred_at or now

        async def attempt() -> bool:
            place = await self._destination(contact_id)
            if place is None or place.erased_at is not None:
                return await self._ignored(inbox, "contact_became_active", contact_id, place)
            own = await self._store.fate(contact_id) or ContactFate(contact_id)
            change = Change(handled=inbox, fates=[ContactFate(contact_id, active_at=active_at)])
            if own.inactive_at is None or own.inactive_at <= active_at:
                who = current_identity().subject
                for p in await self._open_win_backs(contact_id, place):
                    kept, events = lifecycle.keep(p, bought(active_at), who, now)
                    change.saves.append((kept, p.version))
                    change.events.extend(events)
                    change.replans[p.id] = []
            return await self._writes.react(change)

        return await self._deciding(attempt, contact_id)

    async def contact_erased(self, inbox: InboxKey, *, contact_id: str) -> bool:
        """The right to be forgotten, in the order that leaves nothing behind, each step
        idempotent (a redelivery after a crash resumes it): the fate is recorded first, so
        that nothing is made for the contact from then on; open promises are cancelled and
        every free text about the contact removed; the database is scrubbed; the service's
        stream is purged of the contact (and of every contact merged into them); then the
        event is marked handled together with ContactErasureConfirmed. Once confirmed, a
        redelivery does nothing: purging again would remove the confirmation."""
        known = await self._store.fate(contact_id)
        if known is not None and known.erasure_confirmed_at is not None:
            return await self._writes.react(Change(handled=inbox))
        now = self._clock.now()
        erased = ContactFate(contact_id, erased_at=now)
        await self._writes.commit(Change(fates=[erased], forgotten_profiles=[contact_id]))
        count = await self._erase_promises(contact_id)
        await self._store.scrub()
        for gone in (contact_id, *await self._duplicates(contact_id)):
            await self._streams.erase(gone)
            await self._store.forget_dead_letters(gone)
        # The purge published what was pending first, and deleting those outbox rows (a
        # reminder's text among them, maybe) left earlier versions behind: scrub once more.
        await self._store.scrub()
        confirmed = ContactFate(contact_id, erasure_confirmed_at=now)
        handled = await self._writes.react(
            Change(
                handled=inbox,
                fates=[confirmed],
                events=[ContactErasureConfirmed(contact_id, now)],
            )
        )
        if handled:
            log.info("contact_erased", contact_id=contact_id, promises=count)
        return handled

    async def contacts_merged(self, inbox: InboxKey, *, merged_id: str, survivor_id: str) -> bool:
        """One customer, one ledger: the duplicate's promises move to the survivor, each with a
        history entry saying so. The merge is recorded first, so that what is made for the
        duplicate from then on lands on the survivor. When the survivor was erased already
        (heard of first), the promises are erased on arrival, and the duplicate's messages
        purged from the stream as the survivor's were."""
        who = current_identity().subject
        await self._writes.commit(
            Change(
                fates=[ContactFate(merged_id, merged_into_id=survivor_id), ContactFate(survivor_id)]
            )
        )

        async def attempt() -> bool:
            place = await self._destination(survivor_id)
            target = place.contact_id if place is not None else survivor_id
            gone = place is not None and place.erased_at is not None
            now = self._clock.now()
            change = Change(
                handled=inbox,
                forgotten_profiles=[merged_id],
                live_contact="" if gone else target,
            )
            for p in await self._store.of_contact(merged_id):
                moved = lifecycle.repoint(p, target, who, now)
                if gone and moved.erased_at is None:
                    moved, events = lifecycle.erase(moved, now)
                    change.events.extend(events)
                change.saves.append((moved, p.version))
                change.replans[p.id] = [] if gone else self._planner.reminders(moved, now)
            return await self._writes.react(change)

        handled = await self._deciding(attempt, merged_id)
        place = await self._destination(merged_id)
        if place is not None and place.erased_at is not None:
            await self._streams.erase(merged_id)
            await self._store.forget_dead_letters(merged_id)
            await self._store.scrub()
        return handled

    async def contact_profile_changed(self, inbox: InboxKey, profile: ContactPreferences) -> bool:
        """The local read model of the contact's preferences, for reminders and notices; none
        is kept of a contact erased or merged away (the survivor's own events speak for it)."""
        contact_id = profile.contact_id

        async def attempt() -> bool:
            fate = await self._store.fate(contact_id)
            if fate is not None and fate.erased_at is not None:
                return await self._ignored(inbox, "contact_profile_changed", contact_id, fate)
            if fate is not None and not fate.is_live:
                return await self._writes.react(Change(handled=inbox))
            change = Change(handled=inbox, profiles=[profile], live_contact=contact_id)
            return await self._writes.react(change)

        return await self._deciding(attempt, contact_id)

    # --- the fate of contacts ------------------------------------------------------------------

    async def _destination(self, contact_id: str) -> ContactFate | None:
        """The fate of the contact, or of its survivor at the end of its merges: where what is
        made for the contact belongs now. None when the merges lead nowhere (a loop)."""

        async def fate_of(cid: str) -> ContactFate:
            return await self._store.fate(cid) or ContactFate(cid)

        return await follow_merges(await fate_of(contact_id), fate_of, lambda f: f.merged_into_id)

    async def _duplicates(self, contact_id: str) -> list[str]:
        """Every contact merged into this one, directly or through others."""
        found: list[str] = []
        level = [contact_id]
        for _ in range(MAX_MERGE_HOPS):
            level = [
                d
                for c in level
                for d in await self._store.duplicates_of(c)
                if d not in found and d != contact_id
            ]
            if not level:
                break
            found.extend(level)
        return found

    async def _open_win_backs(self, contact_id: str, place: ContactFate) -> list[Promise]:
        """The open win-backs made for this contact, wherever merges moved them."""
        open_ones = await self._store.open_of_kind(place.contact_id, PromiseKind.WIN_BACK)
        return [p for p in open_ones if p.made_for == contact_id]

    def _landed(self, promise: Promise, place: ContactFate, now: datetime) -> Promise:
        """A promise made for a merged-away contact, moved to the survivor with its history
        entry, as the merge would have moved it had it come first."""
        if place.contact_id == promise.contact_id:
            return promise
        return lifecycle.repoint(promise, place.contact_id, current_identity().subject, now)

    async def _erase_promises(self, contact_id: str) -> int:
        async def attempt() -> int:
            now = self._clock.now()
            change = Change()
            for p in await self._store.of_contact(contact_id):
                if p.erased_at is None:
                    erased, events = lifecycle.erase(p, now)
                    change.saves.append((erased, p.version))
                    change.events.extend(events)
                    change.replans[p.id] = []
            if change.saves:
                await self._writes.commit(change)
            return len(change.saves)

        return await retry_on_conflict(attempt, resource="contact", resource_id=contact_id)

    async def _ignored(
        self, inbox: InboxKey, event: str, contact_id: str, fate: ContactFate | None
    ) -> bool:
        """Acknowledges an event about a contact that is gone, with nothing recorded: counted
        when the contact was erased, logged as an error when its merges lead nowhere."""
        handled = await self._writes.react(Change(handled=inbox))
        if not handled:
            return False
        if fate is None:
            log.error("merges_lead_nowhere", reaction=event, contact_id=contact_id)
        else:
            metrics.EVENTS_ABOUT_ERASED_CONTACTS.labels(event).inc()
            log.info("event_about_erased_contact", reaction=event, contact_id=contact_id)
        return True

    @staticmethod
    async def _deciding(attempt: Callable[[], Awaitable[bool]], contact_id: str) -> bool:
        """Runs a reaction again on fresh data when a caller or another reaction changed the
        promises or the contact's fate between its reads and its commit."""
        return await retry_on_conflict(
            attempt,
            resource="contact",
            resource_id=contact_id,
            conflicts=(VersionConflictError, ContactGoneError),
        )


def bought(at: datetime) -> Evidence:
    """A win-back kept by the customer's purchase, the evidence of their return."""
    return Evidence(note=f"The customer bought again ({at.isoformat().replace('+00:00', 'Z')})")
