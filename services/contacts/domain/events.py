"""What happened to contacts, as facts in the past tense."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contacts.domain.model import Contact


@dataclass(frozen=True)
class ContactCreated:
    contact: Contact
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class ContactUpdated:
    contact: Contact
    changed_fields: tuple[str, ...]
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class ContactBecameActive:
    contact: Contact
    occurred_at: datetime


@dataclass(frozen=True)
class ContactBecameInactive:
    contact: Contact
    occurred_at: datetime


@dataclass(frozen=True)
class ContactsMerged:
    survivor_id: str
    merged_id: str
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class ContactErased:
    contact_id: str
    actor: str
    occurred_at: datetime


ContactEvent = (
    ContactCreated
    | ContactUpdated
    | ContactBecameActive
    | ContactBecameInactive
    | ContactsMerged
    | ContactErased
)
