"""A contact and the value objects it is made of."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class ContactKind(enum.StrEnum):
    PERSON = "PERSON"
    ORGANISATION = "ORGANISATION"


class Channel(enum.StrEnum):
    IN_PERSON = "IN_PERSON"
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    POSTAL_MAIL = "POSTAL_MAIL"
    CHAT = "CHAT"
    SOCIAL = "SOCIAL"
    WEB = "WEB"
    OTHER = "OTHER"


class Relationship(enum.StrEnum):
    EXTERNAL_CUSTOMER = "EXTERNAL_CUSTOMER"
    INTERNAL_COLLEAGUE = "INTERNAL_COLLEAGUE"
    INTERNAL_DEPARTMENT = "INTERNAL_DEPARTMENT"


class Lifecycle(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    NEVER_PURCHASED = "NEVER_PURCHASED"


@dataclass(frozen=True)
class PostalAddress:
    lines: tuple[str, ...] = ()
    locality: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""

    def is_empty(self) -> bool:
        return not (
            self.lines or self.locality or self.region or self.postal_code or self.country_code
        )


@dataclass(frozen=True)
class QuietHours:
    """Minutes of the day in the contact's own time zone; may wrap past midnight."""

    start_minute: int
    end_minute: int

    def contains(self, minute_of_day: int) -> bool:
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute_of_day < self.end_minute
        return minute_of_day >= self.start_minute or minute_of_day < self.end_minute


@dataclass(frozen=True)
class ContactDetails:
    """Everything a caller may set on a contact (the fields an update mask can name)."""

    kind: ContactKind = ContactKind.PERSON
    display_name: str = ""
    preferred_name: str = ""
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    postal_address: PostalAddress = field(default_factory=PostalAddress)
    organisation_id: str = ""
    owner_id: str = ""
    team: str = ""
    tags: tuple[str, ...] = ()
    time_zone: str = ""
    preferred_channel: Channel | None = None
    consents: tuple[tuple[Channel, bool], ...] = ()
    quiet_hours: QuietHours | None = None
    discreet: bool = False
    referred_by_id: str = ""
    relationship: Relationship = Relationship.EXTERNAL_CUSTOMER


EDITABLE_FIELDS = frozenset(ContactDetails.__dataclass_fields__)


@dataclass(frozen=True)
class ContactDraft:
    """A contact as a caller sent it, before the rules. `kind` is None when it was left unset
    (the proto's zero value), which a create refuses; until the rules have run, the kind
    that counts is this one, not the placeholder in `details`."""

    kind: ContactKind | None
    details: ContactDetails


@dataclass(frozen=True)
class Contact:
    """A person or organisation we serve, or a colleague we serve internally."""

    id: str
    details: ContactDetails
    status: Lifecycle
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int = 1
    last_purchase_at: datetime | None = None
    last_interaction_at: datetime | None = None
    merged_into_id: str = ""
    erased_at: datetime | None = None

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def is_live(self) -> bool:
        """Neither erased nor merged into another contact."""
        return self.erased_at is None and not self.merged_into_id

    def consents_to(self, channel: Channel) -> bool:
        return dict(self.details.consents).get(channel, False)
