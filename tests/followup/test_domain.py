"""The follow-up domain on its own: lifecycle rules, reminder planning, statistics, notices."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from followup.domain import lifecycle, notices
from followup.domain.contacts import ContactFate, ContactPreferences, QuietHours
from followup.domain.events import PromiseKept, PromiseOverdue
from followup.domain.model import (
    EARLIEST,
    LATEST,
    Action,
    Channel,
    Evidence,
    Promise,
    PromiseKind,
    Status,
    shifted,
)
from followup.domain.reminders import (
    DeliveryAttempt,
    NoticeReason,
    NoticeTemplate,
    Outcome,
    ReminderKind,
    ReminderPolicy,
    plan,
)
from followup.domain.stats import Grouping, compute

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def a_promise(due_in: timedelta = 48 * HOUR, **overrides: object) -> Promise:
    fields: dict[str, object] = {
        "id": "p1",
        "contact_id": "c1",
        "text": "Call back",
        "kind": PromiseKind.CALL_BACK,
        "owner_id": "ana",
        "team": "madrid",
        "created_by": "ana",
        "due_at": T0 + due_in,
        "created_at": T0,
        "channel": Channel.PHONE,
    }
    fields.update(overrides)
    return lifecycle.created(Promise(**fields))  # type: ignore[arg-type]


def ids() -> str:
    return "r"


def test_the_reminder_plan_skips_moments_already_past_and_includes_escalation() -> None:
    policy = ReminderPolicy()
    soon = a_promise(due_in=30 * timedelta(minutes=1))
    planned = {(r.kind, r.scheduled_at, r.recipient_id) for r in plan(soon, T0, policy, "sup", ids)}
    assert planned == {
        (ReminderKind.AT_DUE, T0 + timedelta(minutes=30), "ana"),
        (ReminderKind.ESCALATION, T0 + timedelta(minutes=30) + 4 * HOUR, "sup"),
    }
    far = a_promise()
    assert len(plan(far, T0, policy, "", ids)) == 3  # no supervisor known: no escalation


def test_escalations_repeat_daily_after_the_first() -> None:
    policy = ReminderPolicy()
    p = a_promise(due_in=HOUR)
    first = p.due_at + 4 * HOUR
    assert policy.next_escalation(p, T0) == first
    assert policy.next_escalation(p, first) == first + 24 * HOUR
    assert policy.next_escalation(p, first + 30 * HOUR) == first + 48 * HOUR


def test_overdue_is_noted_once_per_due_time() -> None:
    p = a_promise(due_in=HOUR)
    late, events = lifecycle.note_overdue(p, T0 + HOUR)
    assert [type(e) for e in events] == [PromiseOverdue]
    again, events = lifecycle.note_overdue(late, T0 + 2 * HOUR)
    assert events == [] and again == late


def test_time_to_keep_excludes_paused_time_and_a_waiting_promise_is_not_overdue() -> None:
    p = a_promise(due_in=2 * HOUR)
    paused, _ = lifecycle.pause(p, "waiting", "ana", T0 + HOUR)
    assert paused.status is Status.WAITING_ON_CUSTOMER
    assert not paused.is_overdue(T0 + 50 * HOUR)
    resumed, _ = lifecycle.resume(paused, "back", "ana", T0 + 11 * HOUR)
    assert resumed.due_at == p.due_at + 10 * HOUR
    kept, events = lifecycle.keep(resumed, Evidence(note="done"), "ana", T0 + 12 * HOUR)
    assert isinstance(events[0], PromiseKept) and kept.kept_on_time
    assert kept.time_to_keep == 2 * HOUR
    with pytest.raises(lifecycle.PromiseStateError):
        lifecycle.cancel(kept, "too late", "ana", T0 + 13 * HOUR)


def test_stats_median_and_handoffs_per_promise() -> None:
    kept_fast, _ = lifecycle.keep(a_promise(id="a"), Evidence(note="x"), "ana", T0 + HOUR)
    kept_slow, _ = lifecycle.keep(a_promise(id="b"), Evidence(note="x"), "ana", T0 + 3 * HOUR)
    moved, _ = lifecycle.reassign(a_promise(id="c"), "bea", "", "leave", "ana", T0)
    [row] = compute([kept_fast, kept_slow, moved], Grouping.ALL, T0 + 4 * HOUR)
    assert row.median_time_to_keep == 2 * HOUR
    assert row.handoffs_per_promise == pytest.approx(1 / 3)
    assert row.kept_on_time_percent == 100.0


def test_customer_notices_honour_consent_quiet_hours_and_discretion() -> None:
    madrid = ContactPreferences(
        contact_id="c1",
        time_zone="Europe/Madrid",
        preferred_channel=Channel.PHONE,
        consents=((Channel.EMAIL, True), (Channel.PHONE, True)),
        quiet_hours=QuietHours(22 * 60, 8 * 60),
    )
    p = a_promise(text="Internal: supplier is late again")
    notice = notices.schedule(p, NoticeReason.PROMISE_MADE, T0, "n1")
    assert notice.outcome is Outcome.QUEUED and notice.recipient_id == "c1"
    email = {Channel.EMAIL}

    late_evening = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Madrid
    held = notices.decide(notice, p, madrid, email, late_evening)
    assert held == notices.Hold(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))  # 08:00 in Madrid
    assert isinstance(held, notices.Hold)

    # The preferred channel (phone) has no gateway: the consented email is used instead.
    send = notices.decide(notice, p, madrid, email, held.until)
    assert send == notices.Send(Channel.EMAIL, NoticeTemplate.IN_HAND, p.due_at)
    message = notices.render(send, p, madrid, "Pepa")
    assert "Dear Pepa" in message.body
    assert "we will call you back by Wednesday 4 March 2026 at 10:00 (Europe/Madrid)" in (
        message.body
    )
    assert "supplier" not in message.body + message.subject  # the agent's words stay inside

    discreet = replace(madrid, quiet_hours=None, discreet=True)
    hush = notices.decide(notice, p, discreet, email, T0)
    assert isinstance(hush, notices.Send) and hush.template is NoticeTemplate.PLEASE_CONTACT_US
    assert notices.render(hush, p, discreet, "Pepa") == notices.PLEASE_CONTACT_US

    nothing = notices.decide(notice, p, ContactPreferences("c1"), email, T0)
    assert nothing == notices.Drop("no deliverable consented channel: no consent given")
    phone_only = replace(madrid, consents=((Channel.PHONE, True),))
    assert isinstance(notices.decide(notice, p, phone_only, email, T0), notices.Drop)


def test_a_later_renegotiation_supersedes_a_queued_notice() -> None:
    p = a_promise()
    first = notices.schedule(p, NoticeReason.PROMISE_MADE, T0, "n1")
    moved, _ = lifecycle.renegotiate(p, T0 + 72 * HOUR, "parts late", True, "ana", T0)
    second = notices.schedule(moved, NoticeReason.DUE_DATE_RENEGOTIATED, T0, "n2")
    prefs = ContactPreferences("c1", consents=((Channel.EMAIL, True),))

    assert notices.decide(first, moved, prefs, {Channel.EMAIL}, T0) == notices.Drop(
        "superseded by the notice of a later renegotiation"
    )
    assert notices.decide(second, moved, prefs, {Channel.EMAIL}, T0) == notices.Send(
        Channel.EMAIL, NoticeTemplate.NEW_DUE_DATE, T0 + 72 * HOUR
    )


def test_a_notice_that_keeps_failing_is_retried_with_back_off_then_failed() -> None:
    p = a_promise()
    policy = ReminderPolicy(max_attempts=3, retry_base=timedelta(seconds=30))
    notice = notices.schedule(p, NoticeReason.DUE_DATE_RENEGOTIATED, T0, "n1")
    send = notices.Send(Channel.EMAIL, NoticeTemplate.NEW_DUE_DATE, p.due_at)
    retries = []
    for _ in range(3):
        failure = DeliveryAttempt("customer_email", T0, False, "SMTP 451")
        notice = notices.attempted(notice, send, failure, policy)
        retries.append(notice.next_attempt_at)
    assert retries == [T0 + timedelta(seconds=30), T0 + timedelta(seconds=60), None]
    assert notice.outcome is Outcome.FAILED and len(notice.attempts) == 3


def test_times_derived_from_a_promise_due_at_the_calendars_end_are_held_there() -> None:
    policy = ReminderPolicy()
    p = a_promise(due_at=LATEST)
    planned = {r.kind: r.scheduled_at for r in plan(p, T0, policy, "sup", ids)}
    assert planned[ReminderKind.ESCALATION] == LATEST  # due + 4 h: never reached
    assert planned[ReminderKind.BEFORE_DUE_24H] == LATEST - 24 * HOUR

    paused, _ = lifecycle.pause(p, "waiting", "ana", T0)
    assert paused.effective_due(T0 + 50 * HOUR) == LATEST
    assert not paused.is_overdue(T0 + 50 * HOUR)
    [row] = compute([paused], Grouping.ALL, T0 + 50 * HOUR)
    assert row.overdue_now == 0
    resumed, _ = lifecycle.resume(paused, "back", "ana", T0 + 50 * HOUR)
    assert resumed.due_at == LATEST and resumed.paused_total == 50 * HOUR
    cancelled, _ = lifecycle.cancel(paused, "void", "ana", T0 + 60 * HOUR)
    assert cancelled.due_at == LATEST

    kiritimati = ContactPreferences("c1", time_zone="Pacific/Kiritimati")  # UTC+14
    assert notices.local_time(LATEST, kiritimati).endswith("(UTC)")
    assert policy.retry_at(4, T0) == T0 + 30 * timedelta(seconds=8)
    assert ReminderPolicy(max_attempts=100).retry_at(99, T0) == LATEST


def test_shifting_a_time_stops_at_the_calendars_ends() -> None:
    assert shifted(T0, HOUR) == T0 + HOUR
    assert shifted(LATEST - HOUR, 2 * HOUR) == LATEST
    assert shifted(EARLIEST + HOUR, -2 * HOUR) == EARLIEST
    assert shifted(T0, HOUR, -3) == T0 - 3 * HOUR
    assert shifted(T0, timedelta(days=1), 10**12) == LATEST
    assert shifted(T0, timedelta(days=-1), 10**12) == EARLIEST


def test_a_contacts_fate_is_the_same_whatever_order_its_news_arrives_in() -> None:
    news = [
        ContactFate("c1", erased_at=T0 + HOUR),
        ContactFate("c1", merged_into_id="c0"),
        ContactFate("c1", active_at=T0, inactive_at=T0 - HOUR),
        ContactFate("c1", active_at=T0 - HOUR, erasure_confirmed_at=T0 + 2 * HOUR),
        ContactFate("c1", erased_at=T0 + 3 * HOUR, inactive_at=T0 + HOUR),
    ]
    seen: set[ContactFate] = set()
    for order in itertools.permutations(news):
        fate = ContactFate("c1")
        for item in order:
            fate = fate.combined(item)
        seen.add(fate)
    assert seen == {
        ContactFate(
            "c1",
            merged_into_id="c0",
            erased_at=T0 + HOUR,
            erasure_confirmed_at=T0 + 2 * HOUR,
            active_at=T0,
            inactive_at=T0 + HOUR,
        )
    }
    assert not ContactFate("c1", merged_into_id="c0").is_live
    assert not ContactFate("c1", erased_at=T0).is_live and ContactFate("c1").is_live


def test_a_merge_moves_a_promise_with_a_history_entry_and_remembers_whom_it_was_made_for() -> None:
    p = a_promise()
    moved = lifecycle.repoint(lifecycle.repoint(p, "c2", "worker", T0), "c3", "worker", T0 + HOUR)
    assert moved.contact_id == "c3" and moved.version == p.version + 2
    assert [(h.action, h.from_value, h.to_value) for h in moved.history[1:]] == [
        (Action.CONTACT_MERGED, "c1", "c2"),
        (Action.CONTACT_MERGED, "c2", "c3"),
    ]
    assert moved.made_for == "c1" and p.made_for == "c1"


def test_a_customer_confirms_a_kept_promise_once() -> None:
    kept, _ = lifecycle.keep(a_promise(), Evidence(note="done"), "ana", T0)
    confirmed, _ = lifecycle.confirm(kept, 5, "ana", T0 + HOUR)
    with pytest.raises(lifecycle.PromiseStateError, match="confirmed by the customer already"):
        lifecycle.confirm(confirmed, 1, "ana", T0 + 2 * HOUR)


def test_a_stopped_delivery_says_why_and_stays_delivered_when_it_was() -> None:
    r = plan(a_promise(due_in=HOUR), T0, ReminderPolicy(), "", ids)[0]
    sent = r.after_attempts(
        [DeliveryAttempt("nats", T0, True), DeliveryAttempt("webhook", T0, False, "HTTP 500")],
        T0,
        ReminderPolicy(notifiers=("nats", "webhook")),
    )
    stopped = sent.stopped("not sent: the promise is kept", T0 + HOUR)
    assert stopped.outcome is Outcome.DELIVERED and stopped.next_attempt_at is None
    assert stopped.remaining == () and stopped.attempts[-1].notifier == "scheduler"
    assert r.stopped("not sent: the promise is cancelled", T0).outcome is Outcome.DROPPED
