"""An interaction (one touch with a customer), the promises made in it and its corrections."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class Channel(enum.StrEnum):
    IN_PERSON = "IN_PERSON"
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    POSTAL_MAIL = "POSTAL_MAIL"
    CHAT = "CHAT"
    SOCIAL = "SOCIAL"
    WEB = "WEB"
    OTHER = "OTHER"


class Direction(enum.StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class InteractionType(enum.StrEnum):
    COMPLAINT = "COMPLAINT"
    REQUEST = "REQUEST"
    INQUIRY = "INQUIRY"
    RECOMMENDATION = "RECOMMENDATION"
    OFFER = "OFFER"
    DISPUTE = "DISPUTE"
    PRAISE = "PRAISE"
    PURCHASE = "PURCHASE"
    FOLLOW_UP = "FOLLOW_UP"
    OTHER = "OTHER"


class PromiseKind(enum.StrEnum):
    CALL_BACK = "CALL_BACK"
    RESOLVE_COMPLAINT = "RESOLVE_COMPLAINT"
    DELIVER = "DELIVER"
    SEND_INFORMATION = "SEND_INFORMATION"
    VISIT = "VISIT"
    WIN_BACK = "WIN_BACK"
    OTHER = "OTHER"


@dataclass(frozen=True)
class Purchase:
    """Money in the currency's minor unit (cents), so no amount is ever rounded."""

    amount_minor: int
    currency_code: str

    def __str__(self) -> str:
        return f"{self.amount_minor} {self.currency_code}"


@dataclass(frozen=True)
class InteractionDraft:
    """An interaction's details as a caller sent them: anything may be missing or wrong."""

    type: InteractionType | None = None
    channel: Channel | None = None
    direction: Direction | None = None
    occurred_at: datetime | None = None
    agent_id: str = ""
    team: str = ""
    summary: str = ""
    notes: str = ""
    outcome: str = ""
    purchase: Purchase | None = None
    thread_id: str = ""


@dataclass(frozen=True)
class InteractionDetails:
    """The validated details of a touch: what a caller records and may later amend."""

    type: InteractionType
    channel: Channel
    occurred_at: datetime
    agent_id: str
    direction: Direction | None = None
    team: str = ""
    summary: str = ""
    notes: str = ""
    outcome: str = ""
    purchase: Purchase | None = None
    thread_id: str = ""

    def as_draft(self) -> InteractionDraft:
        return InteractionDraft(**{name: getattr(self, name) for name in AMENDABLE_FIELDS})


AMENDABLE_FIELDS = tuple(InteractionDetails.__dataclass_fields__)


@dataclass(frozen=True)
class PromiseDraft:
    """A promise as a caller sent it: due either at an instant or within a span of time."""

    text: str
    due_at: datetime | None = None
    due_within: timedelta | None = None
    owner_id: str = ""
    kind: PromiseKind | None = None


@dataclass(frozen=True)
class PromiseInInteraction:
    """A commitment made during a touch, with an absolute due time and a stable id (the id of
    the promise the follow-up service then tracks; its event there is PromiseMade)."""

    id: str
    text: str
    due_at: datetime
    owner_id: str
    kind: PromiseKind


@dataclass(frozen=True)
class Amendment:
    """One correction: who changed which fields when, why, and what they held before."""

    actor: str
    amended_at: datetime
    changed_fields: tuple[str, ...]
    reason: str
    previous_values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Interaction:
    """One touch with a contact on the timeline."""

    id: str
    contact_id: str
    details: InteractionDetails
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    promises: tuple[PromiseInInteraction, ...] = ()
    satisfaction: int | None = None
    rated_at: datetime | None = None
    amendments: tuple[Amendment, ...] = ()
    version: int = 1
    erased_at: datetime | None = None

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def is_purchase(self) -> bool:
        return self.details.type is InteractionType.PURCHASE


@dataclass(frozen=True)
class KnownContact:
    """What this service knows of a contact, from the contacts stream: no personal data.

    `owner_id` and `team` come from the contact's latest profile (ContactCreated or
    ContactUpdated, as of `profile_at`) and decide who may record touches for it; no team means
    unassigned. `erasure_confirmed_at` is set once an erasure has been applied here in full
    (data, disk, stream) and confirmed.
    """

    id: str
    merged_into_id: str = ""
    erased_at: datetime | None = None
    owner_id: str = ""
    team: str = ""
    profile_at: datetime | None = None
    erasure_confirmed_at: datetime | None = None
