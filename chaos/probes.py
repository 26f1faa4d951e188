"""What the suite observes from outside the services: their Prometheus counters, their stores'
outbox and dead letters (read-only), the reminders a plain core-NATS subscriber sees, and the
POSTs a webhook receiver gets."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from pymongo import MongoClient

from chaos.cluster import Cluster, ServiceProcess
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import reminder_pb2

REDELIVERED = "promesa_events_redelivered_total"
DEAD_LETTERED = "promesa_dead_letters_total"
CONSUMED = "promesa_events_consumed_total"
COUNTERS = (REDELIVERED, DEAD_LETTERED, CONSUMED)


def parse_counters(text: str, names: Iterable[str] = COUNTERS) -> Counter[str]:
    """Sums each named counter over its labels in a Prometheus text exposition."""
    wanted = set(names)
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        name = metric.split("{", 1)[0]
        if name in wanted:
            with contextlib.suppress(ValueError):
                found[name] += int(float(value))
    return found


class Metrics:
    """Counters summed over every incarnation of every process: a process is scraped right
    before it is killed, and what its last scrape said is kept once it is gone."""

    def __init__(self) -> None:
        self._retired: Counter[str] = Counter()
        self._live: dict[tuple[str, int], Counter[str]] = {}

    async def scrape(self, proc: ServiceProcess) -> None:
        if not proc.running or proc.stopped:
            return
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                reply = await client.get(proc.metrics_url)
        except httpx.HTTPError:
            return
        self._live[(proc.name, proc.incarnations)] = parse_counters(reply.text)

    async def consumed(self, proc: ServiceProcess) -> int:
        """Events this incarnation has finished handling (any outcome); -1 if it does not
        answer."""
        if not proc.running or proc.stopped:
            return -1
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                reply = await client.get(proc.metrics_url)
        except httpx.HTTPError:
            return -1
        return parse_counters(reply.text, (CONSUMED,))[CONSUMED]

    def retire(self, proc: ServiceProcess) -> None:
        """After a kill: what this incarnation counted is kept, and never scraped again."""
        last = self._live.pop((proc.name, proc.incarnations), None)
        if last:
            self._retired.update(last)

    async def totals(self, cluster: Cluster) -> Counter[str]:
        await asyncio.gather(*(self.scrape(p) for p in cluster.all()))
        total = Counter(self._retired)
        for counts in self._live.values():
            total.update(counts)
        return total


@dataclass(frozen=True)
class DeadLetterRow:
    consumer: str
    event_id: str
    subject: str
    error: str


class StoreProbe:
    """Read-only looks into a service's own store: how many events wait in its outbox, and
    its dead letters. Table and collection names are the platform's (promesa.sqlite/mongo)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._mongo: MongoClient[dict[str, object]] | None = None
        if cluster.mongo is not None:
            self._mongo = MongoClient(
                cluster.mongo.uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=10_000
            )

    def close(self) -> None:
        if self._mongo is not None:
            self._mongo.close()

    def _sqlite(self, service: str) -> sqlite3.Connection:
        path = Path(self._cluster.one(service).env["CRM_SQLITE_PATH"])
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.row_factory = sqlite3.Row
        return conn

    def _database(self, service: str) -> str:
        return self._cluster.one(service).env["CRM_MONGODB_DATABASE"]

    def outbox_backlog(self, service: str) -> int:
        if self._mongo is not None:
            return int(self._mongo[self._database(service)]["outbox"].count_documents({}))
        with contextlib.closing(self._sqlite(service)) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def dead_letters(self, service: str) -> list[DeadLetterRow]:
        if self._mongo is not None:
            docs = self._mongo[self._database(service)]["dead_letters"].find({}, {"data": 0})
            return [
                DeadLetterRow(
                    str(d.get("consumer", "")),
                    str(d.get("event_id", "")),
                    str(d.get("subject", "")),
                    str(d.get("error", "")),
                )
                for d in docs
            ]
        with contextlib.closing(self._sqlite(service)) as conn:
            rows = conn.execute(
                "SELECT consumer, event_id, subject, error FROM dead_letters ORDER BY id"
            ).fetchall()
        return [DeadLetterRow(r[0], r[1], r[2], r[3]) for r in rows]


@dataclass
class SeenReminder:
    reminder_id: str
    event_id: str
    promise_id: str
    scheduled_at: datetime | None
    received_at: datetime


@dataclass
class ReminderWatch:
    """A plain (core NATS, not JetStream) subscriber on `crm.followup.>`, as the README invites
    a front-office app to run on reminders: every copy it gets is kept, reminders decoded."""

    url: str
    seen: list[SeenReminder] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # ce-id of every follow-up event, in order
    errors: int = 0
    _nc: Client | None = None

    async def start(self) -> None:
        self._nc = await nats.connect(
            self.url,
            name="chaos-reminder-watch",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
        )
        await self._nc.subscribe("crm.followup.>", cb=self._on_message)

    async def _on_error(self, exc: Exception) -> None:
        """While R4 has nats-server dead the client cannot reconnect: expected, counted."""
        self.errors += 1

    async def _on_message(self, msg: Msg) -> None:
        now = datetime.now(UTC)
        self.events.append((msg.headers or {}).get("ce-id", ""))
        if not msg.subject.startswith("crm.followup.reminders."):
            return
        reminder = reminder_pb2.Reminder()
        try:
            reminder.ParseFromString(msg.data)
        except Exception:
            reminder = reminder_pb2.Reminder()
        scheduled = (
            reminder.scheduled_at.ToDatetime(tzinfo=UTC)
            if reminder.HasField("scheduled_at")
            else None
        )
        self.seen.append(
            SeenReminder(
                reminder.id,
                (msg.headers or {}).get("ce-id", ""),
                reminder.promise_id,
                scheduled,
                now,
            )
        )

    def duplicates_since(self, mark: int) -> Counter[str]:
        """Events seen more than once since `mark` (an index into `events`): ce-id -> copies."""
        copies = Counter(self.events[mark:])
        return Counter({event: n for event, n in copies.items() if n > 1})

    def for_promises(self, promise_ids: set[str]) -> list[SeenReminder]:
        return [s for s in self.seen if s.promise_id in promise_ids]

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


class WebhookReceiver:
    """An HTTP endpoint for the follow-up webhook notifier, counting POSTs by Idempotency-Key.
    `delay` makes it slow; `down()` closes its socket, so posts are refused, and `up()` opens
    it again on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.delay = 0.0
        self.posts: Counter[str] = Counter()  # answered
        self.arrived = 0  # requests read, answered or not (a slow answer is still in flight)
        self.first_post_at: dict[str, float] = {}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/reminders"

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                key = headers.get("idempotency-key", "")
                self.arrived += 1
                if self.delay:
                    await asyncio.sleep(self.delay)  # the receiver is slow: the fault itself
                self.posts[key] += 1
                self.first_post_at.setdefault(key, time.monotonic())
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # The receiver going down (or the run ending) with a connection open: the client
            # sees a reset, which is the fault being simulated.
            pass
        finally:
            writer.close()


# The services' event streams and what each holds (promesa.bus).
STREAMS = {
    "CRM_CONTACTS": "crm.contacts.>",
    "CRM_INTERACTIONS": "crm.interactions.>",
    "CRM_FOLLOWUP": "crm.followup.>",
}


async def stream_heads(url: str) -> dict[str, int]:
    """The last sequence of each event stream: where a scenario's messages start."""
    nc = await nats.connect(url, name="chaos-stream-heads")
    try:
        js = nc.jetstream()
        return {name: (await js.stream_info(name)).state.last_seq for name in STREAMS}
    finally:
        await nc.close()


async def stream_copies(url: str, after: dict[str, int]) -> tuple[Counter[str], int]:
    """Messages stored in each stream since `after` (its head when the scenario began), read
    headers only with an ordered consumer and counted by Nats-Msg-Id: returns the ids stored
    more than once (`stream:id` -> copies) and how many messages were read. A relay that
    publishes a batch again after a kill reuses each event's id, which JetStream drops within
    its duplicate window, so every id must be stored once. (R7's deliberate copies carry a
    fresh Nats-Msg-Id and do not count; messages without one, R6's poison, are skipped.)"""
    copies: Counter[str] = Counter()
    read = 0
    nc = await nats.connect(url, name="chaos-stream-copies")
    try:
        js = nc.jetstream()
        for name, first in after.items():
            last = (await js.stream_info(name)).state.last_seq
            if last <= first:
                continue
            sub = await js.subscribe(
                STREAMS[name],
                stream=name,
                ordered_consumer=True,
                headers_only=True,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first + 1
                ),
            )
            try:
                seen: Counter[str] = Counter()
                while True:
                    try:
                        msg = await sub.next_msg(timeout=5.0)
                    except NatsTimeoutError:
                        raise RuntimeError(
                            f"{name}: stream read stopped before sequence {last}"
                        ) from None
                    read += 1
                    msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
                    if msg_id:
                        seen[msg_id] += 1
                    if msg.metadata.sequence.stream >= last:
                        break
            finally:
                await sub.unsubscribe()
            copies.update({f"{name}:{i}": n for i, n in seen.items() if n > 1})
    finally:
        await nc.close()
    return copies, read


@dataclass(frozen=True)
class StreamedReminder:
    reminder_id: str
    promise_id: str
    replica: int


class ReminderStream:
    """StreamReminders held open as a front-office app holds it: on one follow-up replica,
    and when that replica dies (the stream fails), at once on another with `resume_after` =
    the last resume_token read. `move_to` hangs up and resumes on a chosen replica, so that a
    later kill of that replica cuts the stream again. Everything read is kept, in order."""

    def __init__(self, stubs: Sequence[Any], owner_id: str, metadata: Any) -> None:
        self._stubs = stubs
        self._owner = owner_id
        self._metadata = metadata
        self.read: list[StreamedReminder] = []
        self.last_token = ""
        self.replica = 0
        self.failovers: list[str] = []  # why each stream ended (code), in order
        self.moves = 0
        self._moving = False
        self._connected = asyncio.Event()
        self._inner: asyncio.Task[str] | None = None
        self._outer: asyncio.Task[None] | None = None

    async def start(self, replica: int, within: float = 20.0) -> None:
        self.replica = replica
        self._outer = asyncio.create_task(self._run())
        await self.connected(within)

    async def connected(self, within: float) -> None:
        await asyncio.wait_for(self._connected.wait(), within)

    async def move_to(self, replica: int, within: float = 20.0) -> None:
        """Hang up and resume on `replica` from the last token read."""
        self.replica = replica
        self.moves += 1
        self._moving = True
        self._connected.clear()
        if self._inner is not None:
            self._inner.cancel()
        await self.connected(within)

    async def _follow(self, replica: int) -> str:
        request = followup_pb.StreamRemindersRequest(
            owner_id=self._owner, resume_after=self.last_token
        )
        call = self._stubs[replica].StreamReminders(
            request, metadata=self._metadata, wait_for_ready=True
        )
        try:
            headers = await call.initial_metadata()  # the replica is listening from here on
            if not self.last_token:  # nothing read yet: resume from where this stream began
                self.last_token = dict(headers or ()).get("x-resume-token", "")
            self._connected.set()
            async for reply in call:
                self.read.append(
                    StreamedReminder(reply.reminder.id, reply.reminder.promise_id, replica)
                )
                self.last_token = reply.resume_token
            return "ended by the server"
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        finally:
            call.cancel()

    async def _run(self) -> None:
        while True:
            self._inner = asyncio.create_task(self._follow(self.replica))
            await asyncio.wait({self._inner})
            if self._moving:
                self._moving = False
                continue  # moved: self.replica is the new one
            self._connected.clear()
            self.failovers.append(f"replica {self.replica}: {self._inner.result()}")
            self.replica = (self.replica + 1) % len(self._stubs)
            await asyncio.sleep(0.05)  # both down: retry at a modest pace, not a hot loop

    def copies(self) -> Counter[str]:
        return Counter(r.reminder_id for r in self.read)

    async def close(self) -> None:
        for task in (self._outer, self._inner):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._outer, self._inner) if t is not None), return_exceptions=True
        )
