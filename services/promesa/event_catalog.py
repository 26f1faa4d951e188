"""Every event between the services: its subject and its payload type, one table per domain,
read by the producer (which subject) and by every consumer (which payload, decoded once).

Subjects are `crm.<domain>.<event>.<contact_id>`: the contact the event is about ends the
subject, so that an erasure can purge that person's events from a stream with a subject
filter, and a stream can later be partitioned by contact. Consumers filter on
`crm.<domain>.<event>.>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from google.protobuf.message import DecodeError, Message

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import events_pb2 as followup_events
from crm.interactions.v1 import events_pb2 as interactions_events
from promesa.events import IncomingEvent, UndecodableEventError

_NOT_A_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def subject_token(text: str) -> str:
    """`text` as one subject token: characters NATS gives a meaning to (dots, wildcards,
    spaces) become `_`; the payload always carries the exact id."""
    return _NOT_A_TOKEN.sub("_", text) or "_"


class EventCatalog:
    """The events of one domain, by their name in the subject."""

    def __init__(self, domain: str, types: Mapping[str, type[Message]]) -> None:
        self.domain = domain
        self._types = dict(types)
        self._names = {t.DESCRIPTOR.full_name: name for name, t in types.items()}

    def subject(self, message: Message, contact_id: str) -> str:
        """The subject a producer publishes this payload on: it ends with the contact it is
        about."""
        name = self._names[message.DESCRIPTOR.full_name]
        return f"crm.{self.domain}.{name}.{subject_token(contact_id)}"

    def subjects(self, *names: str) -> tuple[str, ...]:
        """The subjects a consumer filters on: these events, about any contact."""
        for name in names:
            if name not in self._types:
                raise KeyError(f"crm.{self.domain} has no event {name!r}")
        return tuple(f"crm.{self.domain}.{name}.>" for name in names)

    def about(self, contact_id: str) -> tuple[str, ...]:
        """Subject filters for every message of this domain about one contact: its events
        (`crm.<domain>.<event>.<contact>`) and messages one token deeper, such as the
        follow-up's reminders (`crm.followup.reminders.<owner>.<contact>`)."""
        token = subject_token(contact_id)
        return (f"crm.{self.domain}.*.{token}", f"crm.{self.domain}.*.*.{token}")

    def decode(self, event: IncomingEvent) -> Message:
        """The payload, by the subject it came on. An event with no id, on a subject this
        catalog does not know, or whose bytes are not its payload can never be handled:
        UndecodableEventError sends it to the dead letters at once."""
        if not event.event_id:
            raise UndecodableEventError("the event has no id")
        tokens = event.subject.split(".")
        found = self._types.get(tokens[2]) if len(tokens) >= 3 else None
        if found is None or tokens[:2] != ["crm", self.domain]:
            raise UndecodableEventError(f"no event of crm.{self.domain} on {event.subject!r}")
        try:
            return found.FromString(event.data)
        except DecodeError as exc:
            raise UndecodableEventError(f"{found.DESCRIPTOR.name}: {exc}") from exc


def require(**fields: object) -> None:
    """Fields an effect cannot do without; missing ones send the event to the dead letters."""
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise UndecodableEventError(f"required but missing: {', '.join(missing)}")


CONTACTS = EventCatalog(
    "contacts",
    {
        "created": contacts_events.ContactCreated,
        "updated": contacts_events.ContactUpdated,
        "became_active": contacts_events.ContactBecameActive,
        "became_inactive": contacts_events.ContactBecameInactive,
        "merged": contacts_events.ContactsMerged,
        "erased": contacts_events.ContactErased,
    },
)
INTERACTIONS = EventCatalog(
    "interactions",
    {
        "recorded": interactions_events.InteractionRecorded,
        "rated": interactions_events.InteractionRated,
        "amended": interactions_events.InteractionAmended,
        "contact_erasure_confirmed": interactions_events.ContactErasureConfirmed,
    },
)
FOLLOWUP = EventCatalog(
    "followup",
    {
        "promise_made": followup_events.PromiseMade,
        "promise_reassigned": followup_events.PromiseReassigned,
        "promise_renegotiated": followup_events.PromiseRenegotiated,
        "promise_kept": followup_events.PromiseKept,
        "promise_cancelled": followup_events.PromiseCancelled,
        "promise_overdue": followup_events.PromiseOverdue,
        "promise_escalated": followup_events.PromiseEscalated,
        "reminder_sent": followup_events.ReminderSent,
        "customer_notice_sent": followup_events.CustomerNoticeSent,
        "customer_satisfaction_given": followup_events.CustomerSatisfactionGiven,
        "contact_erasure_confirmed": followup_events.ContactErasureConfirmed,
    },
)


# Events whose effect reaches contacts besides the one their subject ends with: a merge (the
# subject names the survivor, the payload the duplicate) and an erasure (the contacts merged
# into the erased one are erased with it).
_REACHING_OTHERS = tuple(f.removesuffix(">") for f in CONTACTS.subjects("merged", "erased"))


def ordering_key(subject: str) -> str | None:
    """Which events a consumer must apply one after the other: those about the same contact,
    the last token of every subject (a reminder's too). None for an event that reaches other
    contacts as well, which is applied alone."""
    if subject.startswith(_REACHING_OTHERS):
        return None
    return subject.rpartition(".")[2]
