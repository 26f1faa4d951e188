"""An interaction as a plain document (JSON in SQLite), and the sort key of the timeline,
shared by every storage adapter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from interactions.domain.model import (
    Amendment,
    Channel,
    Direction,
    Interaction,
    InteractionDetails,
    InteractionType,
    PromiseInInteraction,
    PromiseKind,
    Purchase,
)
from promesa.pagination import Cursor

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """An instant as integer microseconds since the epoch: exact, compact, and ordered as the
    instants are (ISO text would be, too, only while every value had the same offset and
    precision). Defined for the whole calendar, so a window from year 1 to 9999 is a query."""
    return (at - _EPOCH) // _MICROSECOND


def timeline_key(after: Cursor) -> tuple[int, str]:
    """Where a timeline page resumes: (occurred_us, id). Timeline cursors always have an
    instant; the queries refuse a page token without one."""
    if after.at is None:
        raise ValueError("a timeline cursor needs the instant of the last row")
    return micros(after.at), after.id


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def to_document(i: Interaction) -> dict[str, Any]:
    d = i.details
    return {
        "id": i.id,
        "contact_id": i.contact_id,
        "type": d.type.value,
        "channel": d.channel.value,
        "direction": d.direction.value if d.direction else None,
        "occurred_at": d.occurred_at.isoformat(),
        "agent_id": d.agent_id,
        "team": d.team,
        "summary": d.summary,
        "notes": d.notes,
        "outcome": d.outcome,
        "purchase": [d.purchase.amount_minor, d.purchase.currency_code] if d.purchase else None,
        "thread_id": d.thread_id,
        "promises": [
            {
                "id": p.id,
                "text": p.text,
                "due_at": p.due_at.isoformat(),
                "owner_id": p.owner_id,
                "kind": p.kind.value,
            }
            for p in i.promises
        ],
        "satisfaction": i.satisfaction,
        "rated_at": _when(i.rated_at),
        "amendments": [
            {
                "actor": a.actor,
                "amended_at": a.amended_at.isoformat(),
                "changed_fields": list(a.changed_fields),
                "reason": a.reason,
                "previous_values": [list(pair) for pair in a.previous_values],
            }
            for a in i.amendments
        ],
        "created_at": i.created_at.isoformat(),
        "updated_at": i.updated_at.isoformat(),
        "created_by": i.created_by,
        "updated_by": i.updated_by,
        "version": i.version,
        "erased_at": _when(i.erased_at),
    }


def from_document(doc: dict[str, Any]) -> Interaction:
    purchase = doc["purchase"]
    details = InteractionDetails(
        type=InteractionType(doc["type"]),
        channel=Channel(doc["channel"]),
        occurred_at=datetime.fromisoformat(doc["occurred_at"]),
        agent_id=doc["agent_id"],
        direction=Direction(doc["direction"]) if doc["direction"] else None,
        team=doc["team"],
        summary=doc["summary"],
        notes=doc["notes"],
        outcome=doc["outcome"],
        purchase=Purchase(purchase[0], purchase[1]) if purchase else None,
        thread_id=doc["thread_id"],
    )
    return Interaction(
        id=doc["id"],
        contact_id=doc["contact_id"],
        details=details,
        created_at=datetime.fromisoformat(doc["created_at"]),
        updated_at=datetime.fromisoformat(doc["updated_at"]),
        created_by=doc["created_by"],
        updated_by=doc["updated_by"],
        promises=tuple(
            PromiseInInteraction(
                id=p["id"],
                text=p["text"],
                due_at=datetime.fromisoformat(p["due_at"]),
                owner_id=p["owner_id"],
                kind=PromiseKind(p["kind"]),
            )
            for p in doc["promises"]
        ),
        satisfaction=doc["satisfaction"],
        rated_at=_instant(doc["rated_at"]),
        amendments=tuple(
            Amendment(
                actor=a["actor"],
                amended_at=datetime.fromisoformat(a["amended_at"]),
                changed_fields=tuple(a["changed_fields"]),
                reason=a["reason"],
                previous_values=tuple((k, v) for k, v in a["previous_values"]),
            )
            for a in doc["amendments"]
        ),
        version=doc["version"],
        erased_at=_instant(doc["erased_at"]),
    )


# --- the compact form of the SQLite row ----------------------------------------------------------
# The row's columns hold what the timeline filters on; its `doc` holds the rest as JSON without
# the values that equal their default (a reader puts them back), with times in microseconds.
# `team` is always stored: the timeline's scope reads it with json_extract.

_REQUIRED = object()  # the default of a field that has none: always stored
_DEFAULTS: dict[str, Any] = {
    "direction": None,
    "notes": "",
    "outcome": "",
    "purchase": None,
    "thread_id": "",
    "promises": [],
    "satisfaction": None,
    "rated_at": None,
    "amendments": [],
    "erased_at": None,
}


class Columns(Protocol):
    """A row read with sqlite3.Row: its values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def _us(at: datetime | None) -> int | None:
    return None if at is None else micros(at)


def _at(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + us * _MICROSECOND


def interaction_row(i: Interaction) -> dict[str, Any]:
    """The interaction's SQLite row: the timeline's columns, and the rest in `doc`. One last
    changed when and by whom it was made stores no `updated_at` nor `updated_by`."""
    d = i.details
    rest: dict[str, Any] = {
        "direction": d.direction.value if d.direction else None,
        "team": d.team,
        "summary": d.summary,
        "notes": d.notes,
        "outcome": d.outcome,
        "purchase": [d.purchase.amount_minor, d.purchase.currency_code] if d.purchase else None,
        "thread_id": d.thread_id,
        "promises": [
            [p.id, p.text, micros(p.due_at), p.owner_id, p.kind.value] for p in i.promises
        ],
        "satisfaction": i.satisfaction,
        "rated_at": _us(i.rated_at),
        "amendments": [
            [
                a.actor,
                micros(a.amended_at),
                list(a.changed_fields),
                a.reason,
                [list(pair) for pair in a.previous_values],
            ]
            for a in i.amendments
        ],
        "created_at": micros(i.created_at),
        "created_by": i.created_by,
        "erased_at": _us(i.erased_at),
    }
    if i.updated_at != i.created_at:
        rest["updated_at"] = micros(i.updated_at)
    if i.updated_by != i.created_by:
        rest["updated_by"] = i.updated_by
    slim = {k: v for k, v in rest.items() if v != _DEFAULTS.get(k, _REQUIRED)}
    return {
        "id": i.id,
        "contact_id": i.contact_id,
        "occurred_us": micros(d.occurred_at),
        "type": d.type.value,
        "channel": d.channel.value,
        "agent_id": d.agent_id,
        "erased": int(i.erased_at is not None),
        "version": i.version,
        "doc": json.dumps(slim, separators=(",", ":")),
    }


def interaction_from_row(row: Columns) -> Interaction:
    doc = {**_DEFAULTS, **json.loads(row["doc"])}
    purchase = doc["purchase"]
    created_at = _EPOCH + doc["created_at"] * _MICROSECOND
    details = InteractionDetails(
        type=InteractionType(row["type"]),
        channel=Channel(row["channel"]),
        occurred_at=_EPOCH + row["occurred_us"] * _MICROSECOND,
        agent_id=row["agent_id"],
        direction=Direction(doc["direction"]) if doc["direction"] else None,
        team=doc["team"],
        summary=doc["summary"],
        notes=doc["notes"],
        outcome=doc["outcome"],
        purchase=Purchase(purchase[0], purchase[1]) if purchase else None,
        thread_id=doc["thread_id"],
    )
    return Interaction(
        id=row["id"],
        contact_id=row["contact_id"],
        details=details,
        created_at=created_at,
        updated_at=_EPOCH + doc["updated_at"] * _MICROSECOND if "updated_at" in doc else created_at,
        created_by=doc["created_by"],
        updated_by=doc.get("updated_by", doc["created_by"]),
        promises=tuple(
            PromiseInInteraction(
                id=promise_id,
                text=text,
                due_at=_EPOCH + due_us * _MICROSECOND,
                owner_id=owner_id,
                kind=PromiseKind(kind),
            )
            for promise_id, text, due_us, owner_id, kind in doc["promises"]
        ),
        satisfaction=doc["satisfaction"],
        rated_at=_at(doc["rated_at"]),
        amendments=tuple(
            Amendment(
                actor=actor,
                amended_at=_EPOCH + at * _MICROSECOND,
                changed_fields=tuple(fields),
                reason=reason,
                previous_values=tuple((k, v) for k, v in previous),
            )
            for actor, at, fields, reason, previous in doc["amendments"]
        ),
        version=row["version"],
        erased_at=_at(doc["erased_at"]),
    )
