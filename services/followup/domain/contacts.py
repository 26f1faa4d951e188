"""The local read model of a contact's preferences, and the rules for reaching a customer.

The read model is kept from the contacts stream (ids and preferences, no personal data); the
address and name a notice needs are asked of the contacts service when it is sent
(`ContactCard`). Which channel, and when, is decided here; what a notice says is in
`domain/notices.py`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from followup.domain.model import Channel


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
