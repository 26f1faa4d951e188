"""Planning a promise's reminders, and making a new promise with everything committed beside it:
what the commands and the reactions both do. A new promise is put under its service level here
(the policy that matches it, its contact's relationship from the local read model), and the
targets of promises made by policy are counted as that level says."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from followup.domain import lifecycle, notices
from followup.domain.contacts import ContactPreferences
from followup.domain.events import PromiseMade
from followup.domain.model import Channel, Priority, Promise, PromiseDraft, PromiseKind
from followup.domain.reminders import (
    NoticeReason,
    Outcome,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    Terms,
    delivery,
    plan,
)
from followup.ports import Change
from promesa.ids import new_id


class PromisePlanner:
    """The reminder policy (with the service levels and calendars) and the teams' supervisors,
    applied to one promise at a time."""

    def __init__(
        self,
        policy: ReminderPolicy,
        supervisor_of: Callable[[str], str],
        *,
        max_handoffs: int = 2,
        notify_when_made: bool = False,
    ) -> None:
        """`notify_when_made` (CRM_CUSTOMER_NOTICES) also tells the customer when a promise is
        made; a due date renegotiated with the customer's agreement is told to them always."""
        self.policy = policy
        self.supervisor_of = supervisor_of
        self._max_handoffs = max_handoffs
        self._notify_when_made = notify_when_made

    def reminders(self, p: Promise, now: datetime) -> list[ReminderDelivery]:
        """The reminders still to come for the promise as it stands now."""
        return plan(p, now, self.policy, self.supervisor_of(p.team), new_id)

    def replan(self, before: Promise, after: Promise, now: datetime) -> list[ReminderDelivery]:
        """The reminders of a changed promise; handed over once too often (the runaround),
        the supervisor hears of it now. That escalation is QUEUED, not PENDING: a later
        change (a pause, a new due time) replans the promise's reminders but never wipes it."""
        planned = self.reminders(after, now)
        if before.handoff_count < after.handoff_count > self._max_handoffs:
            supervisor = self.supervisor_of(after.team)
            if supervisor:
                escalation = delivery(
                    after, ReminderKind.ESCALATION, now, supervisor, self.policy, new_id()
                )
                planned.append(replace(escalation, outcome=Outcome.QUEUED))
        return planned

    def levelled(self, p: Promise, profile: ContactPreferences | None) -> Promise:
        """The new promise under the service level that matches it (its name is kept: a later
        change to the promise or to the contact does not move it to another)."""
        relationship = profile.relationship if profile is not None else None
        level = self.policy.level_for(p.kind, p.priority, p.channel, relationship)
        return replace(p, service_level=level.name)

    def target(
        self,
        kind: PromiseKind,
        priority: Priority,
        channel: Channel | None,
        profile: ContactPreferences | None,
        team: str,
        start: datetime,
        default: timedelta,
    ) -> datetime:
        """When a promise the service makes by policy (a complaint's resolution, a win-back)
        is due: its level's target, else `default` (the environment's), after `start`; in
        the team's business time when the level counts it."""
        relationship = profile.relationship if profile is not None else None
        level = self.policy.level_for(kind, priority, channel, relationship)
        terms = Terms(level, self.policy.calendar_of(team))
        return terms.add(start, level.target or default)

    def made(self, change: Change, p: Promise, actor: str, now: datetime) -> None:
        """A new promise: saved, announced, its reminders planned and, when customer notices
        are on, the customer told that it is in hand. One not put under a service level yet
        gets the one that matches it, its contact's relationship unknown."""
        if not p.service_level:
            p = self.levelled(p, None)
        change.saves.append((p, 0))
        change.events.append(PromiseMade(p, actor, now))
        change.replans[p.id] = self.reminders(p, now)
        if self._notify_when_made and notices.told_when_made(p):
            change.added.append(notices.schedule(p, NoticeReason.PROMISE_MADE, now, new_id()))


def new_promise(promise_id: str, d: PromiseDraft, actor: str, now: datetime) -> Promise:
    """A promise from a checked draft (a caller's) or one made by policy (an event's)."""
    assert d.due_at is not None and d.kind is not None, "a checked draft has both"
    return lifecycle.created(
        Promise(
            id=promise_id,
            contact_id=d.contact_id,
            text=d.text.strip(),
            kind=d.kind,
            owner_id=d.owner_id.strip(),
            team=d.team.strip(),
            created_by=actor,
            due_at=d.due_at,
            created_at=now,
            channel=d.channel,
            priority=d.priority or Priority.NORMAL,
            source_interaction_id=d.source_interaction_id,
            follows_promise_id=d.follows_promise_id,
        )
    )
