"""The envelope of an event between services: what the outbox keeps of it, and what a consumer
receives of it."""

from __future__ import annotations

from datetime import UTC, datetime

from crm.contacts.v1 import events_pb2 as contacts_events
from promesa.event_catalog import CONTACTS
from promesa.events import NATS_MSG_ID, IncomingEvent, OutgoingEvent

EVENT = OutgoingEvent(
    event_id="evt-1",
    subject="crm.contacts.erased.c-1",
    type="crm.contacts.v1.ContactErased",
    source="promesa/contacts",
    time=datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC),
    ce_subject="c-1",
    data=bytes(range(256)),
)


def test_an_outgoing_event_rebuilds_from_its_row() -> None:
    row = EVENT.row()

    assert isinstance(row["time"], str) and isinstance(row["data"], bytes)
    assert OutgoingEvent.from_row(row) == EVENT


def test_a_row_whose_payload_reads_back_as_a_buffer_still_rebuilds_bytes() -> None:
    rebuilt = OutgoingEvent.from_row({**EVENT.row(), "data": memoryview(EVENT.data)})

    assert rebuilt == EVENT
    assert type(rebuilt.data) is bytes


def test_the_headers_follow_the_cloudevents_nats_binding_and_name_the_message_id() -> None:
    headers = EVENT.headers()

    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "promesa/contacts",
        "ce-type": "crm.contacts.v1.ContactErased",
        "ce-time": "2026-03-02T09:00:00.123456Z",
        "ce-subject": "c-1",
        "content-type": "application/protobuf",
        NATS_MSG_ID: "evt-1",
    }


def test_an_event_without_ce_id_is_known_by_its_message_id() -> None:
    event = IncomingEvent.from_message("crm.contacts.erased", {NATS_MSG_ID: "evt-9"}, b"", 2)

    assert (event.event_id, event.delivery) == ("evt-9", 2)
    assert IncomingEvent.from_message("crm.contacts.erased", None, b"", 1).event_id == ""


def test_what_an_outgoing_event_carries_is_what_a_consumer_decodes() -> None:
    message = contacts_events.ContactErased(contact_id="c-7", actor="agent-ana")
    outgoing = OutgoingEvent(
        event_id="evt-7",
        subject=CONTACTS.subject(message, "c-7"),
        type=message.DESCRIPTOR.full_name,
        source="promesa/contacts",
        time=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        ce_subject="c-7",
        data=message.SerializeToString(),
    )

    event = IncomingEvent.from_message(outgoing.subject, outgoing.headers(), outgoing.data, 1)

    assert event.event_id == "evt-7"
    assert event.type == "crm.contacts.v1.ContactErased"
    assert CONTACTS.decode(event) == message
