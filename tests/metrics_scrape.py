"""The three services' /metrics after a little of everything, for tests that check a dashboard
or an alert names only metrics that exist (tests/deploy/test_monitoring.py).

`await scrape(nats_server, tmp_path)` runs contacts, interactions and follow-up in this process
on a real nats-server and SQLite, makes a contact, records an interaction with a promise, sends
a reminder (and fails it on a notifier that is down), dead-letters an undecodable event, leaves
another promise overdue, keeps the first, refreshes the gauges, and returns the exposition
text. The services share the process's prometheus registry, so one `generate_latest` is the
concatenation of their three /metrics pages. `metric_names(text)` lists the families in it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from devtools.natsserver import NatsServer
from promesa.clock import ManualClock
from promesa.ids import new_id
from tests.contacts.conftest import running_contacts
from tests.followup.conftest import (
    RecordingNotifier,
    first_promise_of,
    followup_env,
    make,
    start_followup,
)
from tests.interactions.conftest import (
    a_promise,
    an_interaction,
    contact_in_both,
    record,
    running_interactions,
)
from tests.support import bearer, eventually


async def scrape(nats: NatsServer, data: Path) -> str:
    """The services' metrics text once each kind of work has been done at least once."""
    clock = ManualClock()
    async with (
        running_contacts(nats, data, clock) as contacts,
        running_interactions(nats, data, clock) as interactions,
    ):
        down = RecordingNotifier(name="down", failing=True)
        followup = await start_followup(nats, followup_env(nats, data), clock, notifiers=[down])
        try:
            contact_id = await contact_in_both(contacts, interactions, "metrics@example.com")
            await eventually(lambda: followup.app.store.profile(contact_id))
            interaction = await record(
                interactions,
                an_interaction(contact_id, promises=[a_promise(within=timedelta(days=2))]),
            )
            [promised] = interaction.promises

            promise = await first_promise_of(followup, contact_id)
            assert promise.id == promised.id
            # A reminder a day before it is due, a minute late.
            due = promise.due_at.ToDatetime().replace(tzinfo=clock.now().tzinfo)
            clock.set(due - timedelta(hours=24) + timedelta(minutes=1))
            await followup.scheduler.drain()
            # An undecodable event: dead-lettered by the follow-up service's consumer.
            event_id = new_id()
            await contacts.bus.js.publish(
                f"crm.contacts.erased.{event_id}",
                b"\xff\xff\xff",
                headers={"ce-id": event_id, "Nats-Msg-Id": event_id},
            )

            async def dead_lettered() -> bool:
                letters = await followup.store.dead_letters()
                return any(letter["event_id"] == event_id for letter in letters)

            await eventually(dead_lettered)
            # Another promise, left open past its due time: open and overdue.
            await make(followup, due_in=timedelta(minutes=30), contact_id=contact_id)
            clock.advance(timedelta(hours=1))
            await followup.scheduler.drain()
            await followup.stub.KeepPromise(
                followup_pb.KeepPromiseRequest(
                    id=promise.id,
                    evidence=promise_pb2.Evidence(interaction_id=interaction.id, note="paid"),
                ),
                metadata=bearer(),
            )
            await refresh_gauges(contacts.runtime, interactions.runtime, followup.runtime)
        finally:
            await followup.stop()
    return generate_latest(REGISTRY).decode()


async def refresh_gauges(*runtimes: object) -> None:
    """Sets every gauge a periodic worker keeps, now, rather than waiting for its period."""
    for runtime in runtimes:
        refresh = getattr(runtime, "refresh_metrics", None)
        if refresh is not None:
            await refresh()


def metric_names(text: str) -> set[str]:
    """The metric families in an exposition text (histograms by their base name; counters as
    exposed, with `_total`)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names
