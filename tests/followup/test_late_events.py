"""Events arrive in any order: what follow-up does with one that comes after the contact's fate
changed (erased, merged), and with purchases and lapses heard in either order.

The real consumers' handlers decode each event, as JetStream would deliver it, over a real
SQLite store; the service's stream is a real one on a real nats-server, purged through the
real StreamEraser, watched to tell which contacts were purged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.message import Message
from prometheus_client import REGISTRY

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from devtools.natsserver import NatsServer
from followup.adapters import event_codec
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.domain.contacts import ContactFate
from followup.domain.model import Action, Promise, PromiseKind, Status
from followup.domain.reminders import ReminderPolicy
from followup.entrypoints import contacts_consumer, interactions_consumer
from followup.ports import Change
from followup.usecases import PromiseReactions
from followup.usecases.planning import PromisePlanner
from promesa.auth import acting_as, worker_identity
from promesa.bus import FOLLOWUP_STREAM, EventBus
from promesa.clock import ManualClock
from promesa.codec import outgoing
from promesa.erasure import StreamEraser
from promesa.event_catalog import CONTACTS, FOLLOWUP, INTERACTIONS
from promesa.events import IncomingEvent
from promesa.ids import derived_id
from promesa.outbox import OutboxRelay
from promesa.protos import to_timestamp
from promesa.usecases import Writes
from tests.followup.test_events import contact_of
from tests.support import eventually

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DUE = NOW + timedelta(days=3)
METRIC = "promesa_followup_events_about_erased_contacts_total"


class WatchedStreams:
    """The real stream eraser, noting each contact it purged (once the purge succeeded)."""

    def __init__(self, eraser: StreamEraser) -> None:
        self._eraser = eraser
        self.erased: list[str] = []

    async def erase(self, contact_id: str) -> None:
        await self._eraser.erase(contact_id)
        self.erased.append(contact_id)


@dataclass
class Ledger:
    store: SqlitePromiseStore
    reactions: PromiseReactions
    streams: WatchedStreams
    nats: NatsServer
    bus: EventBus

    async def deliver(self, message: Message, *, event_id: str = "", delivery: int = 1) -> str:
        """Hands the event to the consumer that filters on it, as JetStream would, under
        that consumer's identity; returns the event id."""
        contacts = message.DESCRIPTOR.file.package == "crm.contacts.v1"
        catalog = CONTACTS if contacts else INTERACTIONS
        contact_id = contact_of(message)
        event = outgoing(
            message,
            subject=catalog.subject(message, contact_id),
            source="promesa/test",
            about=contact_id,
            at=NOW,
        )
        event = replace(event, event_id=event_id or event.event_id)
        incoming = IncomingEvent.from_message(event.subject, event.headers(), event.data, delivery)
        handler: Callable[[IncomingEvent], Awaitable[None]]
        if contacts:
            consumer = contacts_consumer.CONSUMER
            handler = contacts_consumer.ContactsHandler(self.reactions)
        else:
            consumer = interactions_consumer.CONSUMER
            handler = interactions_consumer.InteractionsHandler(self.reactions)
        with acting_as(worker_identity("followup", consumer)):
            await handler(incoming)
        return event.event_id

    async def promises_of(self, contact_id: str) -> list[Promise]:
        return sorted(await self.store.of_contact(contact_id), key=lambda p: p.id)


@pytest.fixture
async def ledger(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Ledger]:
    clock = ManualClock(NOW)
    store = SqlitePromiseStore(tmp_path / "followup.db", event_codec.encode, clock)
    bus = EventBus(nats_server.url, name="late-events-test")
    await bus.connect()
    await bus.declare_stream(FOLLOWUP_STREAM)
    relay = OutboxRelay(store, bus, service="followup")
    streams = WatchedStreams(StreamEraser(bus, relay, FOLLOWUP_STREAM, FOLLOWUP))
    planner = PromisePlanner(ReminderPolicy(), lambda team: "sup-sam")
    reactions = PromiseReactions(
        store, Writes(store, relay.notify), clock, planner=planner, streams=streams
    )
    yield Ledger(store, reactions, streams, nats_server, bus)
    await bus.close()
    await store.close()


def recorded(
    contact_id: str,
    interaction_id: str = "i1",
    *,
    texts: tuple[str, ...] = ("Send the refund reference",),
) -> interactions_events.InteractionRecorded:
    return interactions_events.InteractionRecorded(
        interaction_id=interaction_id,
        contact_id=contact_id,
        type=interaction_pb2.INTERACTION_TYPE_REQUEST,
        channel=interaction_pb2.CHANNEL_PHONE,
        occurred_at=to_timestamp(NOW),
        agent_id="agent-ana",
        team="madrid",
        actor="agent-ana",
        promises=[
            interaction_pb2.PromiseMade(
                id=derived_id(interaction_id, str(k)), text=text, due_at=to_timestamp(DUE)
            )
            for k, text in enumerate(texts)
        ],
    )


def erased(contact_id: str) -> contacts_events.ContactErased:
    return contacts_events.ContactErased(contact_id=contact_id, actor="sup-sam")


def merged(duplicate: str, survivor: str) -> contacts_events.ContactsMerged:
    return contacts_events.ContactsMerged(merged_id=duplicate, survivor_id=survivor)


def lapsed(contact_id: str, at: datetime) -> contacts_events.ContactBecameInactive:
    return contacts_events.ContactBecameInactive(
        contact_id=contact_id, owner_id="agent-ana", team="madrid", occurred_at=to_timestamp(at)
    )


def bought(contact_id: str, at: datetime) -> contacts_events.ContactBecameActive:
    return contacts_events.ContactBecameActive(
        contact_id=contact_id,
        owner_id="agent-ana",
        team="madrid",
        last_purchase_at=to_timestamp(at),
        occurred_at=to_timestamp(at),
    )


def counted(event: str) -> float:
    return REGISTRY.get_sample_value(METRIC, {"event": event}) or 0.0


def moves(p: Promise) -> list[tuple[str, str]]:
    return [(h.from_value, h.to_value) for h in p.history if h.action is Action.CONTACT_MERGED]


# --- erased before the event arrived --------------------------------------------------------


async def test_an_interaction_heard_after_the_erasure_makes_no_promise_and_is_counted(
    ledger: Ledger,
) -> None:
    await ledger.deliver(erased("c1"))
    before = counted("interaction_recorded")

    event_id = await ledger.deliver(recorded("c1"))
    await ledger.deliver(recorded("c1"), event_id=event_id, delivery=2)  # redelivered

    assert await ledger.promises_of("c1") == []
    assert counted("interaction_recorded") == before + 1  # once, not per delivery


async def test_an_interaction_for_a_duplicate_of_an_erased_survivor_makes_no_promise(
    ledger: Ledger,
) -> None:
    await ledger.deliver(merged("dup", "c1"))
    await ledger.deliver(erased("c1"))
    before = counted("interaction_recorded")

    await ledger.deliver(recorded("dup"))

    assert await ledger.promises_of("dup") == await ledger.promises_of("c1") == []
    assert counted("interaction_recorded") == before + 1


async def test_a_lapse_or_a_profile_heard_after_the_erasure_leaves_nothing(
    ledger: Ledger,
) -> None:
    await ledger.deliver(erased("c1"))
    lapses, profiles = counted("contact_became_inactive"), counted("contact_profile_changed")

    await ledger.deliver(lapsed("c1", NOW))
    profile = contacts_events.ContactProfile(contact_id="c1", time_zone="Europe/Madrid")
    await ledger.deliver(contacts_events.ContactCreated(profile=profile))

    assert await ledger.promises_of("c1") == []
    assert await ledger.store.profile("c1") is None
    assert counted("contact_became_inactive") == lapses + 1
    assert counted("contact_profile_changed") == profiles + 1


async def test_a_profile_heard_after_a_newer_one_does_not_replace_it(ledger: Ledger) -> None:
    lima = contacts_events.ContactProfile(contact_id="c1", time_zone="America/Lima")
    await ledger.deliver(
        contacts_events.ContactUpdated(profile=lima, occurred_at=to_timestamp(NOW))
    )

    created = contacts_events.ContactProfile(contact_id="c1")
    await ledger.deliver(
        contacts_events.ContactCreated(
            profile=created, occurred_at=to_timestamp(NOW - timedelta(days=1))
        )
    )

    kept = await ledger.store.profile("c1")
    assert kept is not None and kept.time_zone == "America/Lima" and kept.changed_at == NOW


async def test_a_write_racing_the_erasure_is_refused_and_decided_again(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contact is erased between the read of its fate and the commit of the promise: the
    commit is refused (the fate changed), and the reaction, run again, makes nothing."""
    store = ledger.store
    read_fate = store.fate
    raced = False

    async def fate_then_erasure(contact_id: str) -> ContactFate | None:
        nonlocal raced
        found = await read_fate(contact_id)
        if not raced:
            raced = True
            await store.commit(Change(fates=[ContactFate(contact_id, erased_at=NOW)]))
        return found

    monkeypatch.setattr(store, "fate", fate_then_erasure)

    await ledger.deliver(recorded("c1"))

    assert raced and await ledger.promises_of("c1") == []


# --- merged before the event arrived --------------------------------------------------------


async def test_an_interaction_heard_after_the_merge_lands_on_the_survivor_with_history(
    ledger: Ledger,
) -> None:
    await ledger.deliver(merged("dup", "c1"))

    await ledger.deliver(recorded("dup"))

    assert await ledger.promises_of("dup") == []
    [promise] = await ledger.promises_of("c1")
    assert promise.text == "Send the refund reference" and promise.status is Status.OPEN
    assert [h.action for h in promise.history] == [Action.CREATED, Action.CONTACT_MERGED]
    assert moves(promise) == [("dup", "c1")]
    assert promise.made_for == "dup"
    assert promise.history[-1].actor == "followup/followup-interactions"
    reminders = await ledger.store.deliveries(promise.id, "", None, 10)
    assert reminders and {r.contact_id for r in reminders} == {"c1"}


async def test_an_interaction_for_a_contact_merged_twice_lands_at_the_end_of_the_chain(
    ledger: Ledger,
) -> None:
    await ledger.deliver(merged("c2", "c1"))
    await ledger.deliver(merged("c1", "c0"))

    await ledger.deliver(recorded("c2"))

    [promise] = await ledger.promises_of("c0")
    assert moves(promise) == [("c2", "c0")] and promise.made_for == "c2"


async def test_repointing_a_promise_on_a_merge_writes_a_history_entry(ledger: Ledger) -> None:
    await ledger.deliver(recorded("dup"))
    [before] = await ledger.promises_of("dup")

    merge_id = await ledger.deliver(merged("dup", "c1"))
    await ledger.deliver(merged("dup", "c1"), event_id=merge_id, delivery=2)

    [moved] = await ledger.promises_of("c1")
    assert moved.id == before.id and moved.version == before.version + 1
    assert moves(moved) == [("dup", "c1")]  # once, though delivered twice
    assert moved.history[-1].actor == "followup/followup-contacts"
    assert {r.contact_id for r in await ledger.store.deliveries(moved.id, "", None, 10)} == {"c1"}


async def test_a_profile_heard_after_the_merge_is_not_kept(ledger: Ledger) -> None:
    await ledger.deliver(merged("dup", "c1"))

    profile = contacts_events.ContactProfile(contact_id="dup", time_zone="Europe/Madrid")
    await ledger.deliver(contacts_events.ContactUpdated(profile=profile))

    assert await ledger.store.profile("dup") is None


async def test_a_merge_heard_after_the_survivors_erasure_erases_what_moves_and_purges_it(
    ledger: Ledger,
) -> None:
    await ledger.deliver(recorded("dup"))
    await ledger.deliver(erased("c1"))
    ledger.streams.erased.clear()

    await ledger.deliver(merged("dup", "c1"))

    [promise] = await ledger.promises_of("c1")
    assert promise.erased_at is not None and promise.text == ""
    assert promise.status is Status.CANCELLED
    assert ledger.streams.erased == ["dup"]


async def test_erasing_a_survivor_purges_the_messages_of_everyone_merged_into_it(
    ledger: Ledger,
) -> None:
    await ledger.deliver(merged("c2", "c1"))
    await ledger.deliver(merged("c1", "c0"))

    await ledger.deliver(erased("c0"))

    assert sorted(ledger.streams.erased) == ["c0", "c1", "c2"]


async def test_a_lapse_heard_after_the_merge_gives_the_survivor_the_win_back(
    ledger: Ledger,
) -> None:
    await ledger.deliver(merged("dup", "c1"))

    await ledger.deliver(lapsed("dup", NOW))

    [win_back] = await ledger.promises_of("c1")
    assert win_back.kind is PromiseKind.WIN_BACK and win_back.made_for == "dup"
    assert moves(win_back) == [("dup", "c1")]


# --- purchases and lapses, in either order --------------------------------------------------


async def test_a_purchase_keeps_the_customers_win_back_with_the_purchase_as_evidence(
    ledger: Ledger,
) -> None:
    await ledger.deliver(lapsed("c1", NOW - timedelta(days=2)))

    await ledger.deliver(bought("c1", NOW - timedelta(hours=1)))

    [win_back] = await ledger.promises_of("c1")
    assert win_back.status is Status.KEPT and win_back.kept_on_time
    assert "bought again" in win_back.evidence.note
    assert "2026-03-02T08:00:00" in win_back.evidence.note
    assert win_back.history[-1].actor == "followup/followup-contacts"
    assert [r for r in await ledger.store.deliveries(win_back.id, "", None, 10)] == []


async def test_a_purchase_heard_before_the_lapse_it_answers_keeps_the_win_back_at_once(
    ledger: Ledger,
) -> None:
    await ledger.deliver(bought("c1", NOW - timedelta(hours=1)))

    await ledger.deliver(lapsed("c1", NOW - timedelta(days=2)))

    [win_back] = await ledger.promises_of("c1")
    assert win_back.kind is PromiseKind.WIN_BACK and win_back.status is Status.KEPT
    assert "bought again" in win_back.evidence.note


async def test_a_purchase_older_than_the_lapse_leaves_the_win_back_open(ledger: Ledger) -> None:
    await ledger.deliver(lapsed("c1", NOW - timedelta(days=2)))

    await ledger.deliver(bought("c1", NOW - timedelta(days=30)))  # heard late: they left after

    [win_back] = await ledger.promises_of("c1")
    assert win_back.status is Status.OPEN


async def test_a_duplicates_purchase_keeps_only_the_win_back_made_for_the_duplicate(
    ledger: Ledger,
) -> None:
    await ledger.deliver(lapsed("c1", NOW - timedelta(days=3)))
    await ledger.deliver(lapsed("dup", NOW - timedelta(days=3)))
    await ledger.deliver(merged("dup", "c1"))

    await ledger.deliver(bought("dup", NOW - timedelta(hours=1)))

    statuses = {p.made_for: p.status for p in await ledger.promises_of("c1")}
    assert statuses == {"c1": Status.OPEN, "dup": Status.KEPT}


async def test_a_purchase_by_an_erased_contact_is_acknowledged_and_counted(
    ledger: Ledger,
) -> None:
    await ledger.deliver(lapsed("c1", NOW - timedelta(days=2)))
    await ledger.deliver(erased("c1"))
    before = counted("contact_became_active")

    await ledger.deliver(bought("c1", NOW))

    [win_back] = await ledger.promises_of("c1")
    assert win_back.erased_at is not None and win_back.status is Status.CANCELLED
    assert counted("contact_became_active") == before + 1


# --- the erasure itself, redelivered --------------------------------------------------------


async def test_an_erasure_stopped_half_way_resumes_on_redelivery_and_confirms_once(
    ledger: Ledger,
) -> None:
    await ledger.deliver(recorded("c1"))
    ledger.nats.stop()  # NATS goes away while the erasure is applied

    with pytest.raises(TimeoutError):  # the outbox flush before the purge is never acknowledged
        event_id = await ledger.deliver(erased("c1"), event_id="erase-1")
    [promise] = await ledger.promises_of("c1")
    assert promise.text == ""  # erased before the purge was tried
    assert ledger.streams.erased == []

    ledger.nats.start()  # back, on the same port and store: the bus reconnects

    async def reconnected() -> bool:
        try:
            await ledger.bus.js.stream_info(FOLLOWUP_STREAM.name)
        except Exception:
            return False
        return True

    await eventually(reconnected)
    await ledger.deliver(erased("c1"), event_id="erase-1", delivery=2)
    await ledger.deliver(erased("c1"), event_id="erase-1", delivery=3)
    event_id = await ledger.deliver(erased("c1"))  # the same erasure, published again

    assert event_id and ledger.streams.erased == ["c1"]  # not purged again once confirmed
    fate = await ledger.store.fate("c1")
    assert fate is not None and fate.erased_at is not None and fate.erasure_confirmed_at
    confirmations = [
        e for _, e in await ledger.store.pending_events(100) if "erasure_confirmed" in e.subject
    ]
    assert [e.subject for e in confirmations] == ["crm.followup.contact_erasure_confirmed.c1"]
