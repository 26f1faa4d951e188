"""Promises, reminder deliveries (customer notices among them), contact preferences and contact
fates as plain JSON-ready documents, shared by the SQLite and MongoDB adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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

Document = dict[str, Any]


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
        "status": p.status.value,
        "cancel_reason": p.cancel_reason,
        "kept_at": _ts(p.kept_at),
        "kept_on_time": p.kept_on_time,
        "evidence": [p.evidence.interaction_id, p.evidence.note],
        "customer_confirmed": p.customer_confirmed,
        "confirmed_at": _ts(p.confirmed_at),
        "satisfaction": p.satisfaction,
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
        status=Status(d["status"]),
        cancel_reason=d["cancel_reason"],
        kept_at=_dt(d["kept_at"]),
        kept_on_time=d["kept_on_time"],
        evidence=Evidence(*d["evidence"]),
        customer_confirmed=d["customer_confirmed"],
        confirmed_at=_dt(d["confirmed_at"]),
        satisfaction=d["satisfaction"],
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
