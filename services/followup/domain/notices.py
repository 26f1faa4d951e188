"""Customer notices: which promise changes tell the customer, when, and what a notice says.

A notice is a delivery row beside the owner's reminders (kind CUSTOMER_NOTICE), committed with
the promise change that causes it: a promise made (only when notices are switched on) or a due
time renegotiated with the customer's agreement (always). It waits as QUEUED, which a replan of
the owner's reminders leaves alone, and is decided when it falls due, from what is known then:
the promise as it stands, the contact's preferences (consent per channel, quiet hours in their
time zone, discretion) and the channels the service can deliver on.

What a notice says is a fixed template: the sort of commitment and the due time in the
contact's time zone. The promise's text is the agent's own words and may hold internal notes,
so it never goes in a notice, and neither does any reason, note or evidence; a discreet contact
gets "please contact us" and nothing else.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from followup.domain.contacts import ContactPreferences, notice_channel, outside_quiet_hours
from followup.domain.model import Channel, Promise, PromiseKind, Status
from followup.domain.reminders import (
    DeliveryAttempt,
    NoticeReason,
    NoticeRecord,
    NoticeTemplate,
    Outcome,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
)

NO_CHANNEL = "no deliverable consented channel"
CONTACT_ERASED = "contact erased"
CONTACT_NOT_FOUND = "contact not found"


def schedule(p: Promise, reason: NoticeReason, now: datetime, notice_id: str) -> ReminderDelivery:
    """A notice to the promise's contact, due at once; what it says is decided when it is sent."""
    return ReminderDelivery(
        id=notice_id,
        promise_id=p.id,
        contact_id=p.contact_id,
        kind=ReminderKind.CUSTOMER_NOTICE,
        recipient_id=p.contact_id,
        owner_id=p.owner_id,
        scheduled_at=now,
        next_attempt_at=now,
        remaining=(),
        outcome=Outcome.QUEUED,
        notice=NoticeRecord(reason, p.renegotiation_count),
    )


def told_when_made(p: Promise) -> bool:
    """A win-back is the business reaching out, not something the customer asked for."""
    return p.kind is not PromiseKind.WIN_BACK


@dataclass(frozen=True)
class Drop:
    """Do not send, ever: the reason is recorded."""

    reason: str


@dataclass(frozen=True)
class Hold:
    """Not now: the contact's quiet hours last until `until`."""

    until: datetime


@dataclass(frozen=True)
class Send:
    channel: Channel
    template: NoticeTemplate
    due_at: datetime


Decision = Drop | Hold | Send


def decide(
    r: ReminderDelivery,
    p: Promise | None,
    prefs: ContactPreferences | None,
    deliverable: Collection[Channel],
    now: datetime,
) -> Decision:
    """Whether, when and how a notice goes out, from the promise and preferences as they are."""
    notice = record_of(r)
    if p is None:
        return Drop("promise not found")
    if p.erased_at is not None:
        return Drop(CONTACT_ERASED)
    if notice.reason is NoticeReason.PROMISE_KEPT:
        if p.status is not Status.KEPT:
            return Drop(f"promise {p.status.value.lower()}: nothing to rate")
        if p.customer_confirmed:
            return Drop("the customer's satisfaction is recorded already")
    elif not p.is_open:
        return Drop(f"promise {p.status.value.lower()} before the notice went out")
    if p.renegotiation_count > notice.renegotiation:
        return Drop("superseded by the notice of a later renegotiation")
    if prefs is None:
        return Drop(f"{NO_CHANNEL}: no preferences known for the contact")
    channel = notice_channel(prefs, deliverable)
    if channel is None:
        consented = [c.value for c, granted in prefs.consents if granted]
        if consented:
            return Drop(f"{NO_CHANNEL} (consented to {', '.join(consented)})")
        return Drop(f"{NO_CHANNEL}: no consent given")
    quiet_until = outside_quiet_hours(prefs, now)
    if quiet_until > now:
        return Hold(quiet_until)
    if notice.reason is NoticeReason.PROMISE_KEPT:
        template = NoticeTemplate.SATISFACTION_REQUEST  # discreet: no name, kind nor reference
    elif prefs.discreet:
        template = NoticeTemplate.PLEASE_CONTACT_US
    elif notice.reason is NoticeReason.PROMISE_MADE:
        template = NoticeTemplate.IN_HAND
    else:
        template = NoticeTemplate.NEW_DUE_DATE
    return Send(channel, template, p.effective_due(now))


def record_of(r: ReminderDelivery) -> NoticeRecord:
    if r.notice is None:
        raise ValueError(f"delivery {r.id} is not a customer notice")
    return r.notice


def dropped(r: ReminderDelivery, reason: str) -> ReminderDelivery:
    return replace(
        r,
        outcome=Outcome.DROPPED,
        next_attempt_at=None,
        notice=replace(record_of(r), dropped_reason=reason),
    )


def held(r: ReminderDelivery, until: datetime) -> ReminderDelivery:
    """Still queued, due again when the quiet hours end; not an attempt."""
    return replace(r, next_attempt_at=until, notice=replace(record_of(r), quiet_hours_end_at=until))


def attempted(
    r: ReminderDelivery, send: Send, attempt: DeliveryAttempt, policy: ReminderPolicy
) -> ReminderDelivery:
    """One try at sending: delivered, or queued again with back-off until the last round."""
    rounds = r.rounds + 1
    notice = replace(record_of(r), channel=send.channel, template=send.template, due_at=send.due_at)
    attempts = (*r.attempts, attempt)
    if attempt.success:
        return replace(
            r,
            attempts=attempts,
            rounds=rounds,
            outcome=Outcome.DELIVERED,
            next_attempt_at=None,
            announced=True,
            notice=notice,
        )
    retry = policy.retry_at(rounds, attempt.attempted_at)
    return replace(
        r,
        attempts=attempts,
        rounds=rounds,
        outcome=Outcome.QUEUED if retry else Outcome.FAILED,
        next_attempt_at=retry,
        notice=notice,
    )


# --- what a notice says ------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeMessage:
    subject: str
    body: str


# The sort of commitment, in words meant for the customer (never the agent's own text).
WHAT_WE_WILL_DO = {
    PromiseKind.CALL_BACK: "we will call you back",
    PromiseKind.RESOLVE_COMPLAINT: "we will resolve your complaint and tell you what we did",
    PromiseKind.DELIVER: "we will deliver what we promised you",
    PromiseKind.SEND_INFORMATION: "we will send you the information you asked for",
    PromiseKind.VISIT: "we will visit you as agreed",
    PromiseKind.WIN_BACK: "we will be in touch",
    PromiseKind.OTHER: "we will get back to you",
}
PLEASE_CONTACT_US = NoticeMessage("Please contact us", "Hello,\n\nPlease contact us.\n")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def local_time(at: datetime, prefs: ContactPreferences) -> str:
    """`Thursday 5 March 2026 at 17:00 (Europe/Madrid)`, in the contact's zone (else UTC);
    English names whatever the process locale."""
    zone = prefs.zone()
    try:
        local = at.astimezone(zone or UTC)
    except OverflowError:  # past the calendar's end in that zone: said in UTC instead
        zone, local = None, at.astimezone(UTC)
    label = prefs.time_zone if zone else "UTC"
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"
        f" at {local:%H:%M} ({label})"
    )


def render(
    send: Send, p: Promise, prefs: ContactPreferences, name: str, link: str = ""
) -> NoticeMessage:
    """The message for the customer. `name` is the name they like to be called by, fetched for
    this message only; a discreet contact's message has no name, no date and no reference.
    `link` is the satisfaction request's signed link (template SATISFACTION_REQUEST)."""
    if send.template is NoticeTemplate.PLEASE_CONTACT_US:
        return PLEASE_CONTACT_US
    if send.template is NoticeTemplate.SATISFACTION_REQUEST:
        return satisfaction_request(p, prefs, name, link)
    greeting = f"Dear {name}," if name else "Hello,"
    promised = f"{WHAT_WE_WILL_DO[p.kind]} by {local_time(send.due_at, prefs)}"
    if send.template is NoticeTemplate.IN_HAND:
        subject, line = "Your request is in hand", f"Your request is in hand: {promised}."
    else:
        subject = "A new date for your request"
        line = f"As agreed with you, the date has moved: {promised}."
    return NoticeMessage(subject, f"{greeting}\n\n{line}\n\nYour reference: {p.id}\n")


# The sort of commitment kept, in the customer's words (never the agent's own text), by language.
WHAT_WE_DID = {
    "en": {
        PromiseKind.CALL_BACK: "We promised to call you back.",
        PromiseKind.RESOLVE_COMPLAINT: "We promised to resolve your complaint.",
        PromiseKind.DELIVER: "We promised to deliver something to you.",
        PromiseKind.SEND_INFORMATION: "We promised to send you the information you asked for.",
        PromiseKind.VISIT: "We promised to visit you.",
        PromiseKind.WIN_BACK: "We promised to be in touch.",
        PromiseKind.OTHER: "We promised to get back to you.",
    },
    "es": {
        PromiseKind.CALL_BACK: "Le prometimos devolverle la llamada.",
        PromiseKind.RESOLVE_COMPLAINT: "Le prometimos resolver su reclamación.",
        PromiseKind.DELIVER: "Le prometimos hacerle una entrega.",
        PromiseKind.SEND_INFORMATION: "Le prometimos enviarle la información que pidió.",
        PromiseKind.VISIT: "Le prometimos visitarle.",
        PromiseKind.WIN_BACK: "Le prometimos ponernos en contacto.",
        PromiseKind.OTHER: "Le prometimos responderle.",
    },
}
LANGUAGES = tuple(WHAT_WE_DID)
_REQUEST = {
    "en": (
        "How did we do?",
        "Dear {name},",
        "Hello,",
        "Please tell us how we did (1 to 5), it takes a few seconds:",
        "Your reference: {ref}",
    ),
    "es": (
        "¿Qué tal lo hicimos?",
        "Estimado/a {name}:",
        "Hola:",
        "Díganos qué tal lo hicimos (de 1 a 5), solo le llevará unos segundos:",
        "Su referencia: {ref}",
    ),
}


def language(*wanted: str) -> str:
    """The first wanted language we have words for (`es-ES` counts as `es`), else English."""
    for tag in wanted:
        base = tag.strip().lower().replace("_", "-").split("-")[0]
        if base in WHAT_WE_DID:
            return base
    return "en"


def what_we_did(kind: PromiseKind, lang: str) -> str:
    return WHAT_WE_DID.get(lang, WHAT_WE_DID["en"])[kind]


def satisfaction_request(
    p: Promise, prefs: ContactPreferences, name: str, link: str, lang: str = "en"
) -> NoticeMessage:
    """The question ("how did we do?") with the link; for a discreet contact, the question and
    the link only (no name, no sort of commitment, no reference)."""
    subject, dear, hello, ask, ref = _REQUEST.get(lang, _REQUEST["en"])
    if prefs.discreet:
        return NoticeMessage(subject, f"{hello}\n\n{ask}\n{link}\n")
    greeting = dear.format(name=name) if name else hello
    body = f"{greeting}\n\n{what_we_did(p.kind, lang)}\n{ask}\n{link}\n\n{ref.format(ref=p.id)}\n"
    return NoticeMessage(subject, body)
