"""Reminders go out on time and once, whatever a receiver does: slow, hanging or back.

Two schedulers (two replicas) share one SQLite file and run as the service runs them (a
periodic sweep), on the real clock, against real HTTP receivers on loopback. Leases and
timeouts are scaled down (a lease of 2 s) so that a receiver taking 0.4 s per POST is slow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from followup.adapters import event_codec
from followup.adapters.notifiers import IDEMPOTENCY_HEADER, WebhookNotifier
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.breaker import BreakerState, CircuitBreaker
from followup.domain import lifecycle
from followup.domain.model import Promise, PromiseKind
from followup.domain.reminders import (
    DeliveryAttempt,
    Outcome,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    delivery,
)
from followup.ports import Change
from followup.reminding import ReminderScheduler
from followup.settings import LaneSettings, WebhookSettings
from promesa.clock import ManualClock, SystemClock
from promesa.workers import Periodic
from tests.support import eventually

LEASE = timedelta(seconds=2)
KEY = "s3cret"


@dataclass
class Receiver:
    """A webhook endpoint: takes `delay` per POST; while `down`, hangs past any timeout and
    answers 503 without acting. Records each reminder it acted on, with the time."""

    delay: float = 0.0
    down: bool = False
    acted: list[tuple[str, float]] = field(default_factory=list)
    arrived: int = 0  # requests received, answered or not
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(key for key, _ in self.acted)

    def times(self) -> dict[str, float]:
        with self.lock:
            return dict(self.acted)


@contextmanager
def receiving(state: Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the notifier's pool expects

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.arrived += 1
            if state.down:
                time.sleep(1.0)
                status = 503
            else:
                time.sleep(state.delay)
                with state.lock:
                    state.acted.append((self.headers[IDEMPOTENCY_HEADER], time.time()))
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # the listen backlog: 5 by default, fewer than the senders

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/reminders"
    finally:
        server.shutdown()
        server.server_close()


class OtherWebhook(WebhookNotifier):
    """A second webhook, to another receiver: a notifier of its own, with its own lane."""

    name = "other"


def webhook(url: str, cls: type[WebhookNotifier] = WebhookNotifier) -> WebhookNotifier:
    settings = WebhookSettings(
        url=url, secret=KEY, attempts=1, backoff_seconds=0, timeout_seconds=1.0
    )
    return cls(settings, concurrency=4)


def due_now(n: int, policy: ReminderPolicy, at: datetime) -> Change:
    """`n` promises, each with its hour-before reminder due at `at`."""
    change = Change()
    for i in range(n):
        p = lifecycle.created(
            Promise(
                id=f"p{i:03}",
                contact_id=f"c{i:03}",
                text="Call back",
                kind=PromiseKind.CALL_BACK,
                owner_id="ana",
                team="madrid",
                created_by="ana",
                due_at=at + timedelta(hours=1),
                created_at=at - timedelta(hours=1),
            )
        )
        change.saves.append((p, 0))
        change.replans[p.id] = [
            delivery(p, ReminderKind.BEFORE_DUE_1H, at, "ana", policy, f"r{i:03}")
        ]
    return change


@asynccontextmanager
async def replicas(
    path: Path, policy: ReminderPolicy, urls: Sequence[str], lanes: LaneSettings
) -> AsyncIterator[list[ReminderScheduler]]:
    """Two follow-up replicas sweeping the same file, as the service does, until the end;
    each with its own webhook notifiers (`webhook` to the first URL, `other` to the second)."""
    clock = SystemClock()
    stores = [SqlitePromiseStore(path, event_codec.encode, clock) for _ in range(2)]
    kinds = [WebhookNotifier, OtherWebhook]
    notifiers = [
        [webhook(url, kind) for url, kind in zip(urls, kinds, strict=False)] for _ in stores
    ]
    schedulers = [
        ReminderScheduler(
            store,
            clock,
            policy=policy,
            notifiers=mine,
            lease=LEASE,
            lanes=lanes,
            deadlines={n.name: timedelta(seconds=1.2) for n in mine},
        )
        for store, mine in zip(stores, notifiers, strict=True)
    ]
    workers = [
        Periodic("followup", f"replica-{i}", s.sweep, 0.02) for i, s in enumerate(schedulers)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield schedulers
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        for s in schedulers:
            await s.close()
        for store in stores:
            await store.close()
        for n in (n for mine in notifiers for n in mine):
            await n.aclose()


async def records(store: SqlitePromiseStore) -> list[ReminderDelivery]:
    return list(await store.deliveries("", "", None, 1000))


def nats_lateness(r: ReminderDelivery) -> float:
    [nats] = [a for a in r.attempts if a.notifier == "nats"]
    return (nats.attempted_at - r.scheduled_at).total_seconds()


async def test_two_replicas_post_every_reminder_once_and_on_time_to_a_slow_receiver(
    tmp_path: Path,
) -> None:
    # Given 60 reminders due now, and a receiver that takes 0.4 s per POST: more than a
    # lease's worth at today's batch of 200,
    hook = Receiver(delay=0.4)
    with receiving(hook) as url:
        policy = ReminderPolicy(notifiers=("nats", "webhook"), retry_base=timedelta(seconds=1))
        path = tmp_path / "followup.db"
        at = SystemClock().now()
        seed = SqlitePromiseStore(path, event_codec.encode, SystemClock())
        await seed.commit(due_now(60, policy, at))

        # when two replicas sweep,
        async with replicas(path, policy, [url], LaneSettings(concurrency=4)):

            async def all_posted() -> bool:
                return len(hook.counts()) == 60

            await eventually(all_posted, timeout=15)
            done = await eventually(lambda: _all_done(seed), timeout=5)
        await seed.close()

    # then each reminder was posted exactly once, none long after it fell due,
    assert set(hook.counts().values()) == {1}
    late = max(t - at.timestamp() for t in hook.times().values())
    assert late < 10, f"the last POST came {late:.1f} s after its reminder fell due"
    # and the NATS reminders did not wait for the receiver.
    assert all(r.outcome is Outcome.DELIVERED and r.remaining == () for r in done)
    assert max(nats_lateness(r) for r in done) < 1.5


async def _all_done(store: SqlitePromiseStore) -> list[ReminderDelivery] | None:
    found = await records(store)
    return found if all(r.next_attempt_at is None for r in found) else None


async def test_a_claim_outlasting_its_lease_is_renewed_not_taken_over(tmp_path: Path) -> None:
    # Given a receiver that answers after longer than the lease,
    hook = Receiver(delay=2.5)
    with receiving(hook) as url:
        settings = WebhookSettings(
            url=url, secret=KEY, attempts=1, backoff_seconds=0, timeout_seconds=4
        )
        notifier = WebhookNotifier(settings, concurrency=2)
        policy = ReminderPolicy(notifiers=("nats", "webhook"))
        path = tmp_path / "followup.db"
        at = SystemClock().now()
        seed = SqlitePromiseStore(path, event_codec.encode, SystemClock())
        await seed.commit(due_now(2, policy, at))
        clock = SystemClock()
        stores = [SqlitePromiseStore(path, event_codec.encode, clock) for _ in range(2)]
        first, second = (
            ReminderScheduler(
                store,
                clock,
                policy=policy,
                notifiers=[notifier],
                lease=LEASE,
                deadlines={"webhook": timedelta(seconds=4)},
            )
            for store in stores
        )
        # when one replica is still sending while the other keeps claiming,
        sending = asyncio.create_task(first.tick())

        async def posting() -> bool:
            return hook.arrived == 2

        await eventually(posting)

        async def other_replica() -> int:
            taken = 0
            while not sending.done():
                taken += await second.tick()
                await asyncio.sleep(0.05)  # the other replica's sweep interval
            return taken

        taken_over = await other_replica()
        completed = await sending
        for store in stores:
            await store.close()
        await notifier.aclose()
        found = await records(seed)
        await seed.close()

    # then the holder kept its claims by renewing them: each reminder was posted once.
    assert (completed, taken_over) == (2, 0)
    assert hook.counts() == {"r000": 1, "r001": 1}
    assert all(r.outcome is Outcome.DELIVERED and r.remaining == () for r in found)


async def test_a_dead_receiver_delays_neither_nats_nor_another_notifier_and_is_retried_later(
    tmp_path: Path,
) -> None:
    # Given a receiver that hangs (down) and another that answers at once,
    dead, healthy = Receiver(down=True), Receiver()
    with receiving(dead) as dead_url, receiving(healthy) as healthy_url:
        policy = ReminderPolicy(
            notifiers=("nats", "webhook", "other"),
            retry_base=timedelta(seconds=0.5),
            max_attempts=8,
        )
        lanes = LaneSettings(
            concurrency=4, breaker_failures=3, breaker_cool_down=timedelta(seconds=0.5)
        )
        path = tmp_path / "followup.db"
        at = SystemClock().now()
        seed = SqlitePromiseStore(path, event_codec.encode, SystemClock())
        await seed.commit(due_now(40, policy, at))

        async with replicas(path, policy, [dead_url, healthy_url], lanes):
            # when the replicas sweep, the NATS reminders and the healthy receiver's are on
            # time, and the dead receiver's are failed fast (its circuit opened) and waiting
            # for a retry, with no claim held on them;
            async def healthy_done() -> list[ReminderDelivery] | None:
                found = await records(seed)
                ok = all(r.remaining == ("webhook",) for r in found)
                return found if ok and len(healthy.counts()) == 40 else None

            waiting = await eventually(healthy_done, timeout=10)
            assert set(healthy.counts().values()) == {1}
            assert max(t - at.timestamp() for t in healthy.times().values()) < 3
            assert max(nats_lateness(r) for r in waiting) < 1.5

            async def circuit_opened() -> list[DeliveryAttempt] | None:
                """Under load a lane puts off more (no attempt counted) before its circuit
                opens: wait for that, not for a moment."""
                return [
                    a
                    for r in await records(seed)
                    for a in r.attempts
                    if a.notifier == "webhook" and a.error.startswith("circuit open")
                ] or None

            assert await eventually(circuit_opened, timeout=10)  # attempts failed at once,
            assert dead.arrived < 20  # so most reminders never waited on the dead receiver
            assert all(r.next_attempt_at is not None for r in waiting)
            assert all(r.outcome is Outcome.DELIVERED for r in waiting)

            # and when the receiver is back, each waiting reminder reaches it once.
            dead.down = False

            async def recovered() -> bool:
                return len(dead.counts()) == 40

            await eventually(recovered, timeout=12)
            done = await eventually(lambda: _all_done(seed), timeout=5)
        await seed.close()

    assert set(dead.counts().values()) == {1}
    assert all(r.remaining == () for r in done)


class Gate:
    """A notifier that sends only when let through, taking `pace` seconds once it is: a
    receiver as slow as the test wants."""

    name = "gate"

    def __init__(self, pace: float) -> None:
        self.open = asyncio.Event()
        self.pace = pace
        self.arrived: list[str] = []

    async def send(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> None:
        self.arrived.append(delivery.id)
        await self.open.wait()
        await asyncio.sleep(self.pace)  # the receiver's own time, not a wait for the test


async def test_a_full_lane_puts_off_what_it_cannot_take_and_leaves_the_rest_to_others(
    tmp_path: Path,
) -> None:
    # Given a notifier lane with two slots that has timed a send (30 ms: a lease of 0.2 s
    # leaves room for one round), and twelve more reminders due,
    clock = ManualClock()
    store = SqlitePromiseStore(tmp_path / "followup.db", event_codec.encode, clock)
    policy = ReminderPolicy(notifiers=("nats", "gate"))
    gate = Gate(pace=0.03)
    scheduler = ReminderScheduler(
        store,
        clock,
        policy=policy,
        notifiers=[gate],
        lease=timedelta(seconds=0.2),
        lanes=LaneSettings(concurrency=2),
    )
    gate.open.set()
    await store.commit(due_now(1, policy, clock.now()))
    assert await scheduler.tick() == 1
    gate.open.clear()
    first = {r.id for r in await records(store)}
    more = due_now(13, policy, clock.now())
    more.saves, more.replans = (
        more.saves[1:],
        {k: v for k, v in more.replans.items() if k != "p000"},
    )
    await store.commit(more)

    # when a tick runs while the notifier does not answer,
    tick = asyncio.create_task(scheduler.tick())

    async def sending() -> list[ReminderDelivery] | None:
        found = [r for r in await records(store) if r.id not in first]
        busy = len(gate.arrived) == 3 and sum(bool(r.attempts) for r in found) == 10
        return found if busy else None

    found = await eventually(sending)

    # then it claimed what the lane can take plus four rounds more: the NATS reminder of
    # each is recorded at once; the two admitted keep their claims for the gate, the eight
    # others are put off for it (no attempt made, no round counted), and the last two are
    # left due, for a replica with room.
    taken = [r for r in found if r.attempts]
    assert all(r.attempts[0].notifier == "nats" and r.announced for r in taken)
    assert all(r.remaining == ("gate",) and r.rounds == 0 for r in taken)
    put_off = [r for r in taken if r.id not in gate.arrived]
    assert len(put_off) == 8
    assert all(r.next_attempt_at and r.next_attempt_at > clock.now() for r in put_off)
    left = await store.claim_due(clock.now(), clock.now() + LEASE, 10)
    assert len(left) == 2 and not any(c.delivery.attempts for c in left)
    await store.commit(Change(completed=list(left)))  # given back as they were

    # and once the notifier answers, its round completes, and the rest go as they fall due.
    gate.open.set()
    assert await tick == 10
    for _ in range(20):
        clock.advance(timedelta(seconds=1))
        await scheduler.drain()
    done = await records(store)
    assert all(r.remaining == () and r.rounds == 1 for r in done)
    assert sorted(gate.arrived) == sorted(r.id for r in done)
    await scheduler.close()
    await store.close()


def test_an_open_circuit_refuses_at_once_then_lets_one_trial_through() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock, failures=2, cool_down=timedelta(seconds=30))
    assert breaker.admit() and not breaker.failed("HTTP 503")
    assert breaker.admit() and breaker.failed("HTTP 503")  # the second in a row opens it
    assert state(breaker) is BreakerState.OPEN and not breaker.admit()

    clock.advance(timedelta(seconds=30))
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.admit() and not breaker.admit()  # one trial at a time
    assert breaker.failed("timeout")  # the trial failed: open for another cool-down
    assert not breaker.admit()

    clock.advance(timedelta(seconds=30))
    assert breaker.admit()
    breaker.succeeded()
    assert state(breaker) is BreakerState.CLOSED and breaker.admit() and breaker.admit()


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read afresh each time (the clock moved), which a property check would hide from mypy."""
    return breaker.state
