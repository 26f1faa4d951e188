"""What the service knows of contacts: their fate, the local read model of their preferences,
and the rules for reaching a customer.

Both are kept from the contacts stream (ids, instants and preferences, no personal data); the
address and name a notice needs are asked of the contacts service when it is sent
(`ContactCard`). Which channel, and when, is decided here; what a notice says is in
`domain/notices.py`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from followup.domain.model import Channel
from followup.domain.service_levels import Relationship


@dataclass(frozen=True)
class ContactFate:
    """What became of a contact the service has heard of: erased, merged into whom, when it
    last lapsed and bought again. Kept after an erasure (that is its point), so that an event
    about the contact that arrives late is judged by it: nothing is made for an erased
    contact, what is made for a merged-away one lands on the survivor, and a lapse or a
    purchase older than the latest one of the other kind is stale."""

    contact_id: str
    merged_into_id: str = ""
    erased_at: datetime | None = None
    # The erasure reached the database and the stream, and was announced: a redelivered
    # ContactErased must not purge again (the announcement is on a subject of the contact).
    erasure_confirmed_at: datetime | None = None
    active_at: datetime | None = None  # the latest purchase that made the contact active
    inactive_at: datetime | None = None  # the latest time the contact became inactive

    @property
    def is_live(self) -> bool:
        """Neither erased nor merged away: something may still be made for this contact."""
        return not self.merged_into_id and self.erased_at is None

    def combined(self, later: ContactFate) -> ContactFate:
        """What is known from both, whichever was learned first: an erasure and its
        confirmation are final (the earliest instant is kept), a merge names its survivor,
        activity keeps the latest instant of each kind. Stores merge every write of a fate
        this way, so two reactions writing one contact's fate never undo each other."""
        return ContactFate(
            contact_id=self.contact_id,
            merged_into_id=later.merged_into_id or self.merged_into_id,
            erased_at=_pick(min, self.erased_at, later.erased_at),
            erasure_confirmed_at=_pick(min, self.erasure_confirmed_at, later.erasure_confirmed_at),
            active_at=_pick(max, self.active_at, later.active_at),
            inactive_at=_pick(max, self.inactive_at, later.inactive_at),
        )


def _pick(
    choose: Callable[[datetime, datetime], datetime], a: datetime | None, b: datetime | None
) -> datetime | None:
    """`choose` of the two when both are known, else the one that is."""
    return choose(a, b) if a is not None and b is not None else a or b


@dataclass(frozen=True)
class QuietHours:
    """Minutes of the day in the contact's time zone; the window may wrap past midnight."""

    start_minute: int
    end_minute: int

    def minutes_left(self, minute_of_day: int) -> int:
        """How long the quiet window still lasts at this minute; 0 when outside it."""
        length = (self.end_minute - self.start_minute) % 1440
        into = (minute_of_day - self.start_minute) % 1440
        return length - into if into < length else 0


@dataclass(frozen=True)
class ContactPreferences:
    """What the contacts stream tells us about reaching a contact respectfully."""

    contact_id: str
    owner_id: str = ""
    team: str = ""
    time_zone: str = ""
    preferred_channel: Channel | None = None
    consents: tuple[tuple[Channel, bool], ...] = ()
    quiet_hours: QuietHours | None = None
    discreet: bool = False
    # Outside customer or internal one: service-level policies may match on it.
    relationship: Relationship | None = None
    # When the contacts service made the change these preferences come from: an older one
    # heard late never replaces them. None (not said) always replaces.
    changed_at: datetime | None = None

    def supersedes(self, stored: ContactPreferences) -> bool:
        """Whether these preferences replace the stored ones: not when they are older."""
        return (
            self.changed_at is None
            or stored.changed_at is None
            or (self.changed_at >= stored.changed_at)
        )

    def consents_to(self, channel: Channel) -> bool:
        return dict(self.consents).get(channel, False)

    def zone(self) -> zoneinfo.ZoneInfo | None:
        try:
            return zoneinfo.ZoneInfo(self.time_zone) if self.time_zone else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return None


@dataclass(frozen=True)
class ContactCard:
    """What the contacts service says about a contact when a notice is sent: personal data, so
    it is used for that one message and never stored or logged (hence no repr of its fields)."""

    contact_id: str
    name: str = field(default="", repr=False)
    emails: tuple[str, ...] = field(default=(), repr=False)
    erased: bool = False

    def address(self, channel: Channel) -> str:
        """Where a message on this channel goes; empty when the contact has none."""
        if channel is Channel.EMAIL and self.emails:
            return self.emails[0]  # the preferred one comes first
        return ""


# Written channels a notice may go out on, in the order tried after the preferred one.
NOTICE_CHANNELS = (Channel.EMAIL, Channel.CHAT, Channel.SOCIAL, Channel.POSTAL_MAIL, Channel.PHONE)


def notice_channel(prefs: ContactPreferences, deliverable: Collection[Channel]) -> Channel | None:
    """The preferred channel when consented to and deliverable, else the first consented
    channel the service can deliver on; None when there is none."""
    candidates = [prefs.preferred_channel] if prefs.preferred_channel else []
    candidates += [c for c in NOTICE_CHANNELS if c not in candidates]
    return next((c for c in candidates if c in deliverable and prefs.consents_to(c)), None)


def outside_quiet_hours(prefs: ContactPreferences, at: datetime) -> datetime:
    """The first moment at or after `at` that is outside the contact's quiet hours."""
    quiet = prefs.quiet_hours
    if quiet is None:
        return at
    zone = prefs.zone() or UTC
    local = at.astimezone(zone)
    wait = quiet.minutes_left(local.hour * 60 + local.minute)
    if not wait:
        return at
    return (local.replace(second=0, microsecond=0) + timedelta(minutes=wait)).astimezone(UTC)
