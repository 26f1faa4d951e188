"""The rules on what a caller sends to the interactions service: each function adds what is
wrong to one collector and returns the values normalised, so a caller learns every mistake at
once and the use case raises once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from interactions.currencies import ISO_4217_CODES
from interactions.domain.model import (
    AMENDABLE_FIELDS,
    InteractionDetails,
    InteractionDraft,
    InteractionType,
    PromiseDraft,
    Purchase,
)
from interactions.ports import TimelineFilter
from promesa.errors import Violations
from promesa.instants import EARLIEST, check_due, check_past
from promesa.usecases import check_request_id

MAX_SUMMARY = 500
MAX_NOTES = 10_000
MAX_OUTCOME = 1_000
MAX_PROMISE_TEXT = 500
MAX_PROMISES = 20
MAX_SHORT = 100
MAX_REASON = 1_000
# Fields of Interaction a caller can name but never amend: the contract keeps them server-set.
NOT_AMENDABLE = frozenset(
    {"id", "contact_id", "promises", "satisfaction", "rated_at", "amendments", "etag"}
    | {"created_by", "updated_by", "created_at", "updated_at", "erased_at"}
)
# Clocks of front-office devices drift; a touch a few minutes "ahead" is drift, not a typo.
FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CheckedRecord:
    """A touch to record, every rule passed: the contact as named, the details and the
    promise drafts normalised."""

    contact_id: str
    details: InteractionDetails
    promises: tuple[PromiseDraft, ...]


def required(v: Violations, path: str, value: str, limit: int = MAX_SHORT) -> str:
    """A text field that must be there (ids above all)."""
    value = v.text(path, value, limit)
    v.check(bool(value), path, "must not be empty")
    return value


def validate_record(
    contact_id: str,
    request_id: str,
    draft: InteractionDraft,
    promises: Sequence[PromiseDraft],
    v: Violations,
    now: datetime,
    horizon: timedelta,
) -> CheckedRecord | None:
    """Everything a RecordInteraction must satisfy; None when anything is wrong. `draft` has
    its defaults (occurred_at, agent, team) filled in already."""
    check_request_id(request_id, v)
    contact_id = v.identifier("interaction.contact_id", contact_id)
    details = validate_details(draft, v, now)
    checked = validate_promises(promises, v, now, draft.occurred_at, horizon)
    if v or details is None:
        return None
    return CheckedRecord(contact_id, details, checked)


def validate_details(
    d: InteractionDraft, v: Violations, now: datetime, prefix: str = "interaction"
) -> InteractionDetails | None:
    """Checks and normalises; None when anything is wrong (the violations say what)."""
    v.check(d.type is not None, f"{prefix}.type", "must be set")
    v.check(d.channel is not None, f"{prefix}.channel", "must be set")
    if v.check(d.occurred_at is not None, f"{prefix}.occurred_at", "must be set"):
        assert d.occurred_at is not None
        check_past(v, f"{prefix}.occurred_at", d.occurred_at, now, FUTURE_SKEW)
    agent_id = required(v, f"{prefix}.agent_id", d.agent_id)
    texts = {
        name: v.text(f"{prefix}.{name}", getattr(d, name), limit, line_breaks=prose)
        for name, limit, prose in (
            ("team", MAX_SHORT, False),
            ("summary", MAX_SUMMARY, True),
            ("notes", MAX_NOTES, True),
            ("outcome", MAX_OUTCOME, False),
            ("thread_id", MAX_SHORT, False),
        )
    }
    purchase = _purchase(d, v, prefix)
    if v or d.type is None or d.channel is None or d.occurred_at is None:
        return None
    return InteractionDetails(
        type=d.type,
        channel=d.channel,
        occurred_at=d.occurred_at,
        agent_id=agent_id,
        direction=d.direction,
        purchase=purchase,
        **texts,
    )


def _purchase(d: InteractionDraft, v: Violations, prefix: str) -> Purchase | None:
    """A purchase carries a positive amount in a real currency; nothing else carries money."""
    path = f"{prefix}.purchase"
    if d.type is not InteractionType.PURCHASE:
        v.check(d.purchase is None, path, "only a purchase carries an amount")
        return None
    if d.purchase is None:
        v.add(path, "a purchase needs an amount and a currency")
        return None
    currency = v.text(f"{path}.currency_code", d.purchase.currency_code, MAX_SHORT).upper()
    v.check(d.purchase.amount_minor > 0, f"{path}.amount_minor", "must be greater than zero")
    v.check(
        currency in ISO_4217_CODES,
        f"{path}.currency_code",
        f"{d.purchase.currency_code[:10]!r} is not an ISO 4217 currency code",
    )
    return Purchase(d.purchase.amount_minor, currency)


def validate_promises(
    drafts: Sequence[PromiseDraft],
    v: Violations,
    now: datetime,
    occurred_at: datetime | None,
    horizon: timedelta,
    prefix: str = "interaction.promises",
) -> tuple[PromiseDraft, ...]:
    """A promise says what, and is due after now (one already overdue is broken at birth) but
    within the horizon."""
    v.check(len(drafts) <= MAX_PROMISES, prefix, f"at most {MAX_PROMISES} promises")
    checked = []
    for i, p in enumerate(drafts):
        path = f"{prefix}[{i}]"
        text = required(v, f"{path}.text", p.text, MAX_PROMISE_TEXT)
        owner_id = v.text(f"{path}.owner_id", p.owner_id, MAX_SHORT)
        if p.due_at is not None:
            check_due(v, f"{path}.due_at", p.due_at, now, horizon)
        elif p.due_within is not None:
            _check_span(v, f"{path}.due_within", p.due_within, occurred_at, now, horizon)
        else:
            v.add(f"{path}.due_at", "give a due_at or a due_within")
        checked.append(replace(p, text=text, owner_id=owner_id))
    return tuple(checked)


def _check_span(
    v: Violations,
    path: str,
    span: timedelta,
    occurred_at: datetime | None,
    now: datetime,
    horizon: timedelta,
) -> None:
    """The due time a span gives, checked only once both of its parts are in range: a span
    beyond the horizon is refused without adding it, and one counted from an occurred_at that
    is itself refused says nothing more (that violation is the caller's mistake)."""
    if span <= timedelta(0):
        v.add(path, "must be a positive time span")
    elif span > horizon:
        v.add(path, f"must be at most {horizon.days} days")
    elif occurred_at is not None and EARLIEST <= occurred_at <= now + FUTURE_SKEW:
        check_due(v, path, occurred_at + span, now, horizon)


def validate_rating(interaction_id: str, satisfaction: int, v: Violations) -> str:
    interaction_id = v.identifier("id", interaction_id)
    v.check(1 <= satisfaction <= 5, "satisfaction", "must be from 1 (poor) to 5 (excellent)")
    return interaction_id


def validate_reason(reason: str, v: Violations) -> str:
    reason = v.text("reason", reason, MAX_REASON)
    v.check(bool(reason), "reason", "say why the interaction is corrected")
    return reason


def validate_mask(paths: Sequence[str], v: Violations) -> tuple[str, ...]:
    """The fields an amendment names: at least one, each of them amendable."""
    v.check(bool(paths), "update_mask.paths", "must name at least one field")
    for i, path in enumerate(paths):
        why = "cannot be amended" if path in NOT_AMENDABLE else "is not a field of Interaction"
        v.check(path in AMENDABLE_FIELDS, f"update_mask.paths[{i}]", f"{path[:100]!r} {why}")
    return tuple(dict.fromkeys(paths))


def validate_filter(f: TimelineFilter, v: Violations) -> TimelineFilter:
    """One contact's timeline, in a window that is not empty."""
    contact_id = v.identifier("contact_id", f.contact_id)
    agent_id = v.text("agent_id", f.agent_id, MAX_SHORT)
    if f.occurred_after and f.occurred_before:
        v.check(
            f.occurred_after < f.occurred_before,
            "occurred_before",
            "must be later than occurred_after",
        )
    return replace(f, contact_id=contact_id, agent_id=agent_id)
