"""Erasure reaches the stream and the disk: after follow-up applies ContactErased, no message in
CRM_FOLLOWUP and no byte of its SQLite files (WAL included) holds what was promised to the
person or reminded about them, and the erasure is confirmed once, however often it is
delivered. The real service: gRPC, SQLite, NATS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nats.aio.msg import Msg

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import events_pb2 as followup_events
from crm.interactions.v1 import interaction_pb2
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM, INTERACTIONS_STREAM
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.followup.conftest import RunningFollowup, make
from tests.followup.test_events import promises_of, publish, recorded
from tests.support import eventually, stream_messages

PROMISED = "Refund 4711 euros to Ms Quintana for the broken boiler"
SAID = "Call Ms Quintana back about her late husband's contract"
KEPT_FOR_OTHERS = "Ship Mr Yuste his replacement parcel"


async def messages(svc: RunningFollowup) -> list[Msg]:
    await svc.runtime.parts.relay.flush()
    return await stream_messages(svc.bus.js, FOLLOWUP_STREAM.name)


def holding(found: list[Msg], text: str) -> list[str]:
    return [m.subject for m in found if text.encode() in m.data]


def on_disk(svc: RunningFollowup, text: str) -> list[str]:
    """The SQLite files of the service (database, WAL, shared memory) holding the text."""
    db = Path(svc.store._conn.execute("PRAGMA database_list").fetchone()[2])
    files = [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
    return [f.name for f in files if f.exists() and text.encode() in f.read_bytes()]


async def confirmations(svc: RunningFollowup, contact: str) -> list[Msg]:
    subject = f"crm.followup.contact_erasure_confirmed.{contact}"
    return [m for m in await messages(svc) if m.subject == subject]


async def test_after_an_erasure_no_message_or_database_file_holds_the_persons_texts(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    person, other = new_id(), new_id()
    # Given promises to the person (one made by an agent, one in an interaction) and to
    # someone else, each reminded at due time with its text
    await make(svc, contact_id=person, text=PROMISED, due_in=timedelta(minutes=30))
    promised = interaction_pb2.PromiseMade(
        id=new_id(), text=SAID, due_at=to_timestamp(clock.now() + timedelta(minutes=30))
    )
    await publish(
        svc,
        INTERACTIONS_STREAM,
        "crm.interactions.recorded",
        recorded(svc, person, interaction_pb2.INTERACTION_TYPE_REQUEST, [promised]),
    )
    await make(svc, contact_id=other, text=KEPT_FOR_OTHERS, due_in=timedelta(minutes=30))

    async def both() -> bool:
        return len(await promises_of(svc, person)) == 2

    await eventually(both)
    clock.advance(timedelta(minutes=30))
    assert await svc.scheduler.tick() == 3
    before = await messages(svc)
    assert holding(before, PROMISED) == [f"crm.followup.reminders.agent-ana.{person}"]
    assert holding(before, SAID) == [f"crm.followup.reminders.agent-ana.{person}"]
    assert on_disk(svc, PROMISED)

    # When the person is erased
    erase_id = await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.erased",
        contacts_events.ContactErased(contact_id=person),
    )
    [confirmed] = await eventually(lambda: confirmations(svc, person))

    # Then nothing in the stream holds their texts, and the stream still holds the others'
    after = await messages(svc)
    assert holding(after, PROMISED) == holding(after, SAID) == []
    assert holding(after, KEPT_FOR_OTHERS) == [f"crm.followup.reminders.agent-ana.{other}"]
    assert [m.subject for m in after if m.subject.endswith(person)] == [confirmed.subject]
    event = followup_events.ContactErasureConfirmed.FromString(confirmed.data)
    assert (event.contact_id, event.service) == (person, "followup")
    # …nor does any file of the database
    assert on_disk(svc, PROMISED) == on_disk(svc, SAID) == []
    assert all(p.text == "" for p in await promises_of(svc, person))

    # And delivered again (a replay, and the same erasure published anew), it is confirmed once
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.erased",
        contacts_events.ContactErased(contact_id=person),
        event_id=erase_id,
    )
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.erased",
        contacts_events.ContactErased(contact_id=person),
    )
    marker = new_id()
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.became_inactive",
        contacts_events.ContactBecameInactive(contact_id=marker, owner_id="agent-ana"),
    )
    await eventually(lambda: promises_of(svc, marker))
    assert [m.data for m in await confirmations(svc, person)] == [confirmed.data]
