"""Domain events of follow-up → protobuf payloads on `crm.followup.*` (no promise text, except
in the reminder itself, which goes only to the recipient's own subject; a customer notice is
announced by ids, channel and template only)."""

from __future__ import annotations

import re

from google.protobuf.message import Message

from crm.followup.v1 import events_pb2 as events_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from followup.domain.events import (
    SYSTEM,
    CustomerNoticeSent,
    PromiseCancelled,
    PromiseEscalated,
    PromiseEvent,
    PromiseKept,
    PromiseMade,
    PromiseOverdue,
    PromiseReassigned,
    PromiseRenegotiated,
    ReminderDue,
    ReminderSent,
)
from followup.domain.model import Promise
from followup.domain.reminders import ReminderDelivery
from promesa.codec import outgoing
from promesa.events import OutgoingEvent
from promesa.ids import derived_id
from promesa.protos import enum_to_proto, to_timestamp

SOURCE = "promesa/followup"
REMINDERS_PREFIX = "crm.followup.reminders"
_NOT_A_TOKEN = re.compile(r"[^A-Za-z0-9_-]")

CHANNEL = ("CHANNEL", promise_pb2.Channel)
KIND = ("PROMISE_KIND", promise_pb2.PromiseKind)
PRIORITY = ("PRIORITY", promise_pb2.Priority)
REMINDER_KIND = ("REMINDER_KIND", reminder_pb2.ReminderKind)
NOTICE_REASON = ("NOTICE_REASON", reminder_pb2.NoticeReason)
NOTICE_TEMPLATE = ("NOTICE_TEMPLATE", reminder_pb2.NoticeTemplate)


def reminder_subject(recipient_id: str) -> str:
    """`crm.followup.reminders.<recipient>`: one subject per user, so a front-office app (and
    StreamReminders) listens to exactly its user's reminders. Characters NATS gives a meaning
    to (dots, wildcards, spaces) become `_`; the payload carries the exact id."""
    return f"{REMINDERS_PREFIX}.{_NOT_A_TOKEN.sub('_', recipient_id) or '_'}"


def reminder_message(r: ReminderDelivery, p: Promise, discreet: bool) -> reminder_pb2.Reminder:
    """The owner-facing reminder; the text is left out when the contact asked for discretion."""
    return reminder_pb2.Reminder(
        id=r.id,
        promise_id=p.id,
        contact_id=p.contact_id,
        kind=enum_to_proto(r.kind, *REMINDER_KIND),
        recipient_id=r.recipient_id,
        owner_id=p.owner_id,
        due_at=to_timestamp(p.due_at),
        text="" if discreet else p.text,
        promise_kind=enum_to_proto(p.kind, *KIND),
        priority=enum_to_proto(p.priority, *PRIORITY),
        scheduled_at=to_timestamp(r.scheduled_at),
    )


def encode(event: PromiseEvent) -> OutgoingEvent:
    message: Message
    event_id: str | None = None
    match event:
        case PromiseMade(p, actor, at):
            name, about = "promise_made", p.id
            message = events_pb.PromiseMade(
                promise_id=p.id,
                contact_id=p.contact_id,
                source_interaction_id=p.source_interaction_id,
                kind=enum_to_proto(p.kind, *KIND),
                channel=enum_to_proto(p.channel, *CHANNEL),
                owner_id=p.owner_id,
                team=p.team,
                due_at=to_timestamp(p.due_at),
                priority=enum_to_proto(p.priority, *PRIORITY),
                follows_promise_id=p.follows_promise_id,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseReassigned(p, previous_owner, previous_team, actor, at):
            name, about = "promise_reassigned", p.id
            message = events_pb.PromiseReassigned(
                promise_id=p.id,
                contact_id=p.contact_id,
                previous_owner_id=previous_owner,
                new_owner_id=p.owner_id,
                previous_team=previous_team,
                new_team=p.team,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseRenegotiated(p, previous_due, agreed, actor, at):
            name, about = "promise_renegotiated", p.id
            message = events_pb.PromiseRenegotiated(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                previous_due_at=to_timestamp(previous_due),
                new_due_at=to_timestamp(p.due_at),
                customer_agreed=agreed,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseKept(p, actor, at):
            name, about = "promise_kept", p.id
            message = events_pb.PromiseKept(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                due_at=to_timestamp(p.due_at),
                kept_on_time=p.kept_on_time,
                evidence_interaction_id=p.evidence.interaction_id,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseCancelled(p, actor, at):
            name, about = "promise_cancelled", p.id
            message = events_pb.PromiseCancelled(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseOverdue(p, at):
            name, about = "promise_overdue", p.id
            message = events_pb.PromiseOverdue(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                due_at=to_timestamp(p.due_at),
                actor=SYSTEM,
                occurred_at=to_timestamp(at),
            )
        case PromiseEscalated(p, supervisor, at):
            name, about = "promise_escalated", p.id
            message = events_pb.PromiseEscalated(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                escalated_to_id=supervisor,
                due_at=to_timestamp(p.due_at),
                actor=SYSTEM,
                occurred_at=to_timestamp(at),
            )
        case ReminderSent(r, notifiers, at):
            name, about = "reminder_sent", r.promise_id
            event_id = derived_id("reminder_sent", r.id)
            message = events_pb.ReminderSent(
                reminder_id=r.id,
                promise_id=r.promise_id,
                contact_id=r.contact_id,
                kind=enum_to_proto(r.kind, *REMINDER_KIND),
                recipient_id=r.recipient_id,
                notifiers=notifiers,
                actor=SYSTEM,
                occurred_at=to_timestamp(at),
            )
        case CustomerNoticeSent(n, contact_id, at):
            name, about = "customer_notice_sent", n.promise_id
            event_id = derived_id("customer_notice_sent", n.id)
            notice = n.notice
            message = events_pb.CustomerNoticeSent(
                notice_id=n.id,
                promise_id=n.promise_id,
                contact_id=contact_id,
                channel=enum_to_proto(notice.channel if notice else None, *CHANNEL),
                template=enum_to_proto(notice.template if notice else None, *NOTICE_TEMPLATE),
                reason=enum_to_proto(notice.reason if notice else None, *NOTICE_REASON),
                actor=SYSTEM,
                occurred_at=to_timestamp(at),
            )
        case ReminderDue(r, p, discreet, at):
            # The same reminder id always gives the same event id: JetStream drops a repeat.
            return outgoing(
                reminder_message(r, p, discreet),
                subject=reminder_subject(r.recipient_id),
                source=SOURCE,
                about=p.id,
                at=at,
                event_id=derived_id("reminder", r.id),
            )
    return outgoing(
        message,
        subject=f"crm.followup.{name}",
        source=SOURCE,
        about=about,
        at=event.occurred_at,
        event_id=event_id,
    )
