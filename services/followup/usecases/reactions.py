"""What events from the other services do to promises: interactions make them, contacts that
became inactive get a win-back, erased and merged contacts carry over, profiles are kept.

Each reaction commits its effect with the event's inbox row, so a redelivery changes nothing
(it returns False). A caller's concurrent write makes the commit fail instead (a version
conflict): the event is redelivered and the reaction runs again on fresh data. The actor is the
event's when it names one, else the worker handling it (`current_identity()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from followup.domain import lifecycle
from followup.domain.contacts import ContactPreferences
from followup.domain.model import Channel, Priority, PromiseDraft, PromiseKind, shifted
from followup.ports import Change, PromiseStore
from followup.usecases.planning import PromisePlanner, new_promise
from promesa.auth import current_identity
from promesa.clock import Clock
from promesa.ids import derived_id
from promesa.storage import InboxKey
from promesa.usecases import Writes

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
        complaint_resolution: timedelta = timedelta(hours=48),
        win_back_within: timedelta = timedelta(days=7),
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._planner = planner
        self._complaint_resolution = complaint_resolution
        self._win_back_within = win_back_within

    async def interaction_recorded(self, inbox: InboxKey, facts: InteractionFacts) -> bool:
        """One promise per promise made (idempotent by its id); a complaint with none gets a
        resolution promise by policy, owned by the agent who took it. Due times are the
        interaction's, however far ahead: they were checked where the interaction entered."""
        now = self._clock.now()
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
                        due_at=shifted(facts.occurred_at, self._complaint_resolution),
                        team=facts.team,
                        channel=facts.channel,
                        source_interaction_id=facts.interaction_id,
                        priority=Priority.HIGH,
                    ),
                )
            )
        known = {p.id for p in await self._store.get_many([pid for pid, _ in drafts])}
        actor = facts.actor or facts.agent_id or current_identity().subject
        change = Change(handled=inbox)
        for promise_id, draft in drafts:
            if promise_id not in known:
                self._planner.made(change, new_promise(promise_id, draft, actor, now), actor, now)
        return await self._writes.react(change)

    async def contact_became_inactive(
        self, inbox: InboxKey, *, contact_id: str, owner_id: str, team: str
    ) -> bool:
        """An inactive customer is worth a call: unless a win-back is already open."""
        now = self._clock.now()
        owner = owner_id or self._planner.supervisor_of(team)
        open_ones = await self._store.open_of_kind(contact_id, PromiseKind.WIN_BACK)
        change = Change(handled=inbox)
        if owner and not open_ones:
            draft = PromiseDraft(
                contact_id=contact_id,
                text=WIN_BACK_TEXT,
                kind=PromiseKind.WIN_BACK,
                owner_id=owner,
                due_at=shifted(now, self._win_back_within),
                team=team,
            )
            actor = current_identity().subject
            promise = new_promise(derived_id(inbox.event_id, "win-back"), draft, actor, now)
            self._planner.made(change, promise, actor, now)
        elif not owner:
            log.warning("win_back_without_owner", contact_id=contact_id, team=team)
        return await self._writes.react(change)

    async def contact_erased(self, inbox: InboxKey, *, contact_id: str) -> bool:
        """Open promises are cancelled and every free text about the contact removed."""
        now = self._clock.now()
        change = Change(handled=inbox, forgotten_profiles=[contact_id])
        for p in await self._store.of_contact(contact_id):
            if p.erased_at is not None:
                continue
            erased, events = lifecycle.erase(p, now)
            change.saves.append((erased, p.version))
            change.events.extend(events)
            change.replans[p.id] = []
        return await self._writes.react(change)

    async def contacts_merged(self, inbox: InboxKey, *, merged_id: str, survivor_id: str) -> bool:
        """The merged contact's promises belong to the survivor from now on."""
        now = self._clock.now()
        who = current_identity().subject
        change = Change(handled=inbox, forgotten_profiles=[merged_id])
        for p in await self._store.of_contact(merged_id):
            moved = lifecycle.repoint(p, survivor_id, who, now)
            change.saves.append((moved, p.version))
            change.replans[p.id] = self._planner.reminders(moved, now)
        return await self._writes.react(change)

    async def contact_profile_changed(self, inbox: InboxKey, profile: ContactPreferences) -> bool:
        """The local read model of the contact's preferences, for reminders and notices."""
        return await self._writes.react(Change(handled=inbox, profiles=[profile]))
