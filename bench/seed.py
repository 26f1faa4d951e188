"""Bulk seeding of SQLite stores through their own commit; contacts and the email lookup.

Seeds write a service's rows the way its adapter does (`store.commit` of the port's Change,
so the same rows and documents whatever the schema), in big transactions, without outbox rows:
what the service would hold after a long life, made in seconds rather than by replaying the
calls that made it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.progress import Progress, say
from bench.stats import Latencies, LatencySummary
from contacts.adapters import event_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.domain import lifecycle
from contacts.domain.model import Contact, ContactDetails
from contacts.ports import Change
from promesa.clock import ManualClock
from promesa.ids import new_id
from promesa.sqlite_store import SqliteStore

SEED_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 10_000


def seeded_email(index: int) -> str:
    """The email of the index-th seeded contact, so lookups are drawn without keeping a list."""
    return f"seed-{index:07d}@bench.example"


@dataclass(frozen=True)
class SeedResult:
    requested: int
    count: int
    seconds: float
    file_bytes: int
    time_limit_seconds: float
    index_seconds: float = 0.0  # of `seconds`, building indexes after the rows and flushing


def writer(store: SqliteStore) -> sqlite3.Connection:
    """The store's raw write connection (its group writer's, idle between commits), for the
    pragmas and checkpoints of a seed, while nothing else writes. Rows go through
    `store.commit`. A statement's cursor is read to the end at once: one left open on this
    connection would refuse the writer's next savepoint."""
    return store._writer.conn


def for_seeding(store: SqliteStore) -> None:
    """A throwaway file is written without fsync (the service reopens it with
    synchronous=FULL) and with a big cache, so random-order index inserts hit RAM."""
    conn = writer(store)
    conn.execute("PRAGMA synchronous=OFF").fetchall()
    conn.execute("PRAGMA cache_size=-1048576").fetchall()  # 1 GiB


async def write_batches(
    write: Callable[[int, int], Awaitable[None]],
    start: int,
    end: int,
    *,
    deadline: float,
    what: str,
) -> int:
    """Awaits `write(i, j)` for rows start..end-1, BATCH rows (one commit) at a time, until
    done or past `deadline` (a perf_counter instant); returns the end of what was written.
    `what` names the rows in the progress lines (`seeding contacts: 240,000/1,000,000
    (41,200/s)`)."""
    written = start
    counter = Progress(f"seeding {what}", end, start=start)
    while written < end and time.perf_counter() < deadline:
        upto = min(written + BATCH, end)
        await write(written, upto)
        written = upto
        counter.update(written)
    counter.finish("time limit reached" if written < end else "")
    return written


async def seed_contacts(path: Path, count: int, *, time_limit: float) -> SeedResult:
    """Writes `count` live contacts (one email each) through the store's own row writer; stops
    at a whole batch once `time_limit` seconds have passed."""
    store = SqliteContactStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    for_seeding(store)
    started = time.perf_counter()
    try:
        written = await write_batches(
            lambda i, j: _write_batch(store, i, j),
            0,
            count,
            deadline=started + time_limit,
            what="contacts",
        )
        file_bytes = checkpoint(store, path)
    finally:
        await store.close()
    return SeedResult(
        requested=count,
        count=written,
        seconds=round(time.perf_counter() - started, 2),
        file_bytes=file_bytes,
        time_limit_seconds=time_limit,
    )


async def _write_batch(store: SqliteContactStore, start: int, end: int) -> None:
    """Contacts start..end-1 in one transaction, as the service would have saved them."""
    window = timedelta(days=90)
    contacts = []
    for i in range(start, end):
        at = SEED_EPOCH + timedelta(seconds=i)
        contact = Contact(
            id=new_id(),
            details=ContactDetails(display_name=f"Seeded Contact {i}", emails=(seeded_email(i),)),
            status=lifecycle.status_for(None, at, window),
            created_at=at,
            updated_at=at,
            created_by="bench",
            updated_by="bench",
        )
        contacts.append((contact, 0))
    await store.commit(Change(saves=contacts))


def checkpoint(store: SqliteStore, path: Path) -> int:
    """Moves the WAL into the database file, so the service opens a compact file, and flushes
    that file to disk: otherwise the first fsyncs of whatever is timed next would also wait for
    the seed's gigabytes of dirty pages (measured: a first scheduler tick 5x slower). Its size."""
    say(f"checkpointing and flushing {path.name}...")
    writer(store).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    with path.open("rb") as written:
        os.fsync(written.fileno())
    return path.stat().st_size


async def time_email_lookups(
    path: Path, seeded: int, lookups: int, rng: random.Random
) -> LatencySummary:
    """Awaits `store.holder_of_email` for random seeded emails, one at a time, in process."""
    store = SqliteContactStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    latencies = Latencies()
    counter = Progress("store.holder_of_email in process", lookups, unit=" lookups")
    try:
        for index in rng.choices(range(seeded), k=lookups):
            counter.advance()
            email = seeded_email(index)
            t0 = time.perf_counter()
            holder = await store.holder_of_email(email)
            latencies.add(time.perf_counter() - t0)
            if holder is None:
                raise AssertionError(f"seeded email {email} has no holder")
        counter.finish()
    finally:
        await store.close()
    return latencies.summary()
