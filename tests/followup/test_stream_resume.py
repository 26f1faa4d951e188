"""StreamReminders shows each reminder once, whichever replica sent it, and resumes: an app that
reconnects with the resume token of the last reminder it read gets exactly what it missed.

Two follow-up replicas share one SQLite file and one nats-server, as two pods would; the app
streams from one of them, reconnects to the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from crm.followup.v1 import followup_service_pb2 as followup_pb
from devtools.natsserver import NatsServer
from followup import validation
from followup.adapters.event_codec import reminder_subject, reminders_of
from promesa.bus import FOLLOWUP_STREAM
from promesa.clock import ManualClock
from promesa.errors import InvalidArgumentError, Violations
from tests.followup.conftest import RunningFollowup, followup_env, make, start_followup
from tests.support import bearer, eventually, field_violations

DUE_IN = timedelta(minutes=30)


@dataclass
class App:
    """A front-office app streaming agent-ana's reminders: what it read, with the tokens."""

    call: grpc.aio.UnaryStreamCall[
        followup_pb.StreamRemindersRequest, followup_pb.StreamRemindersResponse
    ]
    read: list[followup_pb.StreamRemindersResponse] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, replica: RunningFollowup, resume_after: str = "") -> App:
        request = followup_pb.StreamRemindersRequest(
            owner_id="agent-ana", resume_after=resume_after
        )
        app = cls(replica.stub.StreamReminders(request, metadata=bearer()))
        app.task = asyncio.create_task(app._read())
        await app.call.initial_metadata()  # the server is listening now
        return app

    async def _read(self) -> None:
        async for reply in self.call:
            self.read.append(reply)

    def promise_ids(self) -> list[str]:
        return [r.reminder.promise_id for r in self.read]

    def reminder_ids(self) -> list[str]:
        return [r.reminder.id for r in self.read]

    async def holds(self, promise_id: str) -> bool:
        return promise_id in self.promise_ids()

    async def hang_up(self) -> None:
        self.call.cancel()
        assert self.task is not None
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def replicas(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[list[RunningFollowup]]:
    clock = ManualClock()
    env = followup_env(nats_server, tmp_path)  # one database for the two
    started = [await start_followup(nats_server, env, clock) for _ in range(2)]
    yield started
    for replica in started:
        await replica.stop()


async def fall_due(replicas: list[RunningFollowup], count: int) -> list[str]:
    """`count` of agent-ana's promises, made through both replicas, fall due; both replicas
    sweep at once and publish; returns the promise ids in the order they were made."""
    made = [
        (await make(replicas[i % 2], due_in=DUE_IN, contact_id=f"c-{i}")).id for i in range(count)
    ]
    replicas[0].clock.advance(DUE_IN)
    sent = await asyncio.gather(*(r.scheduler.drain() for r in replicas))
    assert sum(sent) == count
    await asyncio.gather(*(r.runtime.parts.relay.flush() for r in replicas))
    return made


async def everything_read_before(app: App, replicas: list[RunningFollowup]) -> None:
    """One more reminder falls due and reaches the app: the stream is ordered, so the app has
    read everything sent before it."""
    (sentinel,) = await fall_due(replicas, 1)
    await eventually(lambda: app.holds(sentinel))
    assert app.promise_ids()[-1] == sentinel


async def test_a_streaming_app_sees_each_reminder_once_whichever_replica_sends_it(
    replicas: list[RunningFollowup],
) -> None:
    a, b = replicas
    app = await App.connect(a)
    try:
        # When reminders made through both replicas fall due and both sweep and publish,
        made = await fall_due(replicas, 6)
        await eventually(lambda: _holds_all(app, made))
        # and a relay publishes them all again (as one that died before deleting its rows would)
        sent = await reminders_in_stream(b, len(made))
        for msg in sent:
            ack = await b.bus.js.publish(msg.subject, msg.data, headers=msg.headers)
            assert ack.duplicate
        await everything_read_before(app, replicas)

        # then the app read each reminder once
        assert sorted(app.promise_ids()[:-1]) == sorted(made)
        assert len(set(app.reminder_ids())) == len(app.reminder_ids()) == 7
        tokens = [r.resume_token for r in app.read]
        assert all(tokens) and len(set(tokens)) == 7
    finally:
        await app.hang_up()


async def test_an_app_that_reconnects_with_its_last_token_gets_exactly_what_it_missed(
    replicas: list[RunningFollowup],
) -> None:
    a, b = replicas
    # Given an app that read two reminders on replica a, then lost its connection
    first = await App.connect(a)
    try:
        read_before = await fall_due(replicas, 2)
        await eventually(lambda: _holds_all(first, read_before))
    finally:
        await first.hang_up()
    last_token = first.read[-1].resume_token

    # when three more fall due while it is away, and it reconnects to replica b with that token
    missed = await fall_due(replicas, 3)
    again = await App.connect(b, resume_after=last_token)
    try:
        await everything_read_before(again, replicas)

        # then it gets the three it missed, in the order they were sent, and nothing twice
        assert sorted(again.promise_ids()[:3]) == sorted(missed)
        assert len(again.read) == 4
        assert not set(again.reminder_ids()) & set(first.reminder_ids())
    finally:
        await again.hang_up()


async def test_resuming_after_the_latest_reminder_replays_nothing(
    replicas: list[RunningFollowup],
) -> None:
    a, _ = replicas
    first = await App.connect(a)
    try:
        await everything_read_before(first, replicas)
    finally:
        await first.hang_up()

    again = await App.connect(a, resume_after=first.read[-1].resume_token)
    try:
        await everything_read_before(again, replicas)
        assert len(again.read) == 1
    finally:
        await again.hang_up()


async def test_a_token_older_than_the_streams_retention_starts_at_the_oldest_kept(
    replicas: list[RunningFollowup],
) -> None:
    a, _ = replicas
    first = await App.connect(a)
    try:
        made = await fall_due(replicas, 3)
        await eventually(lambda: _holds_all(first, made))
    finally:
        await first.hang_up()
    # Given the stream discarded everything before the last of two more reminders (retention,
    # or an erasure's purge)
    kept = await fall_due(replicas, 2)
    last = await a.bus.js.get_last_msg(FOLLOWUP_STREAM.name, reminder_subject("agent-ana", "c-1"))
    oldest_kept = last.seq
    assert oldest_kept is not None
    await a.bus.js.purge_stream(FOLLOWUP_STREAM.name, seq=oldest_kept)
    assert (await a.bus.js.stream_info(FOLLOWUP_STREAM.name)).state.first_seq == oldest_kept

    # When the app reconnects with its old token
    again = await App.connect(a, resume_after=first.read[0].resume_token)
    try:
        await everything_read_before(again, replicas)
        # Then it starts at the oldest reminder kept
        assert again.promise_ids()[:-1] == kept[-1:]
    finally:
        await again.hang_up()


async def test_a_token_from_past_the_streams_end_starts_at_new_reminders(
    replicas: list[RunningFollowup],
) -> None:
    a, _ = replicas
    await fall_due(replicas, 1)  # sent before the app connects: not for it

    app = await App.connect(a, resume_after=validation.resume_token(10**12))
    try:
        await everything_read_before(app, replicas)
        assert len(app.read) == 1
    finally:
        await app.hang_up()


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "not a token",
        "cmVtaW5kZXJAMQ==",  # a real token's bytes, padded: not the text the service gives
        "cmVtaW5kZXJAMQ!",  # with a character outside the alphabet, which decoders skip
        "cmVtaW5kZXJALTE",  # position -1: before the stream began
        "cGFnZUAx",  # "page@1": someone else's token
        "cmVtaW5kZXJA" + "OTk5" * 10,  # past any stream's end and then some
        "A" * 1000,
        "\x00",
    ],
)
async def test_a_token_the_service_did_not_give_is_invalid_argument(
    replicas: list[RunningFollowup], token: str
) -> None:
    a, _ = replicas
    call = a.stub.StreamReminders(
        followup_pb.StreamRemindersRequest(owner_id="agent-ana", resume_after=token),
        metadata=bearer(),
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(refused.value)) == {"resume_after"}


async def test_a_bad_token_and_a_bad_owner_are_named_in_one_answer(
    replicas: list[RunningFollowup],
) -> None:
    a, _ = replicas
    call = a.stub.StreamReminders(
        followup_pb.StreamRemindersRequest(owner_id="", resume_after="x"), metadata=bearer()
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()

    assert set(field_violations(refused.value)) == {"owner_id", "resume_after"}


def test_a_resume_token_reads_back_as_its_position() -> None:
    for position in (1, 7, 2**63 - 1):
        v = Violations()
        assert validation.check_resume_token(v, validation.resume_token(position)) == position
        assert not v
    v = Violations()
    assert validation.check_resume_token(v, "") is None
    assert not v
    assert validation.check_resume_token(v, validation.resume_token(2**63)) is None
    with pytest.raises(InvalidArgumentError):
        v.raise_if_any()


async def reminders_in_stream(replica: RunningFollowup, count: int) -> list[Msg]:
    """The first `count` of agent-ana's reminders in the stream, as stored."""
    sub = await replica.bus.js.pull_subscribe(
        reminders_of("agent-ana"),
        stream=FOLLOWUP_STREAM.name,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    found: list[Msg] = []
    try:
        while len(found) < count:
            found += await sub.fetch(count - len(found), timeout=5)
    finally:
        await sub.unsubscribe()
    return found


async def _holds_all(app: App, promise_ids: list[str]) -> bool:
    return set(promise_ids) <= set(app.promise_ids())


async def test_an_app_that_hangs_up_before_any_reminder_resumes_from_where_its_stream_began(
    replicas: list[RunningFollowup],
) -> None:
    a, b = replicas
    # Given an app streaming from one replica, which has read nothing yet
    app = await App.connect(a)
    headers = dict(await app.call.initial_metadata() or ())
    started = str(headers["x-resume-token"])
    # when it is cut off, and reminders are sent before it reconnects,
    await app.hang_up()
    made = await fall_due(replicas, 3)
    # then reconnecting with the token of its stream's start gets them all, once
    again = await App.connect(b, resume_after=started)
    try:
        await eventually(lambda: _holds_all(again, made))
        await everything_read_before(again, replicas)
        assert sorted(again.promise_ids()[:-1]) == sorted(made)
    finally:
        await again.hang_up()
