"""The promise lifecycle as pure functions: each returns the new promise and the events it causes.

Preconditions on state are checked here and raise PromiseStateError; the use cases check the
caller's input first, so these rules only see well-formed values.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from followup.domain.events import (
    POLICY_ACTOR,
    PromiseCancelled,
    PromiseEscalated,
    PromiseEvent,
    PromiseKept,
    PromiseOverdue,
    PromiseReassigned,
    PromiseRenegotiated,
)
from followup.domain.model import Action, Evidence, HistoryEntry, Promise, Status, shifted

Result = tuple[Promise, list[PromiseEvent]]
ERASED_TEXT = ""


class PromiseStateError(Exception):
    """The promise is not in a state that allows this change."""


def _changed(
    p: Promise,
    entry: HistoryEntry,
    **fields: object,
) -> Promise:
    return replace(
        p,
        **fields,  # type: ignore[arg-type]
        history=(*p.history, entry),
        version=p.version + 1,
        updated_at=entry.occurred_at,
        updated_by=entry.actor,
    )


def _require_open(p: Promise, doing: str) -> None:
    if not p.is_open:
        raise PromiseStateError(f"promise {p.id} is {p.status.value.lower()}; cannot {doing}")


def created(p: Promise) -> Promise:
    """A new promise with its first history entry."""
    entry = HistoryEntry(p.created_by, p.created_at, Action.CREATED, to_value=_iso(p.due_at))
    return replace(p, history=(entry,), updated_at=p.created_at, updated_by=p.created_by)


def keep(p: Promise, evidence: Evidence, who: str, now: datetime) -> Result:
    _require_open(p, "keep it")
    p = _end_pause(p, now)
    on_time = now <= p.due_at
    entry = HistoryEntry(
        who, now, Action.KEPT, reason=evidence.note, to_value=evidence.interaction_id
    )
    kept = _changed(
        p, entry, status=Status.KEPT, kept_at=now, kept_on_time=on_time, evidence=evidence
    )
    return kept, [PromiseKept(kept, who, now)]


def reassign(
    p: Promise, new_owner: str, new_team: str, reason: str, who: str, now: datetime
) -> Result:
    _require_open(p, "reassign it")
    if new_owner == p.owner_id:
        raise PromiseStateError(f"promise {p.id} is already owned by {new_owner}")
    entry = HistoryEntry(
        who, now, Action.REASSIGNED, reason=reason, from_value=p.owner_id, to_value=new_owner
    )
    moved = _changed(
        p,
        entry,
        owner_id=new_owner,
        team=new_team or p.team,
        handoff_count=p.handoff_count + 1,
    )
    return moved, [PromiseReassigned(moved, p.owner_id, p.team, who, now)]


def renegotiate(
    p: Promise, new_due: datetime, reason: str, agreed: bool, who: str, now: datetime
) -> Result:
    _require_open(p, "move its due time")
    entry = HistoryEntry(
        who,
        now,
        Action.RENEGOTIATED,
        reason=reason,
        from_value=_iso(p.due_at),
        to_value=_iso(new_due),
    )
    moved = _changed(
        p,
        entry,
        due_at=shifted(new_due, -p.current_pause(now)),  # a paused promise stays paused
        renegotiation_count=p.renegotiation_count + 1,
    )
    return moved, [PromiseRenegotiated(moved, p.due_at, agreed, who, now)]


def pause(p: Promise, reason: str, who: str, now: datetime) -> Result:
    if p.status is not Status.OPEN:
        raise PromiseStateError(f"promise {p.id} is {p.status.value.lower()}; cannot pause it")
    entry = HistoryEntry(who, now, Action.PAUSED, reason=reason)
    return _changed(p, entry, status=Status.WAITING_ON_CUSTOMER, paused_at=now), []


def resume(p: Promise, reason: str, who: str, now: datetime) -> Result:
    """The due time moves later by the length of the pause: the clock stood still."""
    if p.status is not Status.WAITING_ON_CUSTOMER:
        raise PromiseStateError(f"promise {p.id} is not waiting on the customer")
    resumed = _end_pause(p, now)
    entry = HistoryEntry(
        who,
        now,
        Action.RESUMED,
        reason=reason,
        from_value=_iso(p.due_at),
        to_value=_iso(resumed.due_at),
    )
    return _changed(resumed, entry, status=Status.OPEN), []


def cancel(p: Promise, reason: str, who: str, now: datetime) -> Result:
    _require_open(p, "cancel it")
    p = _end_pause(p, now)
    entry = HistoryEntry(who, now, Action.CANCELLED, reason=reason)
    cancelled = _changed(p, entry, status=Status.CANCELLED, cancel_reason=reason)
    return cancelled, [PromiseCancelled(cancelled, who, now)]


def confirm(p: Promise, satisfaction: int, who: str, now: datetime) -> Result:
    """The customer's word on a kept promise, given once: a second would rewrite the score the
    statistics already counted (as a rating of an interaction is given once)."""
    if p.status is not Status.KEPT:
        raise PromiseStateError(f"promise {p.id} is not kept")
    if p.customer_confirmed:
        raise PromiseStateError(f"promise {p.id} was confirmed by the customer already")
    entry = HistoryEntry(who, now, Action.CONFIRMED_BY_CUSTOMER, to_value=str(satisfaction))
    confirmed = _changed(
        p, entry, customer_confirmed=True, confirmed_at=now, satisfaction=satisfaction
    )
    return confirmed, []


def note_overdue(p: Promise, now: datetime) -> Result:
    """Once per due time: the owner missed it, and everyone can see so."""
    if p.status is not Status.OPEN or now < p.due_at or p.overdue_noted_for == p.due_at:
        return p, []
    entry = HistoryEntry(POLICY_ACTOR, now, Action.OVERDUE, from_value=_iso(p.due_at))
    late = _changed(p, entry, overdue_noted_for=p.due_at)
    return late, [PromiseOverdue(late, now)]


def escalate(p: Promise, supervisor_id: str, reason: str, now: datetime) -> Result:
    if not p.is_open:
        return p, []
    entry = HistoryEntry(POLICY_ACTOR, now, Action.ESCALATED, reason=reason, to_value=supervisor_id)
    raised = _changed(p, entry, escalated_at=p.escalated_at or now)
    return raised, [PromiseEscalated(raised, supervisor_id, now)]


def erase(p: Promise, now: datetime) -> Result:
    """The contact asked to be forgotten: open promises are cancelled by policy and every free
    text the customer may appear in is removed, history included."""
    events: list[PromiseEvent] = []
    if p.is_open:
        p = _end_pause(p, now)
        entry = HistoryEntry(POLICY_ACTOR, now, Action.CANCELLED, reason="contact erased")
        p = _changed(p, entry, status=Status.CANCELLED, cancel_reason="contact erased")
        events.append(PromiseCancelled(p, POLICY_ACTOR, now))
    scrubbed = tuple(replace(h, reason="") for h in p.history)
    return (
        replace(
            p,
            text=ERASED_TEXT,
            evidence=replace(p.evidence, note=""),
            satisfaction_comment="",
            history=scrubbed,
            erased_at=now,
            version=p.version + 1,
            updated_at=now,
            updated_by=POLICY_ACTOR,
        ),
        events,
    )


def repoint(p: Promise, survivor_id: str, who: str, now: datetime) -> Promise:
    """The contact was merged into another: the promise now belongs to the survivor, and its
    history says from which contact it came (whatever its status: the ledger of the survivor
    is the customer's whole ledger)."""
    entry = HistoryEntry(
        who, now, Action.CONTACT_MERGED, from_value=p.contact_id, to_value=survivor_id
    )
    return _changed(p, entry, contact_id=survivor_id)


def _end_pause(p: Promise, now: datetime) -> Promise:
    pause_length = p.current_pause(now)
    if p.paused_at is None:
        return p
    return replace(
        p,
        due_at=shifted(p.due_at, pause_length),
        paused_total=p.paused_total + pause_length,
        paused_at=None,
    )


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
