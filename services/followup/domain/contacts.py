"""The local read model of a contact's preferences, and the rules for telling a customer.

Customer notices are a separate template from owner reminders: they never carry the promise's
internal text, only a due date, and only on a channel the contact consented to, outside their
quiet hours (in their own time zone), and with no content at all when they asked for discretion.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
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


# Written channels a notice can be sent on, in the order tried after the preferred one.
NOTICE_CHANNELS = (Channel.EMAIL, Channel.CHAT, Channel.SOCIAL, Channel.POSTAL_MAIL, Channel.PHONE)


@dataclass(frozen=True)
class CustomerNotice:
    contact_id: str
    promise_id: str
    channel: Channel
    send_at: datetime
    body: str


def notice_channel(prefs: ContactPreferences) -> Channel | None:
    """The preferred channel when consented to, else the first consented written channel."""
    candidates = [prefs.preferred_channel] if prefs.preferred_channel else []
    candidates += [c for c in NOTICE_CHANNELS if c not in candidates]
    return next((c for c in candidates if prefs.consents_to(c)), None)


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


def customer_notice(
    prefs: ContactPreferences | None, promise_id: str, due_at: datetime, now: datetime
) -> CustomerNotice | None:
    """'Your request is in hand, due on …', or None when the contact gave no consent."""
    if prefs is None:
        return None
    channel = notice_channel(prefs)
    if channel is None:
        return None
    if prefs.discreet:
        body = "Please contact us at your convenience."
    else:
        local_due = due_at.astimezone(prefs.zone() or UTC)
        body = f"Your request is in hand; we will get back to you by {local_due:%d %B %Y, %H:%M}."
    return CustomerNotice(
        prefs.contact_id, promise_id, channel, outside_quiet_hours(prefs, now), body
    )
