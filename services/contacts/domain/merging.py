"""Two records of one customer become one: the survivor keeps its own values and gains the rest."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from contacts.domain.model import Contact, ContactDetails, Lifecycle, PostalAddress


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))


def absorb(survivor: Contact, duplicate: Contact) -> ContactDetails:
    """Lists are united; a blank field of the survivor is filled from the duplicate."""
    s, d = survivor.details, duplicate.details
    merged: dict[str, Any] = {
        "emails": _union(s.emails, d.emails),
        "phones": _union(s.phones, d.phones),
        "tags": _union(s.tags, d.tags),
        "consents": tuple({**dict(d.consents), **dict(s.consents)}.items()),
    }
    blank = ContactDetails()
    for f in fields(ContactDetails):
        if f.name in merged or f.name in ("kind", "relationship"):
            continue
        mine = getattr(s, f.name)
        if mine in (getattr(blank, f.name), None, "") or mine == PostalAddress():
            merged[f.name] = getattr(d, f.name)
    return replace(s, **merged)


def latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def erased(contact: Contact, now: datetime, actor: str) -> Contact:
    """Personal data gone, the tombstone kept: ids, ownership and the record's own dates
    remain. When the person last bought or was in touch goes too (it is about them), which
    also makes the tombstone the same whether a touch arrived before the erasure or after
    it (a touch for an erased or merged-away contact changes nothing)."""
    d = contact.details
    kept = ContactDetails(
        kind=d.kind,
        owner_id=d.owner_id,
        team=d.team,
        relationship=d.relationship,
        organisation_id=d.organisation_id,
    )
    return replace(
        contact,
        details=kept,
        status=Lifecycle.NEVER_PURCHASED,
        last_purchase_at=None,
        last_interaction_at=None,
        erased_at=now,
        updated_at=now,
        updated_by=actor,
        version=contact.version + 1,
    )
