"""Rules on what a caller sends to the follow-up service: each adds to a Violations, so a caller
learns every mistake at once, and returns the value normalised (stripped) for the use case."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace
from datetime import datetime, timedelta

from followup.domain.model import Evidence, PromiseDraft
from followup.ports import PromiseFilter
from promesa.errors import MAX_ID, Violations, control_characters
from promesa.instants import check_due

MAX_TEXT = 2000
MAX_REASON = 1000


def usable_id(value: str) -> bool:
    """An id `Violations.identifier` let through: worth looking up."""
    return len(value) <= MAX_ID and not control_characters(value)


def check_draft(d: PromiseDraft, v: Violations, now: datetime, horizon: timedelta) -> PromiseDraft:
    """A new promise names its contact and owner, says what was promised, has a kind, and is
    due later than now, within the horizon. The earlier promise it follows is looked up by the
    use case."""
    contact_id = v.identifier("promise.contact_id", d.contact_id)
    text = v.text("promise.text", d.text, MAX_TEXT)
    v.check(bool(text), "promise.text", "must say what was promised")
    v.check(d.kind is not None, "promise.kind", "must be set")
    owner_id = v.identifier("promise.owner_id", d.owner_id)
    if v.check(d.due_at is not None, "promise.due_at", "must be set"):
        assert d.due_at is not None
        check_due(v, "promise.due_at", d.due_at, now, horizon)
    return replace(
        d,
        contact_id=contact_id,
        text=text,
        owner_id=owner_id,
        team=v.identifier("promise.team", d.team, required=False),
        source_interaction_id=v.identifier(
            "promise.source_interaction_id", d.source_interaction_id, required=False
        ),
        follows_promise_id=v.identifier(
            "promise.follows_promise_id", d.follows_promise_id, required=False
        ),
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
        interaction_id=v.identifier(
            "evidence.interaction_id", evidence.interaction_id, required=False
        ),
        note=v.text("evidence.note", evidence.note, MAX_TEXT, line_breaks=True),
    )
    v.check(
        bool(checked),
        "evidence",
        "give the id of the interaction that proves it, or a note of what was done",
    )
    return checked


def check_new_owner(v: Violations, new_owner_id: str, new_team: str) -> tuple[str, str]:
    owner = v.identifier("new_owner_id", new_owner_id)
    return owner, v.identifier("new_team", new_team, required=False)


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
        owner_id=v.identifier("owner_id", f.owner_id, required=False),
        team=v.identifier("team", f.team, required=False),
        contact_id=v.identifier("contact_id", f.contact_id, required=False),
    )


def check_window(v: Violations, start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None:
        v.check(start < end, "window_end_at", "must be later than window_start_at")


# A resume token is the position of a reminder in the feed (its stream sequence), wrapped so that
# callers treat it as opaque and a token from elsewhere is told apart.
_RESUME_PREFIX = "reminder@"
_RESUME_TOKEN = re.compile(r"reminder@(0|[1-9][0-9]{0,18})")  # 0: before the first
_MAX_RESUME_TOKEN = 64
_MAX_POSITION = 2**63 - 1  # JetStream's sequences are unsigned 64-bit; no stream reaches this


def resume_token(position: int) -> str:
    """The token StreamReminders sends with a reminder, to resume just after it."""
    return base64.urlsafe_b64encode(f"{_RESUME_PREFIX}{position}".encode()).decode().rstrip("=")


def check_resume_token(v: Violations, token: str) -> int | None:
    """The feed position a `resume_after` names; None when empty (stream from now on)."""
    if not token:
        return None
    position = _position(token) if len(token) <= _MAX_RESUME_TOKEN else None
    v.check(position is not None, "resume_after", "is not a resume token this service gave")
    return position


def _position(token: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    found = _RESUME_TOKEN.fullmatch(raw)
    if found is None or int(found[1]) > _MAX_POSITION:
        return None
    position = int(found[1])
    # Only the very text `resume_token` makes: the decoder skips characters outside its alphabet
    return position if resume_token(position) == token else None
