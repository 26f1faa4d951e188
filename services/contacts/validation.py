"""The rules on what a caller sends to the contacts service: each function adds what breaks a
rule to a Violations collector, so the caller sees every mistake at once, and returns the
values normalised (emails in lower case, phones in E.164, tags in lower case)."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import replace
from functools import cache

import phonenumbers

from contacts.domain.model import (
    EDITABLE_FIELDS,
    Contact,
    ContactDetails,
    ContactDraft,
    ContactKind,
    PostalAddress,
)
from contacts.ports import ContactFilter, ContactSearch
from promesa.errors import Violations, control_characters

MAX_NAME = 200
MAX_SHORT = 100
MAX_EMAIL = 254
MAX_EMAILS = 20
MAX_PHONES = 20
MAX_TAGS = 50
MAX_ADDRESS_LINES = 5
MAX_ADDRESS_LINE = 200
MAX_POSTAL_CODE = 20
MAX_REASON = 1000
# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is not our test.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Fields of Contact a caller reads but never sets: an update mask naming one is a mistake.
OUTPUT_ONLY = frozenset(
    {
        "id",
        "status",
        "last_purchase_at",
        "last_interaction_at",
        "created_at",
        "updated_at",
        "etag",
        "created_by",
        "updated_by",
        "merged_into_id",
        "erased_at",
    }
)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    return name in _time_zones()


def normalise_email(raw: str) -> str | None:
    """The email in lower case; None when it is not one (control characters included)."""
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL or control_characters(email) or not _EMAIL.match(email):
        return None
    return email


def normalise_phone(raw: str, default_region: str) -> str | None:
    """E.164, from any common way of writing a number (spaces, dashes, brackets, 00 prefix).
    Control characters are refused rather than skipped, as the number parser would."""
    text = raw.strip()
    if len(text) > MAX_SHORT or control_characters(text):
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_kind(kind: ContactKind | None, v: Violations, path: str) -> ContactKind:
    """The proto says an unset kind is refused: a person and an organisation are treated too
    differently (links, merges) for a guess."""
    v.check(kind is not None, path, "must be set: PERSON or ORGANISATION")
    return kind or ContactKind.PERSON


def details_to_create(draft: ContactDraft, v: Violations, default_region: str) -> ContactDetails:
    """The details of a new contact: every field checked, the kind required."""
    kind = check_kind(draft.kind, v, "contact.kind")
    return validate_details(draft.details, v, default_region, kind=kind)


def check_mask(paths: Sequence[str], v: Violations) -> tuple[str, ...]:
    """An update mask names at least one field, and only fields a caller may set."""
    v.check(bool(paths), "update_mask.paths", "must name at least one field")
    for i, path in enumerate(paths):
        field = f"update_mask.paths[{i}]"
        path = v.text(field, path, MAX_SHORT)
        if path in OUTPUT_ONLY:
            v.add(field, f"{path!r} is output only")
        elif path not in EDITABLE_FIELDS:
            v.add(field, f"{path[:60]!r} is not a field of Contact")
    return tuple(p.strip() for p in paths if p.strip() in EDITABLE_FIELDS)


def details_to_update(
    current: ContactDetails,
    sent: ContactDraft,
    paths: Sequence[str],
    v: Violations,
    default_region: str,
) -> ContactDetails:
    """The current details with the masked fields replaced by the sent ones, checked as a
    whole; the kind is required only when the mask names it."""
    wanted = replace(current, **{p: getattr(sent.details, p) for p in paths if p != "kind"})
    if "kind" in paths:
        wanted = replace(wanted, kind=check_kind(sent.kind, v, "contact.kind"))
    return validate_details(wanted, v, default_region)


def validate_details(
    d: ContactDetails,
    v: Violations,
    default_region: str,
    prefix: str = "contact",
    *,
    kind: ContactKind | None = None,
) -> ContactDetails:
    """Checks and normalises; violations are named by their path in the request. `kind`,
    when given, replaces the one in `d`."""
    display_name = v.text(f"{prefix}.display_name", d.display_name, MAX_NAME)
    v.check(bool(display_name), f"{prefix}.display_name", "must not be empty")
    preferred_name = v.text(f"{prefix}.preferred_name", d.preferred_name, MAX_NAME)

    emails: list[str] = []
    v.check(len(d.emails) <= MAX_EMAILS, f"{prefix}.emails", f"at most {MAX_EMAILS} emails")
    for i, raw in enumerate(d.emails):
        email = normalise_email(raw)
        if email is None:
            v.add(f"{prefix}.emails[{i}]", f"{raw[:60]!r} is not an email")
        elif email not in emails:
            emails.append(email)

    phones: list[str] = []
    v.check(len(d.phones) <= MAX_PHONES, f"{prefix}.phones", f"at most {MAX_PHONES} phones")
    for i, raw in enumerate(d.phones):
        phone = normalise_phone(raw, default_region)
        if phone is None:
            v.add(f"{prefix}.phones[{i}]", f"{raw[:40]!r} is not a phone number")
        elif phone not in phones:
            phones.append(phone)

    tags: list[str] = []
    v.check(len(d.tags) <= MAX_TAGS, f"{prefix}.tags", f"at most {MAX_TAGS} tags")
    for i, raw in enumerate(d.tags):
        tag = v.text(f"{prefix}.tags[{i}]", raw, MAX_SHORT).lower()
        if v.check(bool(tag), f"{prefix}.tags[{i}]", "must not be empty") and tag not in tags:
            tags.append(tag)

    address = _postal_address(d.postal_address, v, f"{prefix}.postal_address")

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

    # Built whole rather than with dataclasses.replace, which costs twice as much: a field
    # added to ContactDetails goes here too (tests/platform/test_lean_path.py lists them).
    return ContactDetails(
        kind=d.kind if kind is None else kind,
        display_name=display_name,
        preferred_name=preferred_name,
        emails=tuple(emails),
        phones=tuple(phones),
        postal_address=address,
        organisation_id=v.text(f"{prefix}.organisation_id", d.organisation_id, MAX_SHORT),
        owner_id=v.text(f"{prefix}.owner_id", d.owner_id, MAX_SHORT),
        team=v.text(f"{prefix}.team", d.team, MAX_SHORT),
        tags=tuple(tags),
        time_zone=time_zone,
        preferred_channel=d.preferred_channel,
        consents=d.consents,
        quiet_hours=d.quiet_hours,
        discreet=d.discreet,
        referred_by_id=v.text(f"{prefix}.referred_by_id", d.referred_by_id, MAX_SHORT),
        relationship=d.relationship,
    )


def _postal_address(a: PostalAddress, v: Violations, prefix: str) -> PostalAddress:
    if a.is_empty():
        return a  # nothing to check or normalise
    v.check(
        len(a.lines) <= MAX_ADDRESS_LINES,
        f"{prefix}.lines",
        f"at most {MAX_ADDRESS_LINES} lines",
    )
    address = PostalAddress(
        lines=tuple(
            v.text(f"{prefix}.lines[{i}]", line, MAX_ADDRESS_LINE) for i, line in enumerate(a.lines)
        ),
        locality=v.text(f"{prefix}.locality", a.locality, MAX_SHORT),
        region=v.text(f"{prefix}.region", a.region, MAX_SHORT),
        postal_code=v.text(f"{prefix}.postal_code", a.postal_code, MAX_POSTAL_CODE),
        country_code=a.country_code.strip().upper(),
    )
    v.check(
        not address.country_code or bool(re.fullmatch(r"[A-Z]{2}", address.country_code)),
        f"{prefix}.country_code",
        "must be an ISO 3166-1 alpha-2 code",
    )
    return address


def check_links(
    d: ContactDetails,
    v: Violations,
    *,
    own_id: str,
    organisation: Contact | None,
    referrer: Contact | None,
) -> None:
    """The organisation and the referrer (as read from the store) must be live contacts, the
    organisation one of kind ORGANISATION: word of mouth is traced to someone real."""
    if d.organisation_id:
        if organisation is None or not organisation.is_live:
            v.add("contact.organisation_id", f"no contact {d.organisation_id!r}")
        elif organisation.details.kind is not ContactKind.ORGANISATION:
            v.add("contact.organisation_id", f"{d.organisation_id!r} is not an organisation")
        elif organisation.id == own_id:
            v.add("contact.organisation_id", "a contact cannot belong to itself")
    if d.referred_by_id:
        if referrer is None or not referrer.is_live:
            v.add("contact.referred_by_id", f"no contact {d.referred_by_id!r}")
        elif referrer.id == own_id:
            v.add("contact.referred_by_id", "a contact cannot refer itself")


def check_merge(survivor_id: str, duplicate_id: str, v: Violations) -> tuple[str, str]:
    survivor_id = v.identifier("survivor_id", survivor_id)
    duplicate_id = v.identifier("duplicate_id", duplicate_id)
    if survivor_id and survivor_id == duplicate_id:
        v.add("duplicate_id", "a contact cannot be merged into itself")
    return survivor_id, duplicate_id


def check_etag(etag: str, v: Violations) -> str:
    return v.text("contact.etag", etag, MAX_SHORT)


def check_reason(reason: str, v: Violations) -> str:
    return v.text("reason", reason, MAX_REASON)


def check_filter(f: ContactFilter, v: Violations) -> ContactFilter:
    """The text filters of ListContacts, normalised as the stored values are."""
    return replace(
        f,
        owner_id=v.text("owner_id", f.owner_id, MAX_SHORT),
        team=v.text("team", f.team, MAX_SHORT),
        tag=v.text("tag", f.tag, MAX_SHORT).lower(),
    )


def check_search(
    name_prefix: str, email: str, phone: str, v: Violations, default_region: str
) -> ContactSearch:
    """At least one criterion; each one normalised as the stored values are."""
    prefix = v.text("name_prefix", name_prefix, MAX_NAME).lower()
    norm_email = ""
    if email:
        norm_email = normalise_email(email) or ""
        v.check(bool(norm_email), "email", f"{email[:60]!r} is not an email")
    norm_phone = ""
    if phone:
        norm_phone = normalise_phone(phone, default_region) or ""
        v.check(bool(norm_phone), "phone", f"{phone[:40]!r} is not a phone number")
    v.check(
        bool(prefix or email or phone),
        "name_prefix",
        "give at least one of name_prefix, email or phone",
    )
    return ContactSearch(prefix, norm_email, norm_phone)
