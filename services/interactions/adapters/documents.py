"""An interaction as a plain document (JSON in SQLite), and the sort key of the timeline,
shared by every storage adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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
