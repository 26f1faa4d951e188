"""The event catalog: one subject per event for producers, one decoder per domain for
consumers, and anything a consumer cannot read sent straight to the dead letters."""

from __future__ import annotations

from types import ModuleType

import pytest
from google.protobuf.message import Message

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import events_pb2 as followup_events
from crm.interactions.v1 import events_pb2 as interactions_events
from promesa.event_catalog import CONTACTS, FOLLOWUP, INTERACTIONS, EventCatalog, require
from promesa.events import IncomingEvent, UndecodableEventError

# The subjects are a contract between services (stream filters, consumers' filters): pinned.
SUBJECTS: list[tuple[EventCatalog, type[Message], str]] = [
    (CONTACTS, contacts_events.ContactCreated, "crm.contacts.created"),
    (CONTACTS, contacts_events.ContactUpdated, "crm.contacts.updated"),
    (CONTACTS, contacts_events.ContactBecameActive, "crm.contacts.became_active"),
    (CONTACTS, contacts_events.ContactBecameInactive, "crm.contacts.became_inactive"),
    (CONTACTS, contacts_events.ContactsMerged, "crm.contacts.merged"),
    (CONTACTS, contacts_events.ContactErased, "crm.contacts.erased"),
    (INTERACTIONS, interactions_events.InteractionRecorded, "crm.interactions.recorded"),
    (INTERACTIONS, interactions_events.InteractionRated, "crm.interactions.rated"),
    (INTERACTIONS, interactions_events.InteractionAmended, "crm.interactions.amended"),
    (
        INTERACTIONS,
        interactions_events.ContactErasureConfirmed,
        "crm.interactions.contact_erasure_confirmed",
    ),
    (FOLLOWUP, followup_events.PromiseMade, "crm.followup.promise_made"),
    (FOLLOWUP, followup_events.PromiseReassigned, "crm.followup.promise_reassigned"),
    (FOLLOWUP, followup_events.PromiseRenegotiated, "crm.followup.promise_renegotiated"),
    (FOLLOWUP, followup_events.PromiseKept, "crm.followup.promise_kept"),
    (FOLLOWUP, followup_events.PromiseCancelled, "crm.followup.promise_cancelled"),
    (FOLLOWUP, followup_events.PromiseOverdue, "crm.followup.promise_overdue"),
    (FOLLOWUP, followup_events.PromiseEscalated, "crm.followup.promise_escalated"),
    (FOLLOWUP, followup_events.ReminderSent, "crm.followup.reminder_sent"),
    (FOLLOWUP, followup_events.CustomerNoticeSent, "crm.followup.customer_notice_sent"),
    (
        FOLLOWUP,
        followup_events.CustomerSatisfactionGiven,
        "crm.followup.customer_satisfaction_given",
    ),
    (FOLLOWUP, followup_events.ContactErasureConfirmed, "crm.followup.contact_erasure_confirmed"),
]


def received(subject: str, data: bytes, *, event_id: str = "evt-1") -> IncomingEvent:
    return IncomingEvent(
        event_id=event_id,
        type="",
        subject=subject,
        source="promesa/test",
        ce_subject="c-1",
        time="2026-03-02T09:00:00Z",
        data=data,
        delivery=1,
    )


def erased(contact_id: str = "c-1") -> contacts_events.ContactErased:
    return contacts_events.ContactErased(contact_id=contact_id, actor="agent-ana")


# --- producers: which subject -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("catalog", "message_type", "subject"), SUBJECTS, ids=[s for _, _, s in SUBJECTS]
)
def test_each_event_has_its_one_subject_and_decodes_from_it(
    catalog: EventCatalog, message_type: type[Message], subject: str
) -> None:
    message = message_type()

    # The contact the event is about ends the subject, made safe as one token
    assert catalog.subject(message, "c-1") == f"{subject}.c-1"
    assert catalog.subject(message, "a.b *>") == f"{subject}.a_b___"
    decoded = catalog.decode(received(f"{subject}.c-1", message.SerializeToString()))
    assert type(decoded) is message_type


@pytest.mark.parametrize(
    ("catalog", "module"),
    [(CONTACTS, contacts_events), (INTERACTIONS, interactions_events), (FOLLOWUP, followup_events)],
    ids=["contacts", "interactions", "followup"],
)
def test_every_event_of_a_domain_contract_is_in_its_catalog(
    catalog: EventCatalog, module: ModuleType
) -> None:
    messages = module.DESCRIPTOR.message_types_by_name.values()
    # Messages that other events of the file carry (a contact's profile) are parts, not events
    parts = {f.message_type.full_name for m in messages for f in m.fields if f.message_type}
    events = [m for m in messages if m.full_name not in parts]

    listed = {t.DESCRIPTOR.full_name for c, t, _ in SUBJECTS if c is catalog}
    assert {m.full_name for m in events} == listed


# --- consumers: which payload -----------------------------------------------------------------


def test_a_payload_decodes_whatever_tokens_follow_the_event_name() -> None:
    data = erased("c-42").SerializeToString()

    for subject in ("crm.contacts.erased", "crm.contacts.erased.c-42", "crm.contacts.erased.a.b"):
        assert CONTACTS.decode(received(subject, data)) == erased("c-42")


def test_a_consumer_matches_the_decoded_payload_by_type() -> None:
    event = received("crm.contacts.erased.c-1", erased().SerializeToString())

    match CONTACTS.decode(event):
        case contacts_events.ContactErased() as message:
            assert message.contact_id == "c-1"
        case other:
            pytest.fail(f"decoded as {type(other).__name__}")


@pytest.mark.parametrize(
    ("catalog", "subject"),
    [
        (CONTACTS, "crm.contacts.teleported.c-1"),
        (CONTACTS, "crm.interactions.recorded.c-1"),
        (INTERACTIONS, "crm.contacts.erased.c-1"),
        (CONTACTS, "crm.contacts"),
        (CONTACTS, "crm.contacts."),
        (CONTACTS, "contacts.erased.c-1"),
        (CONTACTS, ""),
    ],
    ids=[
        "unknown-event",
        "other-domain",
        "other-catalog",
        "too-short",
        "empty-name",
        "no-crm",
        "empty",
    ],
)
def test_an_event_on_a_subject_the_catalog_does_not_know_is_undecodable(
    catalog: EventCatalog, subject: str
) -> None:
    with pytest.raises(UndecodableEventError):
        catalog.decode(received(subject, erased().SerializeToString()))


def test_an_event_without_an_id_is_undecodable() -> None:
    with pytest.raises(UndecodableEventError, match="no id"):
        CONTACTS.decode(received("crm.contacts.erased.c-1", b"", event_id=""))


@pytest.mark.parametrize("data", [b"\xff", b"\x80", b"\x0a\x05ab"], ids=["tag", "varint", "short"])
def test_bytes_that_are_not_the_payload_are_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableEventError, match="ContactErased"):
        CONTACTS.decode(received("crm.contacts.erased.c-1", data))


def test_an_empty_payload_decodes_as_the_empty_message() -> None:
    # proto3: every field at its default; `require` is what refuses missing ids
    assert CONTACTS.decode(received("crm.contacts.erased", b"")) == contacts_events.ContactErased()


# --- filters and required fields ----------------------------------------------------------------


def test_a_consumer_filters_on_the_subjects_of_the_events_it_names() -> None:
    assert CONTACTS.subjects("erased", "merged") == (
        "crm.contacts.erased.>",
        "crm.contacts.merged.>",
    )
    assert INTERACTIONS.subjects() == ()


def test_a_filter_naming_an_unknown_event_is_refused() -> None:
    with pytest.raises(KeyError, match=r"crm\.contacts has no event 'deleted'"):
        CONTACTS.subjects("erased", "deleted")


def test_required_fields_that_are_missing_are_named() -> None:
    require(contact_id="c-1", survivor_id="c-2")

    with pytest.raises(UndecodableEventError, match="required but missing: contact_id, actor"):
        require(contact_id="", survivor_id="c-2", actor="")
