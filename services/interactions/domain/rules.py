"""How an interaction comes to be and changes afterwards: promises, ratings, corrections, erasure.

Nothing is edited silently: a correction keeps the values it replaced in an amendment, and an
erasure keeps what statistics need (type, channel, direction, times, agent, rating) while the
words that were said go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from enum import Enum

from interactions.domain.model import (
    AMENDABLE_FIELDS,
    Amendment,
    Interaction,
    InteractionDetails,
    KnownContact,
    PromiseDraft,
    PromiseInInteraction,
    PromiseKind,
)


def due_at(draft: PromiseDraft, occurred_at: datetime) -> datetime | None:
    """A span counts from when the touch happened, not from when it was typed in. Validation
    bounds both parts first, so the sum stays inside the calendar."""
    if draft.due_at is not None:
        return draft.due_at
    if draft.due_within is not None:
        return occurred_at + draft.due_within
    return None


def promises_from(
    drafts: Sequence[PromiseDraft], ids: Sequence[str], details: InteractionDetails
) -> tuple[PromiseInInteraction, ...]:
    """Validated drafts become promises; the owner defaults to the agent who made them."""
    made = []
    for draft, promise_id in zip(drafts, ids, strict=True):
        due = due_at(draft, details.occurred_at)
        assert due is not None, "drafts are validated before promises are made"
        made.append(
            PromiseInInteraction(
                id=promise_id,
                text=draft.text,
                due_at=due,
                owner_id=draft.owner_id or details.agent_id,
                kind=draft.kind or PromiseKind.OTHER,
            )
        )
    return tuple(made)


def as_text(value: object) -> str:
    """How a previous value is kept in an amendment: readable, and the same in every store."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def changed_fields(before: InteractionDetails, after: InteractionDetails) -> tuple[str, ...]:
    return tuple(f for f in AMENDABLE_FIELDS if getattr(before, f) != getattr(after, f))


def amended(
    current: Interaction, wanted: InteractionDetails, actor: str, reason: str, now: datetime
) -> tuple[Interaction, tuple[str, ...]]:
    """The corrected interaction, with an amendment holding what it replaced; no change, no
    amendment."""
    changed = changed_fields(current.details, wanted)
    if not changed:
        return current, ()
    amendment = Amendment(
        actor=actor,
        amended_at=now,
        changed_fields=changed,
        reason=reason,
        previous_values=tuple((f, as_text(getattr(current.details, f))) for f in changed),
    )
    updated = replace(
        current,
        details=wanted,
        amendments=(*current.amendments, amendment),
        version=current.version + 1,
        updated_at=now,
        updated_by=actor,
    )
    return updated, changed


def rated(current: Interaction, satisfaction: int, actor: str, now: datetime) -> Interaction:
    return replace(
        current,
        satisfaction=satisfaction,
        rated_at=now,
        version=current.version + 1,
        updated_at=now,
        updated_by=actor,
    )


def erased(current: Interaction, actor: str, now: datetime) -> Interaction:
    """The contact asked to be forgotten: free text goes, the facts for statistics stay."""
    details = replace(current.details, summary="", notes="", outcome="")
    return replace(
        current,
        details=details,
        promises=tuple(replace(p, text="") for p in current.promises),
        amendments=tuple(replace(a, reason="", previous_values=()) for a in current.amendments),
        erased_at=now,
        version=current.version + 1,
        updated_at=now,
        updated_by=actor,
    )


def repointed(current: Interaction, survivor_id: str, actor: str, now: datetime) -> Interaction:
    """Two records of one customer became one: the touch moves to the survivor's timeline."""
    return replace(
        current,
        contact_id=survivor_id,
        version=current.version + 1,
        updated_at=now,
        updated_by=actor,
    )


def profiled(
    known: KnownContact, owner_id: str, team: str, at: datetime | None
) -> KnownContact | None:
    """The contact with the owner and team of a profile from the contacts stream; None when
    that changes nothing. Profiles may arrive out of order (a redelivered creation after an
    update): one older than the profile already kept, or undated when a dated one is kept,
    is ignored, so the latest team decides who may record touches."""
    if known.profile_at is not None and (at is None or at < known.profile_at):
        return None
    updated = replace(known, owner_id=owner_id, team=team, profile_at=at)
    return None if updated == known else updated
