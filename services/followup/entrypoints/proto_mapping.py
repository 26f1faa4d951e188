"""Translation between follow-up protos and the domain; unknown enum numbers become violations."""

from __future__ import annotations

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from followup.domain.model import Channel, Priority, Promise, PromiseKind, Status
from followup.domain.reminders import NoticeRecord, Outcome, ReminderDelivery
from followup.domain.stats import Grouping, PromiseStats
from followup.ports import PromiseFilter
from followup.usecases import PromiseDraft
from promesa.clock import Clock
from promesa.errors import Violations
from promesa.protos import (
    enum_from_proto,
    enum_to_proto,
    from_timestamp,
    to_duration,
    to_timestamp,
)

CHANNEL = ("CHANNEL", promise_pb2.Channel)
KIND = ("PROMISE_KIND", promise_pb2.PromiseKind)
PRIORITY = ("PRIORITY", promise_pb2.Priority)
STATUS = ("PROMISE_STATUS", promise_pb2.PromiseStatus)
ACTION = ("HISTORY_ACTION", promise_pb2.HistoryAction)
REMINDER_KIND = ("REMINDER_KIND", reminder_pb2.ReminderKind)
NOTICE_REASON = ("NOTICE_REASON", reminder_pb2.NoticeReason)
NOTICE_TEMPLATE = ("NOTICE_TEMPLATE", reminder_pb2.NoticeTemplate)
# QUEUED (a customer notice not sent yet) is PENDING to callers: the difference only matters
# to the store, which replaces pending owner reminders on a replan but never queued notices.
OUTCOME: dict[Outcome, reminder_pb2.DeliveryOutcome.ValueType] = {
    Outcome.PENDING: reminder_pb2.DELIVERY_OUTCOME_PENDING,
    Outcome.QUEUED: reminder_pb2.DELIVERY_OUTCOME_PENDING,
    Outcome.DELIVERED: reminder_pb2.DELIVERY_OUTCOME_DELIVERED,
    Outcome.FAILED: reminder_pb2.DELIVERY_OUTCOME_FAILED,
    Outcome.DROPPED: reminder_pb2.DELIVERY_OUTCOME_DROPPED,
}
GROUPING = ("STATS_GROUPING", followup_pb.StatsGrouping)


def promise_to_proto(p: Promise, clock: Clock) -> promise_pb2.Promise:
    now = clock.now()
    return promise_pb2.Promise(
        id=p.id,
        contact_id=p.contact_id,
        source_interaction_id=p.source_interaction_id,
        text=p.text,
        channel=enum_to_proto(p.channel, *CHANNEL),
        kind=enum_to_proto(p.kind, *KIND),
        owner_id=p.owner_id,
        team=p.team,
        created_by=p.created_by,
        due_at=to_timestamp(p.due_at),
        priority=enum_to_proto(p.priority, *PRIORITY),
        status=enum_to_proto(p.status, *STATUS),
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
        follows_promise_id=p.follows_promise_id,
        handoff_count=p.handoff_count,
        renegotiation_count=p.renegotiation_count,
        paused_duration=to_duration(p.paused_duration(now)),
        history=[
            promise_pb2.HistoryEntry(
                actor=h.actor,
                occurred_at=to_timestamp(h.occurred_at),
                action=enum_to_proto(h.action, *ACTION),
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
    )


def draft_from_proto(p: promise_pb2.Promise, v: Violations) -> PromiseDraft:
    """Only what a caller may set; output-only fields are ignored, as the contract says."""
    return PromiseDraft(
        contact_id=p.contact_id,
        text=p.text,
        kind=enum_from_proto(p.kind, *KIND, PromiseKind, "promise.kind", v),
        owner_id=p.owner_id,
        due_at=from_timestamp(p, "due_at"),
        team=p.team,
        channel=enum_from_proto(p.channel, *CHANNEL, Channel, "promise.channel", v),
        priority=enum_from_proto(p.priority, *PRIORITY, Priority, "promise.priority", v),
        source_interaction_id=p.source_interaction_id,
        follows_promise_id=p.follows_promise_id,
    )


def filter_from_request(r: followup_pb.ListPromisesRequest, v: Violations) -> PromiseFilter:
    return PromiseFilter(
        owner_id=r.owner_id,
        team=r.team,
        contact_id=r.contact_id,
        status=enum_from_proto(r.status, *STATUS, Status, "status", v),
        due_after=from_timestamp(r, "due_after"),
        due_before=from_timestamp(r, "due_before"),
    )


def grouping_from_proto(number: int, v: Violations) -> Grouping:
    return enum_from_proto(number, *GROUPING, Grouping, "grouping", v) or Grouping.ALL


def delivery_to_proto(r: ReminderDelivery) -> reminder_pb2.ReminderDelivery:
    return reminder_pb2.ReminderDelivery(
        id=r.id,
        promise_id=r.promise_id,
        kind=enum_to_proto(r.kind, *REMINDER_KIND),
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
    )


def notice_to_proto(n: NoticeRecord) -> reminder_pb2.CustomerNotice:
    return reminder_pb2.CustomerNotice(
        reason=enum_to_proto(n.reason, *NOTICE_REASON),
        channel=enum_to_proto(n.channel, *CHANNEL),
        template=enum_to_proto(n.template, *NOTICE_TEMPLATE),
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
    )
