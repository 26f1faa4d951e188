"""Erasure reaches the stream and the disk: after ContactErased, nothing anyone wrote about the
person is left in CRM_INTERACTIONS or in the SQLite files, and the erasure is confirmed once.

The texts are ASCII on purpose: the database keeps JSON, which escapes other characters, and a
search for their UTF-8 bytes would then find nothing even if they were there.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.entrypoints.contacts_consumer import CONSUMER
from promesa.bus import CONTACTS_STREAM, INTERACTIONS_STREAM
from promesa.codec import outgoing
from promesa.event_catalog import CONTACTS
from promesa.events import OutgoingEvent
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.interactions.conftest import (
    RunningInteractions,
    a_promise,
    amend,
    an_interaction,
    announce_contact,
    known_contact,
    record,
)
from tests.support import bearer, eventually, stream_messages


def confirmation_subject(contact_id: str) -> str:
    return f"crm.interactions.contact_erasure_confirmed.{contact_id}"


async def what_they_wrote(svc: RunningInteractions, contact_id: str, tag: str) -> list[str]:
    """Touches of a contact holding every kind of text an agent writes about a person (summary,
    notes, outcome, promises, an amendment's reason and the value it replaced), rated too.
    Returns the texts, each marked with `tag`."""
    texts = {
        "summary": f"Summary {tag}: Quentin Marlowe reports the kettle leaks",
        "notes": f"Notes {tag}: lives at 12 Harbour Lane, diabetic, prefers mornings",
        "outcome": f"Outcome {tag}: replacement and a goodwill voucher",
        "promise": f"Promise {tag}: ring Quentin on his mobile before Friday",
        "second promise": f"Promise {tag}: post the voucher to Harbour Lane",
        "amended summary": f"Amended {tag}: Quentin Marlowe says the kettle leaks badly",
        "reason": f"Reason {tag}: Quentin asked us to note the burn on his hand",
    }
    touch = await record(
        svc,
        an_interaction(
            contact_id,
            summary=texts["summary"],
            notes=texts["notes"],
            outcome=texts["outcome"],
            promises=[a_promise(texts["promise"]), a_promise(texts["second promise"])],
        ),
    )
    await amend(
        svc,
        touch.id,
        interaction_pb2.Interaction(summary=texts["amended summary"]),
        ["summary"],
        texts["reason"],
    )
    await svc.stub.RateInteraction(
        interactions_pb.RateInteractionRequest(id=touch.id, satisfaction=2), metadata=bearer()
    )
    await record(
        svc,
        an_interaction(contact_id, promises=[a_promise(f"Promise {tag}: call Quentin back")]),
    )
    return [*texts.values(), f"Promise {tag}: call Quentin back"]


def erasure_of(svc: RunningInteractions, contact_id: str) -> OutgoingEvent:
    """ContactErased as the contacts service publishes it."""
    erased = contacts_events.ContactErased(
        contact_id=contact_id, actor="sup-sam", occurred_at=to_timestamp(svc.clock.now())
    )
    return outgoing(
        erased,
        subject=CONTACTS.subject(erased, contact_id),
        source="promesa/contacts",
        about=contact_id,
        at=svc.clock.now(),
    )


async def erase(svc: RunningInteractions, contact_id: str) -> OutgoingEvent:
    """Publishes ContactErased and waits until the service confirms the erasure."""
    event = erasure_of(svc, contact_id)
    await svc.bus.publish_batch([event])
    await eventually(lambda: confirmations(svc, contact_id))
    return event


async def confirmations(svc: RunningInteractions, contact_id: str) -> list[Msg]:
    subject = confirmation_subject(contact_id)
    return await stream_messages(svc.bus.js, INTERACTIONS_STREAM.name, subject)


async def everything_in_the_stream(svc: RunningInteractions) -> list[Msg]:
    await svc.runtime.parts.relay.flush()
    return await stream_messages(svc.bus.js, INTERACTIONS_STREAM.name)


def holding(msgs: list[Msg], texts: list[str]) -> list[tuple[str, str]]:
    """(subject, text) of every message whose payload or headers hold one of the texts."""
    found: list[tuple[str, str]] = []
    for msg in msgs:
        raw = msg.data + repr(msg.headers).encode()
        found.extend((msg.subject, t) for t in texts if t.encode() in raw)
    return found


def database_bytes(data: Path) -> bytes:
    """The interactions database as it is on disk: the file, its WAL and the WAL index."""
    return b"".join(p.read_bytes() for p in sorted(data.glob("interactions.db*")))


def on_disk(data: Path, texts: list[str]) -> list[str]:
    raw = database_bytes(data)
    return [t for t in texts if t.encode() in raw]


async def test_an_erased_contacts_texts_are_gone_from_the_stream_and_it_says_so(
    interactions_service: RunningInteractions,
) -> None:
    svc = interactions_service
    forgotten = await known_contact(svc)
    kept = await known_contact(svc)
    texts = await what_they_wrote(svc, forgotten, "forgotten")
    others = await what_they_wrote(svc, kept, "kept")
    assert holding(await everything_in_the_stream(svc), texts), "promise texts travel"

    # When the contacts service erases the contact,
    await erase(svc, forgotten)

    # then no message left in the stream holds anything written about them,
    left = await everything_in_the_stream(svc)
    assert holding(left, texts) == []
    # the other contact's events stay,
    assert holding(left, others)
    # and the erasure is confirmed, by this service, about this contact.
    [confirmed] = await confirmations(svc, forgotten)
    event = interactions_events.ContactErasureConfirmed.FromString(confirmed.data)
    assert (event.contact_id, event.service) == (forgotten, "interactions")
    assert event.occurred_at == to_timestamp(svc.clock.now())


async def test_an_erasure_purges_the_events_of_the_duplicates_merged_into_the_contact(
    interactions_service: RunningInteractions,
) -> None:
    """Touches recorded for a duplicate were announced under its id: they go too."""
    svc = interactions_service
    survivor = await known_contact(svc)
    duplicate = await known_contact(svc)
    texts = await what_they_wrote(svc, duplicate, "duplicate")
    merged = contacts_events.ContactsMerged(
        survivor_id=survivor, merged_id=duplicate, occurred_at=to_timestamp(svc.clock.now())
    )
    await svc.bus.publish_batch(
        [
            outgoing(
                merged,
                subject=CONTACTS.subject(merged, survivor),
                source="promesa/contacts",
                about=survivor,
                at=svc.clock.now(),
            )
        ]
    )

    async def moved() -> bool:
        known = await svc.store.contact(duplicate)
        return known is not None and known.merged_into_id == survivor

    await eventually(moved)

    await erase(svc, survivor)

    assert holding(await everything_in_the_stream(svc), texts) == []


async def test_after_an_erasure_the_database_files_hold_none_of_the_texts(
    interactions_service: RunningInteractions, tmp_path: Path
) -> None:
    svc = interactions_service
    forgotten = await known_contact(svc)
    texts = await what_they_wrote(svc, forgotten, "on disk")
    await svc.runtime.parts.relay.flush()
    assert on_disk(tmp_path, texts), "the texts were on disk before the erasure"

    await erase(svc, forgotten)

    assert on_disk(tmp_path, texts) == []


async def test_the_erasure_is_confirmed_once_however_often_it_is_delivered(
    interactions_service: RunningInteractions,
) -> None:
    svc = interactions_service
    forgotten = await known_contact(svc)
    await what_they_wrote(svc, forgotten, "twice")
    confirmed_before = confirmations_published()
    first = await erase(svc, forgotten)

    # When the same event is delivered again (its ack was lost), and another erasure of the
    # same contact arrives,
    js = svc.bus.js
    again = await js.publish(
        first.subject, first.data, headers={**first.headers(), "Nats-Msg-Id": new_id()}
    )
    svc.clock.advance(timedelta(minutes=1))
    another = erasure_of(svc, forgotten)
    later = await js.publish(another.subject, another.data, headers=another.headers())
    assert later.seq > again.seq

    async def both_handled() -> bool:
        info = await js.consumer_info(CONTACTS_STREAM.name, CONSUMER)
        return info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= later.seq

    await eventually(both_handled)

    # then the confirmation was published once, and is still in the stream (not purged again).
    await svc.runtime.parts.relay.flush()
    assert confirmations_published() - confirmed_before == 1
    assert len(await confirmations(svc, forgotten)) == 1


async def test_a_contact_first_heard_of_in_its_erasure_is_confirmed_too(
    interactions_service: RunningInteractions,
) -> None:
    """Nothing is held about a contact this service never heard of; it still says so, so the
    erasure record is complete."""
    svc = interactions_service
    await announce_contact(svc.bus, new_id(), svc.clock.now())  # the contacts stream exists
    stranger = new_id()

    await erase(svc, stranger)

    known = await svc.store.contact(stranger)
    assert known is not None and known.erased_at is not None


def confirmations_published() -> float:
    """Erasure confirmations the interactions relay has published in this process so far (the
    counter is by event type: a test reads how much it grew)."""
    return (
        REGISTRY.get_sample_value(
            "promesa_events_published_total",
            {"service": "interactions", "type": "crm.interactions.v1.ContactErasureConfirmed"},
        )
        or 0.0
    )
