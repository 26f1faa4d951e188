"""Translation between protos and the follow-up domain, and the one declaration of every enum
mapping the service uses (the event codec and the consumers import them from here).

A mapper from a request creates one Violations; every enum and timestamp it reads adds to it,
and it raises once, so a caller sees every field it could not read in one answer.
"""

from __future__ import annotations

from datetime import datetime

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from crm.interactions.v1 import interaction_pb2
from followup.domain.model import (
    Action,
    Channel,
    Evidence,
    Priority,
    Promise,
    PromiseDraft,
    PromiseKind,
    Status,
)
from followup.domain.reminders import (
    Breach,
    NoticeReason,
    NoticeRecord,
    NoticeTemplate,
    Outcome,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    standing,
)
from followup.domain.service_levels import Relationship
from followup.domain.stats import Grouping, PromiseStats
from followup.ports import PromiseFilter
from promesa.clock import Clock
from promesa.errors import Violations
from promesa.protos import EnumMap, from_timestamp, to_duration, to_timestamp

CHANNEL = EnumMap(promise_pb2.Channel, "CHANNEL", Channel)
KIND = EnumMap(promise_pb2.PromiseKind, "PROMISE_KIND", PromiseKind)
PRIORITY = EnumMap(promise_pb2.Priority, "PRIORITY", Priority)
STATUS = EnumMap(promise_pb2.PromiseStatus, "PROMISE_STATUS", Status)
REMINDER_KIND = EnumMap(reminder_pb2.ReminderKind, "REMINDER_KIND", ReminderKind)
NOTICE_REASON = EnumMap(reminder_pb2.NoticeReason, "NOTICE_REASON", NoticeReason)
NOTICE_TEMPLATE = EnumMap(reminder_pb2.NoticeTemplate, "NOTICE_TEMPLATE", NoticeTemplate)
GROUPING = EnumMap(followup_pb.StatsGrouping, "STATS_GROUPING", Grouping)
# The same values in the other services' contracts, read from their events.
INTERACTION_CHANNEL = EnumMap(interaction_pb2.Channel, "CHANNEL", Channel)
INTERACTION_PROMISE_KIND = EnumMap(interaction_pb2.PromiseKind, "PROMISE_KIND", PromiseKind)
CONTACT_CHANNEL = EnumMap(contact_pb2.Channel, "CHANNEL", Channel)
CONTACT_RELATIONSHIP = EnumMap(contact_pb2.Relationship, "RELATIONSHIP", Relationship)
# QUEUED (a customer notice or a runaround escalation not sent yet) is PENDING to callers: the
# difference only matters to the store, which replaces pending owner reminders on a replan but
# never queued deliveries.
OUTCOME: dict[Outcome, reminder_pb2.DeliveryOutcome.ValueType] = {
    Outcome.PENDING: reminder_pb2.DELIVERY_OUTCOME_PENDING,
    Outcome.QUEUED: reminder_pb2.DELIVERY_OUTCOME_PENDING,
    Outcome.DELIVERED: reminder_pb2.DELIVERY_OUTCOME_DELIVERED,
    Outcome.FAILED: reminder_pb2.DELIVERY_OUTCOME_FAILED,
    Outcome.DROPPED: reminder_pb2.DELIVERY_OUTCOME_DROPPED,
}


ACTION = EnumMap(promise_pb2.HistoryAction, "HISTORY_ACTION", Action)


def promise_to_proto(
    p: Promise, clock: Clock, policy: ReminderPolicy | None = None
) -> promise_pb2.Promise:
    """`policy` places the promise against its service level (the defaults without it)."""
    now = clock.now()
    sla = standing(p, now, policy or ReminderPolicy())
    return promise_pb2.Promise(
        id=p.id,
        contact_id=p.contact_id,
        source_interaction_id=p.source_interaction_id,
        text=p.text,
        channel=CHANNEL.to_proto(p.channel),
        kind=KIND.to_proto(p.kind),
        owner_id=p.owner_id,
        team=p.team,
        created_by=p.created_by,
        due_at=to_timestamp(p.due_at),
        priority=PRIORITY.to_proto(p.priority),
        status=STATUS.to_proto(p.status),
        overdue=p.is_overdue(now),
        cancel_reason=p.cancel_reason,
        kept_at=to_timestamp(p.kept_at),
        kept_on_time=p.kept_on_time,
        evidence=promise_pb2.Evidence(
            interaction_id=p.evidence.interaction_id, note=p.evidence.note
        )
        if p.evidence
        else None,
        customer_confirmed=p.customer_confirmed,
        confirmed_at=to_timestamp(p.confirmed_at),
        satisfaction=p.satisfaction,
        satisfaction_by_customer=p.satisfaction_by_customer,
        satisfaction_comment=p.satisfaction_comment,
        satisfaction_requested_at=to_timestamp(p.satisfaction_requested_at),
        follows_promise_id=p.follows_promise_id,
        handoff_count=p.handoff_count,
        renegotiation_count=p.renegotiation_count,
        paused_duration=to_duration(p.paused_duration(now)),
        history=[
            promise_pb2.HistoryEntry(
                actor=h.actor,
                occurred_at=to_timestamp(h.occurred_at),
                action=ACTION.to_proto(h.action),
                reason=h.reason,
                from_value=h.from_value,
                to_value=h.to_value,
            )
            for h in p.history
        ],
        etag=p.etag,
        created_at=to_timestamp(p.created_at),
        updated_at=to_timestamp(p.updated_at),
        updated_by=p.updated_by,
        paused_at=to_timestamp(p.paused_at),
        escalated_at=to_timestamp(p.escalated_at),
        erased_at=to_timestamp(p.erased_at),
        target_at=to_timestamp(sla.target_at),
        business_time_left=to_duration(sla.time_left),
        service_level=sla.service_level,
    )


def draft_from_proto(p: promise_pb2.Promise) -> PromiseDraft:
    """Only what a caller may set; output-only fields are ignored, as the contract says."""
    v = Violations()
    draft = PromiseDraft(
        contact_id=p.contact_id,
        text=p.text,
        kind=KIND.parse(p.kind, "promise.kind", v),
        owner_id=p.owner_id,
        due_at=from_timestamp(p, "due_at", "promise.due_at", v),
        team=p.team,
        channel=CHANNEL.parse(p.channel, "promise.channel", v),
        priority=PRIORITY.parse(p.priority, "promise.priority", v),
        source_interaction_id=p.source_interaction_id,
        follows_promise_id=p.follows_promise_id,
    )
    v.raise_if_any()
    return draft


def evidence_from_proto(e: promise_pb2.Evidence) -> Evidence:
    return Evidence(interaction_id=e.interaction_id, note=e.note)


def filter_from_request(r: followup_pb.ListPromisesRequest) -> PromiseFilter:
    v = Violations()
    f = PromiseFilter(
        owner_id=r.owner_id,
        team=r.team,
        contact_id=r.contact_id,
        status=STATUS.parse(r.status, "status", v),
        due_after=from_timestamp(r, "due_after", "due_after", v),
        due_before=from_timestamp(r, "due_before", "due_before", v),
    )
    v.raise_if_any()
    return f


def new_due_from_request(r: followup_pb.RenegotiateDueDateRequest) -> datetime | None:
    v = Violations()
    new_due = from_timestamp(r, "new_due_at", "new_due_at", v)
    v.raise_if_any()
    return new_due


def stats_query_from_request(
    r: followup_pb.GetPromiseStatsRequest,
) -> tuple[Grouping, datetime | None, datetime | None]:
    """The grouping (unset is ALL) and the window [start, end) of promises made."""
    v = Violations()
    grouping = GROUPING.parse(r.grouping, "grouping", v) or Grouping.ALL
    start = from_timestamp(r, "window_start_at", "window_start_at", v)
    end = from_timestamp(r, "window_end_at", "window_end_at", v)
    v.raise_if_any()
    return grouping, start, end


def delivery_to_proto(r: ReminderDelivery) -> reminder_pb2.ReminderDelivery:
    return reminder_pb2.ReminderDelivery(
        id=r.id,
        promise_id=r.promise_id,
        kind=REMINDER_KIND.to_proto(r.kind),
        recipient_id=r.recipient_id,
        scheduled_at=to_timestamp(r.scheduled_at),
        attempts=[
            reminder_pb2.DeliveryAttempt(
                notifier=a.notifier,
                attempted_at=to_timestamp(a.attempted_at),
                success=a.success,
                error=a.error,
            )
            for a in r.attempts
        ],
        outcome=OUTCOME[r.outcome],
        owner_id=r.owner_id,
        customer_notice=notice_to_proto(r.notice) if r.notice else None,
        next_attempt_at=to_timestamp(r.next_attempt_at),
        lead=to_duration(r.lead),
    )


def notice_to_proto(n: NoticeRecord) -> reminder_pb2.CustomerNotice:
    return reminder_pb2.CustomerNotice(
        reason=NOTICE_REASON.to_proto(n.reason),
        channel=CHANNEL.to_proto(n.channel),
        template=NOTICE_TEMPLATE.to_proto(n.template),
        due_at=to_timestamp(n.due_at),
        quiet_hours_end_at=to_timestamp(n.quiet_hours_end_at),
        dropped_reason=n.dropped_reason,
    )


def stats_to_proto(s: PromiseStats) -> followup_pb.PromiseStats:
    return followup_pb.PromiseStats(
        key=s.key,
        made=s.made,
        kept=s.kept,
        kept_on_time_percent=s.kept_on_time_percent,
        overdue_now=s.overdue_now,
        cancelled=s.cancelled,
        renegotiated=s.renegotiated,
        median_time_to_keep=to_duration(s.median_time_to_keep),
        mean_satisfaction=s.mean_satisfaction,
        handoffs_per_promise=s.handoffs_per_promise,
        escalated=s.escalated,
        median_business_time_to_keep=to_duration(s.median_business_time_to_keep),
        breaches=s.breaches,
        customer_ratings=s.customer_ratings,
        mean_customer_satisfaction=s.mean_customer_satisfaction,
        staff_ratings=s.staff_ratings,
        mean_staff_satisfaction=s.mean_staff_satisfaction,
        satisfaction_requests=s.satisfaction_requests,
        response_rate_percent=s.response_rate_percent,
    )


def breach_window_from_request(
    r: followup_pb.ListServiceLevelBreachesRequest,
) -> tuple[datetime | None, datetime | None]:
    """The window [start, end) of due times; either side may be open."""
    v = Violations()
    start = from_timestamp(r, "window_start_at", "window_start_at", v)
    end = from_timestamp(r, "window_end_at", "window_end_at", v)
    v.raise_if_any()
    return start, end


def breach_to_proto(b: Breach, now: datetime) -> followup_pb.ServiceLevelBreach:
    p = b.promise
    return followup_pb.ServiceLevelBreach(
        promise_id=p.id,
        owner_id=p.owner_id,
        team=p.team,
        priority=PRIORITY.to_proto(p.priority),
        service_level=b.service_level,
        target_at=to_timestamp(p.effective_due(now)),
        kept_at=to_timestamp(p.kept_at),
        late_by=to_duration(b.late_by),
    )
