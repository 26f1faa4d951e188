"""Promises, reminder deliveries (customer notices among them), contact preferences and contact
fates as plain JSON-ready documents, shared by the SQLite and MongoDB adapters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from followup.domain.contacts import ContactFate, ContactPreferences, QuietHours
from followup.domain.model import (
    Action,
    Channel,
    Evidence,
    HistoryEntry,
    Priority,
    Promise,
    PromiseKind,
    Status,
)
from followup.domain.reminders import (
    DeliveryAttempt,
    NoticeReason,
    NoticeRecord,
    NoticeTemplate,
    Outcome,
    ReminderDelivery,
    ReminderKind,
)
from followup.domain.service_levels import Relationship

Document = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def micros(at: datetime) -> int:
    """An instant as integer microseconds since the epoch, as SQLite stores and compares it:
    exact, 8 bytes instead of 32 of text, and defined for the whole calendar."""
    return (at - _EPOCH) // MICROSECOND


def from_micros(us: int) -> datetime:
    return _EPOCH + us * MICROSECOND


def packed_id(value: str) -> str | bytes:
    """An id as SQLite stores it: a UUID in its canonical text (what the services make) as its
    16 bytes, anything else as the text. Both ways are exact, and packed UUIDs sort as their
    texts do; other ids sort before them all (SQLite orders text before blobs), which only a
    mix of both kinds of id would notice."""
    if len(value) == 36 and _UUID.fullmatch(value):
        return bytes.fromhex(value.replace("-", ""))
    return value


def unpacked_id(value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    h = value.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def iso(value: datetime) -> str:
    """Fixed-width UTC text, so that string order is time order in indexes."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _ts(value: datetime | None) -> str | None:
    return iso(value) if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _req(value: str) -> datetime:
    return datetime.fromisoformat(value)


def promise_doc(p: Promise) -> Document:
    return {
        "id": p.id,
        "contact_id": p.contact_id,
        "text": p.text,
        "kind": p.kind.value,
        "owner_id": p.owner_id,
        "team": p.team,
        "created_by": p.created_by,
        "due_at": iso(p.due_at),
        "created_at": iso(p.created_at),
        "channel": p.channel.value if p.channel else None,
        "priority": p.priority.value,
        "source_interaction_id": p.source_interaction_id,
        "follows_promise_id": p.follows_promise_id,
        "service_level": p.service_level,
        "status": p.status.value,
        "cancel_reason": p.cancel_reason,
        "kept_at": _ts(p.kept_at),
        "kept_on_time": p.kept_on_time,
        "evidence": [p.evidence.interaction_id, p.evidence.note],
        "customer_confirmed": p.customer_confirmed,
        "confirmed_at": _ts(p.confirmed_at),
        "satisfaction": p.satisfaction,
        "satisfaction_by_customer": p.satisfaction_by_customer,
        "satisfaction_comment": p.satisfaction_comment,
        "satisfaction_requested_at": _ts(p.satisfaction_requested_at),
        "handoff_count": p.handoff_count,
        "renegotiation_count": p.renegotiation_count,
        "paused_total": p.paused_total.total_seconds(),
        "paused_at": _ts(p.paused_at),
        "escalated_at": _ts(p.escalated_at),
        "erased_at": _ts(p.erased_at),
        "overdue_noted_for": _ts(p.overdue_noted_for),
        "history": [
            [h.actor, iso(h.occurred_at), h.action.value, h.reason, h.from_value, h.to_value]
            for h in p.history
        ],
        "version": p.version,
        "updated_at": _ts(p.updated_at),
        "updated_by": p.updated_by,
    }


def promise_from(d: Document) -> Promise:
    return Promise(
        id=d["id"],
        contact_id=d["contact_id"],
        text=d["text"],
        kind=PromiseKind(d["kind"]),
        owner_id=d["owner_id"],
        team=d["team"],
        created_by=d["created_by"],
        due_at=_req(d["due_at"]),
        created_at=_req(d["created_at"]),
        channel=Channel(d["channel"]) if d["channel"] else None,
        priority=Priority(d["priority"]),
        source_interaction_id=d["source_interaction_id"],
        follows_promise_id=d["follows_promise_id"],
        service_level=d.get("service_level", ""),  # absent before service levels
        status=Status(d["status"]),
        cancel_reason=d["cancel_reason"],
        kept_at=_dt(d["kept_at"]),
        kept_on_time=d["kept_on_time"],
        evidence=Evidence(*d["evidence"]),
        customer_confirmed=d["customer_confirmed"],
        confirmed_at=_dt(d["confirmed_at"]),
        satisfaction=d["satisfaction"],
        # Absent from documents written before the customer's voice: never asked, never rated.
        satisfaction_by_customer=d.get("satisfaction_by_customer", False),
        satisfaction_comment=d.get("satisfaction_comment", ""),
        satisfaction_requested_at=_dt(d.get("satisfaction_requested_at")),
        handoff_count=d["handoff_count"],
        renegotiation_count=d["renegotiation_count"],
        paused_total=timedelta(seconds=d["paused_total"]),
        paused_at=_dt(d["paused_at"]),
        escalated_at=_dt(d["escalated_at"]),
        erased_at=_dt(d["erased_at"]),
        overdue_noted_for=_dt(d["overdue_noted_for"]),
        history=tuple(
            HistoryEntry(actor, _req(at), Action(action), reason, before, after)
            for actor, at, action, reason, before, after in d["history"]
        ),
        version=d["version"],
        updated_at=_dt(d["updated_at"]),
        updated_by=d["updated_by"],
    )


def delivery_doc(r: ReminderDelivery) -> Document:
    return {
        "id": r.id,
        "promise_id": r.promise_id,
        "contact_id": r.contact_id,
        "kind": r.kind.value,
        "recipient_id": r.recipient_id,
        "owner_id": r.owner_id,
        "scheduled_at": iso(r.scheduled_at),
        "next_attempt_at": _ts(r.next_attempt_at),
        "remaining": list(r.remaining),
        "attempts": [[a.notifier, iso(a.attempted_at), a.success, a.error] for a in r.attempts],
        "outcome": r.outcome.value,
        "rounds": r.rounds,
        "announced": r.announced,
        "notice": notice_doc(r.notice) if r.notice else None,
        "lead": r.lead.total_seconds() if r.lead is not None else None,
        "trace": r.trace,
    }


def delivery_from(d: Document) -> ReminderDelivery:
    return ReminderDelivery(
        id=d["id"],
        promise_id=d["promise_id"],
        contact_id=d["contact_id"],
        kind=ReminderKind(d["kind"]),
        recipient_id=d["recipient_id"],
        owner_id=d["owner_id"],
        scheduled_at=_req(d["scheduled_at"]),
        next_attempt_at=_dt(d["next_attempt_at"]),
        remaining=tuple(d["remaining"]),
        attempts=tuple(
            DeliveryAttempt(notifier, _req(at), ok, error)
            for notifier, at, ok, error in d["attempts"]
        ),
        outcome=Outcome(d["outcome"]),
        rounds=d["rounds"],
        announced=d["announced"],
        notice=notice_from(d["notice"]) if d.get("notice") else None,  # absent before notices
        lead=timedelta(seconds=d["lead"]) if d.get("lead") is not None else None,
        trace=d.get("trace", ""),  # absent before traces
    )


def notice_doc(n: NoticeRecord) -> Document:
    return {
        "reason": n.reason.value,
        "renegotiation": n.renegotiation,
        "channel": n.channel.value if n.channel else None,
        "template": n.template.value if n.template else None,
        "due_at": _ts(n.due_at),
        "quiet_hours_end_at": _ts(n.quiet_hours_end_at),
        "dropped_reason": n.dropped_reason,
    }


def notice_from(d: Document) -> NoticeRecord:
    return NoticeRecord(
        reason=NoticeReason(d["reason"]),
        renegotiation=d["renegotiation"],
        channel=Channel(d["channel"]) if d["channel"] else None,
        template=NoticeTemplate(d["template"]) if d["template"] else None,
        due_at=_dt(d["due_at"]),
        quiet_hours_end_at=_dt(d["quiet_hours_end_at"]),
        dropped_reason=d["dropped_reason"],
    )


def profile_doc(c: ContactPreferences) -> Document:
    return {
        "contact_id": c.contact_id,
        "owner_id": c.owner_id,
        "team": c.team,
        "time_zone": c.time_zone,
        "preferred_channel": c.preferred_channel.value if c.preferred_channel else None,
        "consents": [[ch.value, granted] for ch, granted in c.consents],
        "quiet_hours": [c.quiet_hours.start_minute, c.quiet_hours.end_minute]
        if c.quiet_hours
        else None,
        "discreet": c.discreet,
        "relationship": c.relationship.value if c.relationship else None,
        "changed_at": _ts(c.changed_at),
    }


def profile_from(d: Document) -> ContactPreferences:
    quiet = d["quiet_hours"]
    return ContactPreferences(
        contact_id=d["contact_id"],
        owner_id=d["owner_id"],
        team=d["team"],
        time_zone=d["time_zone"],
        preferred_channel=Channel(d["preferred_channel"]) if d["preferred_channel"] else None,
        consents=tuple((Channel(ch), bool(g)) for ch, g in d["consents"]),
        quiet_hours=QuietHours(quiet[0], quiet[1]) if quiet else None,
        discreet=d["discreet"],
        relationship=Relationship(d["relationship"]) if d.get("relationship") else None,
        changed_at=_dt(d.get("changed_at")),  # absent before profiles were ordered
    )


def fate_doc(f: ContactFate) -> Document:
    return {
        "contact_id": f.contact_id,
        "merged_into_id": f.merged_into_id,
        "erased_at": _ts(f.erased_at),
        "erasure_confirmed_at": _ts(f.erasure_confirmed_at),
        "active_at": _ts(f.active_at),
        "inactive_at": _ts(f.inactive_at),
    }


def fate_from(d: Document) -> ContactFate:
    return ContactFate(
        contact_id=d["contact_id"],
        merged_into_id=d["merged_into_id"],
        erased_at=_dt(d["erased_at"]),
        erasure_confirmed_at=_dt(d["erasure_confirmed_at"]),
        active_at=_dt(d["active_at"]),
        inactive_at=_dt(d["inactive_at"]),
    )


# --- the compact form of the SQLite rows ---------------------------------------------------------
# A row's columns hold what the queries need (ids packed, times in microseconds); its `doc` holds
# the rest as JSON, without the values that equal their default (listed below: a reader puts
# them back) and with times in microseconds: a promise's row is a fifth of its whole document,
# and an index entry less than half of what text ids and ISO times made it.


class Columns(Protocol):
    """A row read with sqlite3.Row: its values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


_REQUIRED = object()  # the default of a field that has none: always stored

_PROMISE_DEFAULTS: Document = {
    "channel": None,
    "source_interaction_id": "",
    "follows_promise_id": "",
    "service_level": "",
    "cancel_reason": "",
    "kept_at": None,
    "kept_on_time": False,
    "evidence": ["", ""],
    "customer_confirmed": False,
    "confirmed_at": None,
    "satisfaction": 0,
    "satisfaction_by_customer": False,
    "satisfaction_comment": "",
    "satisfaction_requested_at": None,
    "handoff_count": 0,
    "renegotiation_count": 0,
    "paused_total": 0,
    "escalated_at": None,
    "erased_at": None,
    "overdue_noted_for": None,
    "history": [],
}
_DELIVERY_DEFAULTS: Document = {
    "attempts": [],
    "rounds": 0,
    "announced": False,
    "notice": None,
    "lead": None,
    "trace": "",
}
_NOTICE_DEFAULTS: Document = {
    "renegotiation": 0,
    "channel": None,
    "template": None,
    "due_at": None,
    "quiet_hours_end_at": None,
    "dropped_reason": "",
}


def _slim(values: Document, defaults: Document) -> Document:
    return {k: v for k, v in values.items() if v != defaults.get(k, _REQUIRED)}


def _json(values: Document) -> str:
    return json.dumps(values, separators=(",", ":"))


def _us(value: datetime | None) -> int | None:
    return micros(value) if value else None


def _at(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


def promise_row(p: Promise) -> Document:
    """The promise's SQLite row: the columns its queries use, and the rest in `doc`. The
    priority is a column (the gauges count open promises by it from an index alone), so the
    doc never holds it."""
    rest: Document = {
        "text": p.text,
        "created_by": p.created_by,
        "channel": p.channel.value if p.channel else None,
        "source_interaction_id": p.source_interaction_id,
        "follows_promise_id": p.follows_promise_id,
        "service_level": p.service_level,
        "cancel_reason": p.cancel_reason,
        "kept_at": _us(p.kept_at),
        "kept_on_time": p.kept_on_time,
        "evidence": [p.evidence.interaction_id, p.evidence.note],
        "customer_confirmed": p.customer_confirmed,
        "confirmed_at": _us(p.confirmed_at),
        "satisfaction": p.satisfaction,
        "satisfaction_by_customer": p.satisfaction_by_customer,
        "satisfaction_comment": p.satisfaction_comment,
        "satisfaction_requested_at": _us(p.satisfaction_requested_at),
        "handoff_count": p.handoff_count,
        "renegotiation_count": p.renegotiation_count,
        "paused_total": p.paused_total // MICROSECOND,
        "escalated_at": _us(p.escalated_at),
        "erased_at": _us(p.erased_at),
        "overdue_noted_for": _us(p.overdue_noted_for),
        "history": [
            [h.actor, micros(h.occurred_at), h.action.value, h.reason, h.from_value, h.to_value]
            for h in p.history
        ],
    }
    # Unchanged since it was made (most open promises): neither is stored, each defaults to
    # the making's (a None updated_at is stored, as null).
    if p.updated_at != p.created_at:
        rest["updated_at"] = _us(p.updated_at)
    if p.updated_by != p.created_by:
        rest["updated_by"] = p.updated_by
    return {
        "id": packed_id(p.id),
        "version": p.version,
        "contact_id": packed_id(p.contact_id),
        "owner_id": packed_id(p.owner_id),
        "team": p.team,
        "status": p.status.value,
        "kind": p.kind.value,
        "due_us": micros(p.due_at),
        "paused_us": _us(p.paused_at),
        "created_us": micros(p.created_at),
        "doc": _json(_slim(rest, _PROMISE_DEFAULTS)),
        "priority": p.priority.value,
    }


def promise_from_row(row: Columns) -> Promise:
    d = {**_PROMISE_DEFAULTS, **json.loads(row["doc"])}
    return Promise(
        id=unpacked_id(row["id"]),
        contact_id=unpacked_id(row["contact_id"]),
        text=d["text"],
        kind=PromiseKind(row["kind"]),
        owner_id=unpacked_id(row["owner_id"]),
        team=row["team"],
        created_by=d["created_by"],
        due_at=from_micros(row["due_us"]),
        created_at=from_micros(row["created_us"]),
        channel=Channel(d["channel"]) if d["channel"] else None,
        priority=Priority(row["priority"]),
        source_interaction_id=d["source_interaction_id"],
        follows_promise_id=d["follows_promise_id"],
        service_level=d["service_level"],
        status=Status(row["status"]),
        cancel_reason=d["cancel_reason"],
        kept_at=_at(d["kept_at"]),
        kept_on_time=d["kept_on_time"],
        evidence=Evidence(*d["evidence"]),
        customer_confirmed=d["customer_confirmed"],
        confirmed_at=_at(d["confirmed_at"]),
        satisfaction=d["satisfaction"],
        satisfaction_by_customer=d["satisfaction_by_customer"],
        satisfaction_comment=d["satisfaction_comment"],
        satisfaction_requested_at=_at(d["satisfaction_requested_at"]),
        handoff_count=d["handoff_count"],
        renegotiation_count=d["renegotiation_count"],
        paused_total=d["paused_total"] * MICROSECOND,
        paused_at=_at(row["paused_us"]),
        escalated_at=_at(d["escalated_at"]),
        erased_at=_at(d["erased_at"]),
        overdue_noted_for=_at(d["overdue_noted_for"]),
        history=tuple(
            HistoryEntry(actor, from_micros(at), Action(action), reason, before, after)
            for actor, at, action, reason, before, after in d["history"]
        ),
        version=row["version"],
        updated_at=_at(d.get("updated_at", row["created_us"])),
        updated_by=d.get("updated_by", d["created_by"]),
    )


def delivery_row(r: ReminderDelivery, *, claimed: bool = False) -> Document:
    """The delivery's SQLite row but for its lease token. `next_attempt_us` is what the
    scheduler's index orders; while the row is `claimed` it holds the lease's end, so the doc
    keeps the delivery's own next attempt. The recipient is stored when not the owner."""
    rest: Document = {
        "attempts": [[a.notifier, micros(a.attempted_at), a.success, a.error] for a in r.attempts],
        "rounds": r.rounds,
        "announced": r.announced,
        "notice": _notice_row(r.notice) if r.notice else None,
        "lead": r.lead // MICROSECOND if r.lead is not None else None,
        "trace": r.trace,
    }
    if r.recipient_id != r.owner_id:
        rest["recipient_id"] = r.recipient_id
    if claimed:
        rest["next_attempt_at"] = _us(r.next_attempt_at)
    doc = _slim(rest, _DELIVERY_DEFAULTS)
    return {
        "id": packed_id(r.id),
        "promise_id": packed_id(r.promise_id),
        "contact_id": packed_id(r.contact_id),
        "owner_id": packed_id(r.owner_id),
        "kind": r.kind.value,
        "outcome": r.outcome.value,
        "scheduled_us": micros(r.scheduled_at),
        "next_attempt_us": _us(r.next_attempt_at),
        "remaining": json.dumps(list(r.remaining), separators=(",", ":")),
        "doc": _json(doc) if doc else None,
    }


def delivery_from_row(row: Columns) -> ReminderDelivery:
    d = {**_DELIVERY_DEFAULTS, **json.loads(row["doc"] or "{}")}
    owner_id = unpacked_id(row["owner_id"])
    notice = d["notice"]
    return ReminderDelivery(
        id=unpacked_id(row["id"]),
        promise_id=unpacked_id(row["promise_id"]),
        contact_id=unpacked_id(row["contact_id"]),
        kind=ReminderKind(row["kind"]),
        recipient_id=d.get("recipient_id", owner_id),
        owner_id=owner_id,
        scheduled_at=from_micros(row["scheduled_us"]),
        next_attempt_at=_at(
            d["next_attempt_at"] if "next_attempt_at" in d else row["next_attempt_us"]
        ),
        remaining=tuple(json.loads(row["remaining"])),
        attempts=tuple(
            DeliveryAttempt(notifier, from_micros(at), ok, error)
            for notifier, at, ok, error in d["attempts"]
        ),
        outcome=Outcome(row["outcome"]),
        rounds=d["rounds"],
        announced=d["announced"],
        notice=_notice_from_row(notice) if notice else None,
        lead=d["lead"] * MICROSECOND if d["lead"] is not None else None,
        trace=d["trace"],
    )


def _notice_row(n: NoticeRecord) -> Document:
    return _slim(
        {
            "reason": n.reason.value,
            "renegotiation": n.renegotiation,
            "channel": n.channel.value if n.channel else None,
            "template": n.template.value if n.template else None,
            "due_at": _us(n.due_at),
            "quiet_hours_end_at": _us(n.quiet_hours_end_at),
            "dropped_reason": n.dropped_reason,
        },
        _NOTICE_DEFAULTS,
    )


def _notice_from_row(stored: Document) -> NoticeRecord:
    d = {**_NOTICE_DEFAULTS, **stored}
    return NoticeRecord(
        reason=NoticeReason(d["reason"]),
        renegotiation=d["renegotiation"],
        channel=Channel(d["channel"]) if d["channel"] else None,
        template=NoticeTemplate(d["template"]) if d["template"] else None,
        due_at=_at(d["due_at"]),
        quiet_hours_end_at=_at(d["quiet_hours_end_at"]),
        dropped_reason=d["dropped_reason"],
    )
