"""Rules for what a caller may send: every violation is collected, values come out normalised."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import replace
from functools import cache

import phonenumbers

from contacts.domain.model import ContactDetails, PostalAddress
from promesa.errors import Violations

MAX_NAME = 200
MAX_SHORT = 100
MAX_EMAILS = 20
MAX_PHONES = 20
MAX_TAGS = 50
MAX_ADDRESS_LINE = 200
MAX_REASON = 1000
# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is not our test.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    return name in _time_zones()


def normalise_email(raw: str) -> str | None:
    email = raw.strip().lower()
    return email if len(email) <= 254 and _EMAIL.match(email) else None


def normalise_phone(raw: str, default_region: str) -> str | None:
    """E.164, from any common way of writing a number (spaces, dashes, brackets, 00 prefix)."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_details(
    d: ContactDetails, v: Violations, default_region: str, prefix: str = "contact"
) -> ContactDetails:
    """Checks and normalises; violations are named by their path in the request."""
    display_name = v.text(f"{prefix}.display_name", d.display_name, MAX_NAME)
    v.check(bool(display_name), f"{prefix}.display_name", "must not be empty")
    preferred_name = v.text(f"{prefix}.preferred_name", d.preferred_name, MAX_NAME)

    emails: list[str] = []
    v.check(len(d.emails) <= MAX_EMAILS, f"{prefix}.emails", f"at most {MAX_EMAILS} emails")
    for i, raw in enumerate(d.emails):
        email = normalise_email(raw)
        if v.check(email is not None, f"{prefix}.emails[{i}]", f"{raw!r} is not an email"):
            assert email is not None
            if email not in emails:
                emails.append(email)

    phones: list[str] = []
    v.check(len(d.phones) <= MAX_PHONES, f"{prefix}.phones", f"at most {MAX_PHONES} phones")
    for i, raw in enumerate(d.phones):
        phone = normalise_phone(raw, default_region)
        if v.check(
            phone is not None, f"{prefix}.phones[{i}]", f"{raw[:40]!r} is not a phone number"
        ):
            assert phone is not None
            if phone not in phones:
                phones.append(phone)

    tags: list[str] = []
    v.check(len(d.tags) <= MAX_TAGS, f"{prefix}.tags", f"at most {MAX_TAGS} tags")
    for i, raw in enumerate(d.tags):
        tag = v.text(f"{prefix}.tags[{i}]", raw, MAX_SHORT).lower()
        if v.check(bool(tag), f"{prefix}.tags[{i}]", "must not be empty") and tag not in tags:
            tags.append(tag)

    a = d.postal_address
    address = PostalAddress(
        lines=tuple(
            v.text(f"{prefix}.postal_address.lines[{i}]", line, MAX_ADDRESS_LINE)
            for i, line in enumerate(a.lines)
        ),
        locality=v.text(f"{prefix}.postal_address.locality", a.locality, MAX_SHORT),
        region=v.text(f"{prefix}.postal_address.region", a.region, MAX_SHORT),
        postal_code=v.text(f"{prefix}.postal_address.postal_code", a.postal_code, 20),
        country_code=a.country_code.strip().upper(),
    )
    v.check(len(a.lines) <= 5, f"{prefix}.postal_address.lines", "at most 5 lines")
    v.check(
        not address.country_code or bool(re.fullmatch(r"[A-Z]{2}", address.country_code)),
        f"{prefix}.postal_address.country_code",
        "must be an ISO 3166-1 alpha-2 code",
    )

    time_zone = d.time_zone.strip()
    v.check(
        not time_zone or is_time_zone(time_zone),
        f"{prefix}.time_zone",
        f"{time_zone[:60]!r} is not an IANA time zone",
    )
    if d.quiet_hours is not None:
        for name in ("start_minute", "end_minute"):
            minute = getattr(d.quiet_hours, name)
            v.check(
                0 <= minute < 1440,
                f"{prefix}.quiet_hours.{name}",
                "must be a minute of the day, 0 to 1439",
            )
    for name in ("organisation_id", "owner_id", "team", "referred_by_id"):
        v.text(f"{prefix}.{name}", getattr(d, name), MAX_SHORT)

    return replace(
        d,
        display_name=display_name,
        preferred_name=preferred_name,
        emails=tuple(emails),
        phones=tuple(phones),
        tags=tuple(tags),
        postal_address=address,
        time_zone=time_zone,
        organisation_id=d.organisation_id.strip(),
        owner_id=d.owner_id.strip(),
        team=d.team.strip(),
        referred_by_id=d.referred_by_id.strip(),
    )
