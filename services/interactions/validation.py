"""Rules for what a caller may record: every violation is collected, values come out normalised."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
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
from interactions.domain.rules import due_at
from promesa.errors import Violations

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


def validate_details(
    d: InteractionDraft, v: Violations, now: datetime, prefix: str = "interaction"
) -> InteractionDetails | None:
    """Checks and normalises; None when anything is wrong (the violations say what)."""
    v.check(d.type is not None, f"{prefix}.type", "must be set")
    v.check(d.channel is not None, f"{prefix}.channel", "must be set")
    if v.check(d.occurred_at is not None, f"{prefix}.occurred_at", "must be set"):
        assert d.occurred_at is not None
        v.check(
            d.occurred_at <= now + FUTURE_SKEW,
            f"{prefix}.occurred_at",
            f"must not be more than {FUTURE_SKEW.seconds // 60} minutes in the future",
        )
    agent_id = v.text(f"{prefix}.agent_id", d.agent_id, MAX_SHORT)
    v.check(bool(agent_id), f"{prefix}.agent_id", "must not be empty")
    texts = {
        name: v.text(f"{prefix}.{name}", getattr(d, name), limit)
        for name, limit in (
            ("team", MAX_SHORT),
            ("summary", MAX_SUMMARY),
            ("notes", MAX_NOTES),
            ("outcome", MAX_OUTCOME),
            ("thread_id", MAX_SHORT),
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
    currency = d.purchase.currency_code.strip().upper()
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
    prefix: str = "interaction.promises",
) -> tuple[PromiseDraft, ...]:
    """A promise says what, and is due after now: one already overdue is broken at birth."""
    v.check(len(drafts) <= MAX_PROMISES, prefix, f"at most {MAX_PROMISES} promises")
    checked = []
    for i, p in enumerate(drafts):
        path = f"{prefix}[{i}]"
        text = v.text(f"{path}.text", p.text, MAX_PROMISE_TEXT)
        v.check(bool(text), f"{path}.text", "must say what was promised")
        owner_id = v.text(f"{path}.owner_id", p.owner_id, MAX_SHORT)
        due_field = f"{path}.due_within" if p.due_within is not None else f"{path}.due_at"
        if p.due_within is not None:
            v.check(p.due_within > timedelta(0), due_field, "must be a positive time span")
        try:
            due = due_at(p, occurred_at or now)
        except OverflowError:
            v.add(due_field, "is too far in the future")
        else:
            if v.check(due is not None, f"{path}.due_at", "give a due_at or a due_within"):
                assert due is not None
                v.check(due > now, due_field, "is in the past: a promise must be due later")
        checked.append(replace(p, text=text, owner_id=owner_id))
    return tuple(checked)


def validate_reason(reason: str, v: Violations) -> str:
    reason = v.text("reason", reason, MAX_REASON)
    v.check(bool(reason), "reason", "say why the interaction is corrected")
    return reason


def validate_mask(paths: Sequence[str], v: Violations) -> tuple[str, ...]:
    """The fields an amendment names: at least one, each of them amendable."""
    v.check(bool(paths), "update_mask.paths", "must name at least one field")
    for i, path in enumerate(paths):
        why = "cannot be amended" if path in NOT_AMENDABLE else "is not a field of Interaction"
        v.check(path in AMENDABLE_FIELDS, f"update_mask.paths[{i}]", f"{path!r} {why}")
    return tuple(dict.fromkeys(paths))
