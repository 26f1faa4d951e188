"""A contact and an erasure record as plain documents (JSON or columns in SQLite, BSON in
MongoDB), and the keys both adapters index and query them by: what the two stores share, so
they cannot drift apart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contacts.domain.erasure import ErasureConfirmation, ErasureRecord, in_order
from contacts.domain.model import (
    Channel,
    Contact,
    ContactDetails,
    ContactKind,
    Lifecycle,
    PostalAddress,
    QuietHours,
    Relationship,
)
from contacts.ports import ContactFilter


def instant(value: datetime) -> str:
    """How an instant is stored and compared: ISO-8601 as it stands (the service's times are
    UTC), so a page cursor read back from a token compares as the stored value does."""
    return value.isoformat()


def _ts(value: datetime | None) -> str | None:
    return instant(value) if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def to_document(c: Contact) -> dict[str, Any]:
    d = c.details
    a = d.postal_address
    return {
        "id": c.id,
        "kind": d.kind.value,
        "display_name": d.display_name,
        "preferred_name": d.preferred_name,
        "emails": list(d.emails),
        "phones": list(d.phones),
        "postal_address": {
            "lines": list(a.lines),
            "locality": a.locality,
            "region": a.region,
            "postal_code": a.postal_code,
            "country_code": a.country_code,
        },
        "organisation_id": d.organisation_id,
        "owner_id": d.owner_id,
        "team": d.team,
        "tags": list(d.tags),
        "time_zone": d.time_zone,
        "preferred_channel": d.preferred_channel.value if d.preferred_channel else None,
        "consents": [[ch.value, granted] for ch, granted in d.consents],
        "quiet_hours": (
            [d.quiet_hours.start_minute, d.quiet_hours.end_minute] if d.quiet_hours else None
        ),
        "discreet": d.discreet,
        "referred_by_id": d.referred_by_id,
        "relationship": d.relationship.value,
        "status": c.status.value,
        "created_at": _ts(c.created_at),
        "updated_at": _ts(c.updated_at),
        "created_by": c.created_by,
        "updated_by": c.updated_by,
        "version": c.version,
        "last_purchase_at": _ts(c.last_purchase_at),
        "last_interaction_at": _ts(c.last_interaction_at),
        "merged_into_id": c.merged_into_id,
        "erased_at": _ts(c.erased_at),
    }


def query_keys(c: Contact) -> dict[str, Any]:
    """Stored beside the document for the queries: only live contacts are listed or found, and
    names are searched by prefix ignoring case."""
    return {
        "live": c.is_live,
        "display_key": c.details.display_name.lower(),
        "preferred_key": c.details.preferred_name.lower(),
    }


def equalities(f: ContactFilter) -> dict[str, str]:
    """The filters that compare a stored field for equality, by field name; unset ones are left
    out (they match everything)."""
    wanted = {
        "status": f.status.value if f.status else "",
        "owner_id": f.owner_id,
        "team": f.team,
        "kind": f.kind.value if f.kind else "",
        "relationship": f.relationship.value if f.relationship else "",
    }
    return {name: value for name, value in wanted.items() if value}


def from_document(doc: dict[str, Any]) -> Contact:
    a = doc["postal_address"]
    quiet = doc["quiet_hours"]
    details = ContactDetails(
        kind=ContactKind(doc["kind"]),
        display_name=doc["display_name"],
        preferred_name=doc["preferred_name"],
        emails=tuple(doc["emails"]),
        phones=tuple(doc["phones"]),
        postal_address=PostalAddress(
            lines=tuple(a["lines"]),
            locality=a["locality"],
            region=a["region"],
            postal_code=a["postal_code"],
            country_code=a["country_code"],
        ),
        organisation_id=doc["organisation_id"],
        owner_id=doc["owner_id"],
        team=doc["team"],
        tags=tuple(doc["tags"]),
        time_zone=doc["time_zone"],
        preferred_channel=Channel(doc["preferred_channel"]) if doc["preferred_channel"] else None,
        consents=tuple((Channel(ch), bool(g)) for ch, g in doc["consents"]),
        quiet_hours=QuietHours(quiet[0], quiet[1]) if quiet else None,
        discreet=doc["discreet"],
        referred_by_id=doc["referred_by_id"],
        relationship=Relationship(doc["relationship"]),
    )
    created_at = _dt(doc["created_at"])
    updated_at = _dt(doc["updated_at"])
    assert created_at is not None and updated_at is not None
    return Contact(
        id=doc["id"],
        details=details,
        status=Lifecycle(doc["status"]),
        created_at=created_at,
        updated_at=updated_at,
        created_by=doc["created_by"],
        updated_by=doc["updated_by"],
        version=doc["version"],
        last_purchase_at=_dt(doc["last_purchase_at"]),
        last_interaction_at=_dt(doc["last_interaction_at"]),
        merged_into_id=doc["merged_into_id"],
        erased_at=_dt(doc["erased_at"]),
    )


# Confirmations of erasure records by contact id, as the stores gather them (an alias: in the
# store classes, `list` names a method).
Confirmations = dict[str, list[ErasureConfirmation]]


def erasure_to_document(r: ErasureRecord) -> dict[str, Any]:
    """The record without its confirmations, which are stored one per service as they come."""
    return {
        "contact_id": r.contact_id,
        "requested_by": r.requested_by,
        "reason": r.reason,
        "erased_at": instant(r.erased_at),
    }


def confirmation_to_document(c: ErasureConfirmation) -> dict[str, Any]:
    return {
        "contact_id": c.contact_id,
        "service": c.service,
        "confirmed_at": instant(c.confirmed_at),
    }


def confirmation_from_document(doc: dict[str, Any]) -> ErasureConfirmation:
    return ErasureConfirmation(
        doc["contact_id"], doc["service"], datetime.fromisoformat(doc["confirmed_at"])
    )


def erasure_from_document(
    doc: dict[str, Any], confirmations: list[ErasureConfirmation]
) -> ErasureRecord:
    return ErasureRecord(
        contact_id=doc["contact_id"],
        requested_by=doc["requested_by"],
        reason=doc["reason"],
        erased_at=datetime.fromisoformat(doc["erased_at"]),
        confirmations=in_order(confirmations),
    )


# --- the compact form of the SQLite row ----------------------------------------------------------
# The row's columns hold what the queries use (times as integer microseconds since the epoch);
# its `doc` holds the rest as JSON without the values that equal their default (a reader puts
# them back): a contact with a name and an email keeps about a tenth of its whole document.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_REQUIRED = object()  # the default of a field that has none: always stored
_DEFAULTS: dict[str, Any] = {
    "preferred_name": "",
    "emails": [],
    "phones": [],
    "postal_address": None,  # stored only when not empty
    "organisation_id": "",
    "tags": [],
    "time_zone": "",
    "preferred_channel": None,
    "consents": [],
    "quiet_hours": None,
    "discreet": False,
    "referred_by_id": "",
    "last_interaction_at": None,
    "merged_into_id": "",
    "erased_at": None,
}


class Columns(Protocol):
    """A row read with sqlite3.Row: its values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def micros(at: datetime) -> int:
    """An instant as SQLite stores and compares it: exact, 8 bytes, ordered as instants are."""
    return (at - _EPOCH) // _MICROSECOND


def _us(at: datetime | None) -> int | None:
    return micros(at) if at else None


def _at(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + us * _MICROSECOND


def contact_row(c: Contact) -> dict[str, Any]:
    """The contact's SQLite row: the columns its queries use, and the rest in `doc`. A contact
    last changed by whoever made it stores no `updated_by`."""
    d = c.details
    a = d.postal_address
    rest: dict[str, Any] = {
        "display_name": d.display_name,
        "preferred_name": d.preferred_name,
        "emails": list(d.emails),
        "phones": list(d.phones),
        "postal_address": None
        if a.is_empty()
        else [list(a.lines), a.locality, a.region, a.postal_code, a.country_code],
        "organisation_id": d.organisation_id,
        "tags": list(d.tags),
        "time_zone": d.time_zone,
        "preferred_channel": d.preferred_channel.value if d.preferred_channel else None,
        "consents": [[ch.value, granted] for ch, granted in d.consents],
        "quiet_hours": (
            [d.quiet_hours.start_minute, d.quiet_hours.end_minute] if d.quiet_hours else None
        ),
        "discreet": d.discreet,
        "referred_by_id": d.referred_by_id,
        "created_by": c.created_by,
        "last_interaction_at": _us(c.last_interaction_at),
        "merged_into_id": c.merged_into_id,
        "erased_at": _us(c.erased_at),
    }
    if c.updated_by != c.created_by:
        rest["updated_by"] = c.updated_by
    slim = {k: v for k, v in rest.items() if v != _DEFAULTS.get(k, _REQUIRED)}
    return {
        "id": c.id,
        "version": c.version,
        "status": c.status.value,
        "owner_id": d.owner_id,
        "team": d.team,
        "kind": d.kind.value,
        "relationship": d.relationship.value,
        "created_us": micros(c.created_at),
        "updated_us": micros(c.updated_at),
        "last_purchase_us": _us(c.last_purchase_at),
        **query_keys(c),
        "doc": json.dumps(slim, separators=(",", ":")),
    }


def contact_from_row(row: Columns) -> Contact:
    doc = {**_DEFAULTS, **json.loads(row["doc"])}
    a = doc["postal_address"]
    quiet = doc["quiet_hours"]
    details = ContactDetails(
        kind=ContactKind(row["kind"]),
        display_name=doc["display_name"],
        preferred_name=doc["preferred_name"],
        emails=tuple(doc["emails"]),
        phones=tuple(doc["phones"]),
        postal_address=PostalAddress(tuple(a[0]), *a[1:]) if a else PostalAddress(),
        organisation_id=doc["organisation_id"],
        owner_id=row["owner_id"],
        team=row["team"],
        tags=tuple(doc["tags"]),
        time_zone=doc["time_zone"],
        preferred_channel=Channel(doc["preferred_channel"]) if doc["preferred_channel"] else None,
        consents=tuple((Channel(ch), bool(g)) for ch, g in doc["consents"]),
        quiet_hours=QuietHours(quiet[0], quiet[1]) if quiet else None,
        discreet=doc["discreet"],
        referred_by_id=doc["referred_by_id"],
        relationship=Relationship(row["relationship"]),
    )
    return Contact(
        id=row["id"],
        details=details,
        status=Lifecycle(row["status"]),
        created_at=_EPOCH + row["created_us"] * _MICROSECOND,
        updated_at=_EPOCH + row["updated_us"] * _MICROSECOND,
        created_by=doc["created_by"],
        updated_by=doc.get("updated_by", doc["created_by"]),
        version=row["version"],
        last_purchase_at=_at(row["last_purchase_us"]),
        last_interaction_at=_at(doc["last_interaction_at"]),
        merged_into_id=doc["merged_into_id"],
        erased_at=_at(doc["erased_at"]),
    )
