"""Fixtures that run the follow-up service in-process: real gRPC, real SQLite, real NATS."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import promise_pb2
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.bootstrap import FollowupApp, build
from followup.domain.model import Promise
from followup.domain.reminders import ReminderDelivery
from followup.ports import Notifier
from followup.reminding import ReminderScheduler
from followup.settings import FollowupSettings
from promesa.bus import EventBus
from promesa.clock import ManualClock
from promesa.protos import to_timestamp
from promesa.runtime import Runtime
from promesa.settings import Env
from tests.support import TOKENS, bearer, eventually


@dataclass
class RecordingNotifier:
    """Stands in for a front-office endpoint: counts every reminder it is handed."""

    name: str = "recorder"
    sent: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kind, recipient)
    failing: bool = False

    async def send(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> None:
        if self.failing:
            raise ConnectionError("recorder is down")
        self.sent.append((delivery.id, delivery.kind.value, delivery.recipient_id))

    def counts(self) -> Counter[str]:
        return Counter(reminder_id for reminder_id, _, _ in self.sent)


@dataclass
class RunningFollowup:
    app: FollowupApp
    clock: ManualClock
    channel: grpc.aio.Channel
    stub: followup_grpc.FollowupServiceAsyncStub
    bus: EventBus
    recorder: RecordingNotifier
    stopped: bool = False

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    @property
    def store(self) -> SqlitePromiseStore:
        """The embedded store these tests run on (CRM_STORE is not set)."""
        store = self.app.store
        assert isinstance(store, SqlitePromiseStore)
        return store

    @property
    def scheduler(self) -> ReminderScheduler:
        return self.app.scheduler

    async def stop(self) -> None:
        """Idempotent, so a test can stop a replica mid-way and still clean up after a failure."""
        if self.stopped:
            return
        self.stopped = True
        await self.channel.close(None)
        await self.bus.close()
        await self.runtime.stop()


class Mailbox:
    """An SMTP server's inbox (aiosmtpd handler): every message with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 Message accepted for delivery"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def followup_env(nats: NatsServer, data: Path, **extra: str) -> dict[str, str]:
    return {
        "CRM_NATS_URL": nats.url_for("followup"),  # the service as its own NATS user
        "CRM_SQLITE_PATH": str(data / "followup.db"),
        "CRM_GRPC_HOST": "127.0.0.1",
        "CRM_GRPC_PORT": "0",
        "CRM_METRICS_PORT": "0",
        "CRM_API_TOKENS": TOKENS,
        "CRM_SHUTDOWN_GRACE_SECONDS": "1",
        "CRM_CONSUMER_ACK_WAIT_SECONDS": "2",
        "CRM_CONSUMER_MAX_DELIVER": "3",
        "CRM_SCHEDULER_ENABLED": "false",  # tests tick the scheduler themselves
        "CRM_TEAM_SUPERVISORS": "madrid=sup-sam,*=sup-default",
        "CRM_MAX_HANDOFFS": "2",
        **extra,
    }


async def start_followup(
    nats: NatsServer,
    env: dict[str, str],
    clock: ManualClock,
    notifiers: Sequence[Notifier] = (),
    recorder: RecordingNotifier | None = None,
) -> RunningFollowup:
    recorder = recorder or RecordingNotifier()
    settings = FollowupSettings.from_env(Env(env))
    app = await build(settings, clock, extra_notifiers=[*notifiers, recorder])
    port = await app.runtime.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    bus = EventBus(nats.url, name="followup-test")
    await bus.connect()
    stub = followup_grpc.FollowupServiceStub(channel)
    return RunningFollowup(app, clock, channel, stub, bus, recorder)


@pytest.fixture
async def followup_service(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningFollowup]:
    svc = await start_followup(nats_server, followup_env(nats_server, tmp_path), ManualClock())
    yield svc
    await svc.stop()


def a_promise(due_at: datetime, **overrides: object) -> promise_pb2.Promise:
    fields: dict[str, object] = {
        "contact_id": "contact-1",
        "text": "Call back with the refund reference",
        "kind": promise_pb2.PROMISE_KIND_CALL_BACK,
        "channel": promise_pb2.CHANNEL_PHONE,
        "owner_id": "agent-ana",
        "team": "madrid",
        "priority": promise_pb2.PRIORITY_HIGH,
        "due_at": to_timestamp(due_at),
    }
    fields.update(overrides)
    return promise_pb2.Promise(**fields)  # type: ignore[arg-type]


async def make(
    svc: RunningFollowup,
    *,
    due_in: timedelta = timedelta(hours=48),
    request_id: str = "",
    token: str = "",
    **overrides: object,
) -> promise_pb2.Promise:
    reply = await svc.stub.CreatePromise(
        followup_pb.CreatePromiseRequest(
            promise=a_promise(svc.clock.now() + due_in, **overrides), request_id=request_id
        ),
        metadata=bearer(token) if token else bearer(),
    )
    return reply.promise


async def first_promise_of(followup: RunningFollowup, contact_id: str) -> promise_pb2.Promise:
    """The contact's first promise once the follow-up service tracks it (an interaction's
    promise arrives through its event, a moment after the interaction was recorded)."""

    async def tracked() -> promise_pb2.Promise | None:
        reply = await followup.stub.ListPromises(
            followup_pb.ListPromisesRequest(contact_id=contact_id), metadata=bearer()
        )
        return reply.promises[0] if reply.promises else None

    return await eventually(tracked)
