"""Domain events of follow-up → protobuf payloads on `crm.followup.<event>.<contact_id>` (no
promise text, except in the reminder itself, which goes only to the recipient's own subjects,
`crm.followup.reminders.<recipient>.<contact_id>`; a customer notice is announced by ids,
channel and template only). Every subject ends with the contact, so an erasure purges the
contact's reminders with its events (`FOLLOWUP.about(contact_id)`)."""

from __future__ import annotations

from typing import assert_never

from google.protobuf.message import Message

from crm.followup.v1 import events_pb2 as events_pb
from crm.followup.v1 import reminder_pb2
from followup.domain.events import (
    POLICY_ACTOR,
    ContactErasureConfirmed,
    CustomerNoticeSent,
    CustomerSatisfactionGiven,
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
from followup.entrypoints.proto_mapping import (
    CHANNEL,
    KIND,
    NOTICE_REASON,
    NOTICE_TEMPLATE,
    PRIORITY,
    REMINDER_KIND,
)
from promesa.codec import outgoing
from promesa.event_catalog import FOLLOWUP, subject_token
from promesa.events import OutgoingEvent
from promesa.ids import derived_id
from promesa.protos import to_duration, to_timestamp

SOURCE = "promesa/followup"
REMINDERS_PREFIX = "crm.followup.reminders"


def reminder_subject(recipient_id: str, contact_id: str) -> str:
    """`crm.followup.reminders.<recipient>.<contact_id>`: the recipient first, so a front-office
    app (and StreamReminders) listens to exactly its user's reminders (`reminders_of`); the
    contact last, like every subject, so an erasure purges the reminders about the contact.
    Characters NATS gives a meaning to (dots, wildcards, spaces) become `_`; the payload
    carries the exact ids."""
    return f"{REMINDERS_PREFIX}.{subject_token(recipient_id)}.{subject_token(contact_id)}"


def reminders_of(recipient_id: str) -> str:
    """The subject filter of every reminder to one user, about any contact."""
    return f"{REMINDERS_PREFIX}.{subject_token(recipient_id)}.>"


def reminder_message(r: ReminderDelivery, p: Promise, discreet: bool) -> reminder_pb2.Reminder:
    """The owner-facing reminder; the text is left out when the contact asked for discretion."""
    return reminder_pb2.Reminder(
        id=r.id,
        promise_id=p.id,
        contact_id=p.contact_id,
        kind=REMINDER_KIND.to_proto(r.kind),
        recipient_id=r.recipient_id,
        owner_id=p.owner_id,
        due_at=to_timestamp(p.due_at),
        text="" if discreet else p.text,
        promise_kind=KIND.to_proto(p.kind),
        priority=PRIORITY.to_proto(p.priority),
        scheduled_at=to_timestamp(r.scheduled_at),
        lead=to_duration(r.lead),
        service_level=p.service_level,
    )


def encode(event: PromiseEvent) -> OutgoingEvent:
    message: Message
    event_id: str | None = None
    match event:
        case PromiseMade(p, actor, at):
            about, contact = p.id, p.contact_id
            message = events_pb.PromiseMade(
                promise_id=p.id,
                contact_id=p.contact_id,
                source_interaction_id=p.source_interaction_id,
                kind=KIND.to_proto(p.kind),
                channel=CHANNEL.to_proto(p.channel),
                owner_id=p.owner_id,
                team=p.team,
                due_at=to_timestamp(p.due_at),
                priority=PRIORITY.to_proto(p.priority),
                follows_promise_id=p.follows_promise_id,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseReassigned(p, previous_owner, previous_team, actor, at):
            about, contact = p.id, p.contact_id
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
            about, contact = p.id, p.contact_id
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
            about, contact = p.id, p.contact_id
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
            about, contact = p.id, p.contact_id
            message = events_pb.PromiseCancelled(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case PromiseOverdue(p, at):
            about, contact = p.id, p.contact_id
            message = events_pb.PromiseOverdue(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                due_at=to_timestamp(p.due_at),
                actor=POLICY_ACTOR,
                occurred_at=to_timestamp(at),
            )
        case PromiseEscalated(p, supervisor, at):
            about, contact = p.id, p.contact_id
            message = events_pb.PromiseEscalated(
                promise_id=p.id,
                contact_id=p.contact_id,
                owner_id=p.owner_id,
                team=p.team,
                escalated_to_id=supervisor,
                due_at=to_timestamp(p.due_at),
                actor=POLICY_ACTOR,
                occurred_at=to_timestamp(at),
            )
        case ReminderSent(r, notifiers, at):
            about, contact = r.promise_id, r.contact_id
            event_id = derived_id("reminder_sent", r.id)
            message = events_pb.ReminderSent(
                reminder_id=r.id,
                promise_id=r.promise_id,
                contact_id=r.contact_id,
                kind=REMINDER_KIND.to_proto(r.kind),
                recipient_id=r.recipient_id,
                notifiers=notifiers,
                actor=POLICY_ACTOR,
                occurred_at=to_timestamp(at),
            )
        case CustomerNoticeSent(n, contact_id, at):
            about, contact = n.promise_id, contact_id
            event_id = derived_id("customer_notice_sent", n.id)
            notice = n.notice
            message = events_pb.CustomerNoticeSent(
                notice_id=n.id,
                promise_id=n.promise_id,
                contact_id=contact_id,
                channel=CHANNEL.to_proto(notice.channel if notice else None),
                template=NOTICE_TEMPLATE.to_proto(notice.template if notice else None),
                reason=NOTICE_REASON.to_proto(notice.reason if notice else None),
                actor=POLICY_ACTOR,
                occurred_at=to_timestamp(at),
            )
        case CustomerSatisfactionGiven(p, score, actor, at):
            about, contact = p.id, p.contact_id
            event_id = derived_id("customer_satisfaction_given", p.id)  # a promise is rated once
            message = events_pb.CustomerSatisfactionGiven(
                promise_id=p.id,
                contact_id=p.contact_id,
                source_interaction_id=p.source_interaction_id,
                score=score,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case ContactErasureConfirmed(contact_id, at):
            about, contact = contact_id, contact_id
            event_id = derived_id("contact_erasure_confirmed", contact_id)
            message = events_pb.ContactErasureConfirmed(
                contact_id=contact_id, service="followup", occurred_at=to_timestamp(at)
            )
        case ReminderDue(r, p, discreet, at):
            # The same reminder id always gives the same event id: JetStream drops a repeat.
            return outgoing(
                reminder_message(r, p, discreet),
                subject=reminder_subject(r.recipient_id, p.contact_id),
                source=SOURCE,
                about=p.id,
                at=at,
                event_id=derived_id("reminder", r.id),
            )
        case _:
            assert_never(event)
    return outgoing(
        message,
        subject=FOLLOWUP.subject(message, contact),
        source=SOURCE,
        about=about,
        at=event.occurred_at,
        event_id=event_id,
    )
