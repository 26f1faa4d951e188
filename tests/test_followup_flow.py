"""End to end: a complaint recorded in the interactions service becomes a tracked promise in the
follow-up service, reminders fire as the clock moves, and three replicas share the work. Each
test runs on SQLite and on MongoDB (tests/whole_system.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from devtools.natsserver import NatsServer
from followup.domain.reminders import Outcome, ReminderKind
from promesa.clock import ManualClock
from tests import whole_system
from tests.contacts.conftest import RunningContacts
from tests.followup.conftest import (
    RecordingNotifier,
    RunningFollowup,
    a_promise,
    first_promise_of,
    followup_env,
    start_followup,
)
from tests.interactions.conftest import (
    RunningInteractions,
    an_interaction,
    contact_in_both,
    record,
)
from tests.interactions.conftest import a_promise as promised_in_interaction
from tests.support import bearer, eventually
from tests.whole_system import Backend

# The three services on the backend of the test's parameter, [sqlite] or [mongodb].
backend = whole_system.backend
contacts_service = whole_system.contacts_service
interactions_beside_contacts = whole_system.interactions_beside_contacts
followup_beside = whole_system.followup_beside

# Per backend: (reminders, claimed by the dying replica, creates sent at once, reminders a
# replica claims per tick). SecantusDB, a server written in Python, is far slower per
# transaction than mongod, and every transaction that emits events takes its turn at the
# database's one outbox counter, so on it the proof runs on fewer reminders, in small waves:
# the same races (a dead replica's lease, two live ones claiming at once), fewer rows.
PACE = {
    "sqlite": (1000, 100, 100, 100),
    "mongodb": (1000, 100, 100, 100),
    "secantus": (120, 12, 4, 30),
}


async def test_a_complaint_with_a_promise_is_reminded_kept_and_counted_on_time(
    contacts_service: RunningContacts,
    interactions_beside_contacts: RunningInteractions,
    followup_beside: RunningFollowup,
) -> None:
    followup, clock = followup_beside, contacts_service.clock
    # Given a contact the other services know about,
    contact_id = await contact_in_both(
        contacts_service, interactions_beside_contacts, "flow@example.com"
    )
    await eventually(lambda: followup.app.store.profile(contact_id))
    # when an agent records a complaint with a promise due in two days,
    interaction = await record(
        interactions_beside_contacts,
        an_interaction(contact_id, promises=[promised_in_interaction(within=timedelta(days=2))]),
    )
    [promised] = interaction.promises

    # then the promise is tracked in the follow-up service under the same id,
    promise = await first_promise_of(followup, contact_id)
    assert promise.id == promised.id
    assert promise.source_interaction_id == interaction.id
    assert promise.owner_id == interaction.agent_id
    assert promise.due_at == promised.due_at

    # the owner is reminded a day and an hour before it is due,
    for ahead in (timedelta(hours=24), timedelta(hours=1)):
        clock.set(promise.due_at.ToDatetime().replace(tzinfo=clock.now().tzinfo) - ahead)
        assert await followup.scheduler.tick() == 1
    assert [kind for _, kind, _ in followup.recorder.sent] == ["BEFORE_DUE_24H", "BEFORE_DUE_1H"]

    # and once it is kept, in time, the statistics say so.
    clock.advance(timedelta(minutes=30))
    await followup.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(
            id=promise.id,
            evidence=promise_pb2.Evidence(interaction_id=interaction.id, note="refund paid"),
        ),
        metadata=bearer(),
    )
    stats = await followup.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_OWNER),
        metadata=bearer(),
    )
    [row] = [r for r in stats.stats if r.key == interaction.agent_id]
    assert (row.made, row.kept, row.kept_on_time_percent) == (1, 1, 100.0)
    clock.advance(timedelta(days=2))
    assert await followup.scheduler.tick() == 0  # kept: no reminder at due, no escalation


async def test_three_replicas_deliver_each_of_1000_reminders_exactly_once(
    backend: Backend, nats_server: NatsServer, tmp_path: Path
) -> None:
    clock = ManualClock()
    recorder = RecordingNotifier()
    reminders, orphaned_count, wave, batch = PACE["secantus" if backend.secantus else backend.store]
    # One store for the three, as three pods share one database.
    env = followup_env(
        nats_server, tmp_path, CRM_REMINDER_BATCH=str(batch), **backend.env("followup")
    )
    replicas = [await start_followup(nats_server, env, clock, recorder=recorder) for _ in range(3)]
    a, b, c = replicas
    try:
        # Given 1,000 promises (fewer on SecantusDB) through the replicas, due in half an hour,
        for start in range(0, reminders, wave):
            await asyncio.gather(
                *(
                    replicas[i % 3].stub.CreatePromise(
                        followup_pb.CreatePromiseRequest(
                            promise=a_promise(
                                clock.now() + timedelta(minutes=30), contact_id=f"c-{i}"
                            )
                        ),
                        metadata=bearer(),
                    )
                    for i in range(start, min(start + wave, reminders))
                )
            )
        clock.advance(timedelta(minutes=30))

        # when one replica claims a batch and dies before sending it, another is stopped
        # mid-way, and the replicas race for the rest,
        lease = timedelta(seconds=float(env.get("CRM_REMINDER_LEASE_SECONDS", "60")))
        orphaned = await c.app.store.claim_due(clock.now(), clock.now() + lease, orphaned_count)
        assert len(orphaned) == orphaned_count
        await c.stop()
        first = await asyncio.gather(a.scheduler.tick(), b.scheduler.tick())
        await b.stop()
        while await a.scheduler.tick():
            pass
        assert sum(first) > 0
        early = recorder.counts()
        twice = sorted(r for r, n in early.items() if n > 1)
        stolen = sorted({o.delivery.id for o in orphaned} & set(early))
        assert (len(recorder.sent), twice, stolen) == (reminders - orphaned_count, [], []), (
            "sent, sent more than once, sent while the dead replica's lease still held"
        )
        # then the dead replica's claims are taken over once its lease has ended,
        clock.advance(lease)
        assert await a.scheduler.drain() == orphaned_count

        # and every reminder was delivered exactly once, and recorded once.
        counts = recorder.counts()
        assert len(counts) == reminders and set(counts.values()) == {1}
        assert {c.delivery.id for c in orphaned} <= set(counts)
        records = await a.app.store.deliveries("", "", None, 10_000)
        at_due = [r for r in records if r.kind is ReminderKind.AT_DUE]
        assert len(at_due) == reminders
        assert all(r.outcome is Outcome.DELIVERED and r.rounds == 1 for r in at_due)
    finally:
        for replica in replicas:
            await replica.stop()
