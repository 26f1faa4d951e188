"""Rules on what a caller sends to the follow-up service: each adds to a Violations, so a caller
learns every mistake at once, and returns the value normalised (stripped) for the use case."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from followup.domain.model import Evidence, PromiseDraft
from followup.ports import PromiseFilter
from promesa.errors import Violations, control_characters
from promesa.instants import check_due

MAX_TEXT = 2000
MAX_REASON = 1000
MAX_ID = 200


def check_id(v: Violations, path: str, value: str, *, required: bool = False) -> str:
    """An id or a name of someone (owner, team): short, one line, no control characters."""
    value = v.text(path, value, MAX_ID)
    if required:
        v.check(bool(value), path, "must not be empty")
    return value


def usable_id(value: str) -> bool:
    """An id `check_id` let through: worth looking up."""
    return len(value) <= MAX_ID and not control_characters(value)


def check_draft(d: PromiseDraft, v: Violations, now: datetime, horizon: timedelta) -> PromiseDraft:
    """A new promise names its contact and owner, says what was promised, has a kind, and is
    due later than now, within the horizon. The earlier promise it follows is looked up by the
    use case."""
    contact_id = v.text("promise.contact_id", d.contact_id, MAX_ID)
    v.check(bool(contact_id), "promise.contact_id", "must name the contact")
    text = v.text("promise.text", d.text, MAX_TEXT)
    v.check(bool(text), "promise.text", "must say what was promised")
    v.check(d.kind is not None, "promise.kind", "must be set")
    owner_id = v.text("promise.owner_id", d.owner_id, MAX_ID)
    v.check(bool(owner_id), "promise.owner_id", "must name the owner")
    if v.check(d.due_at is not None, "promise.due_at", "must be set"):
        assert d.due_at is not None
        check_due(v, "promise.due_at", d.due_at, now, horizon)
    return replace(
        d,
        contact_id=contact_id,
        text=text,
        owner_id=owner_id,
        team=check_id(v, "promise.team", d.team),
        source_interaction_id=check_id(v, "promise.source_interaction_id", d.source_interaction_id),
        follows_promise_id=check_id(v, "promise.follows_promise_id", d.follows_promise_id),
    )


def check_reason(v: Violations, reason: str, *, required: bool = True) -> str:
    reason = v.text("reason", reason, MAX_REASON)
    if required:
        v.check(bool(reason), "reason", "must say why")
    return reason


def check_evidence(v: Violations, evidence: Evidence) -> Evidence:
    """What proves a promise kept: an interaction, or a note of what was done (prose, so it may
    hold line breaks)."""
    checked = Evidence(
        interaction_id=check_id(v, "evidence.interaction_id", evidence.interaction_id),
        note=v.text("evidence.note", evidence.note, MAX_TEXT, line_breaks=True),
    )
    v.check(
        bool(checked),
        "evidence",
        "give the id of the interaction that proves it, or a note of what was done",
    )
    return checked


def check_new_owner(v: Violations, new_owner_id: str, new_team: str) -> tuple[str, str]:
    owner = v.text("new_owner_id", new_owner_id, MAX_ID)
    v.check(bool(owner), "new_owner_id", "must name the new owner")
    return owner, check_id(v, "new_team", new_team)


def check_new_due(
    v: Violations,
    new_due: datetime | None,
    customer_agreed: bool,
    now: datetime,
    horizon: timedelta,
) -> None:
    """A due time moves only later than now, within the horizon, and with the customer's
    agreement."""
    if v.check(new_due is not None, "new_due_at", "must be set"):
        assert new_due is not None
        check_due(v, "new_due_at", new_due, now, horizon)
    v.check(
        customer_agreed,
        "customer_agreed",
        "a due time moves only when the customer agreed to the new one",
    )


def check_satisfaction(v: Violations, satisfaction: int) -> None:
    v.check(1 <= satisfaction <= 5, "satisfaction", "must be from 1 to 5")


def check_filter(v: Violations, f: PromiseFilter) -> PromiseFilter:
    if f.due_after and f.due_before:
        v.check(f.due_after < f.due_before, "due_before", "must be later than due_after")
    return replace(
        f,
        owner_id=check_id(v, "owner_id", f.owner_id),
        team=check_id(v, "team", f.team),
        contact_id=check_id(v, "contact_id", f.contact_id),
    )


def check_window(v: Violations, start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None:
        v.check(start < end, "window_end_at", "must be later than window_start_at")
