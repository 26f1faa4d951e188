"""Bulk seeding of SQLite stores through their own row writers; contacts and the email lookup.

Seeds write a service's rows the way its adapter does (the same method, the same documents),
in big transactions, without outbox rows: what the service would hold after a long life, made
in seconds rather than by replaying the calls that made it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.stats import Latencies, LatencySummary
from contacts.adapters import event_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.domain import lifecycle
from contacts.domain.model import Contact, ContactDetails
from promesa import sqlite as db
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


def for_seeding(store: SqliteStore) -> None:
    """A throwaway file is written without fsync (the service reopens it with
    synchronous=FULL) and with a big cache, so random-order index inserts hit RAM."""
    store._writer.conn.execute("PRAGMA synchronous=OFF")
    store._writer.conn.execute("PRAGMA cache_size=-1048576")  # 1 GiB


async def write_batches(
    write: Callable[[int, int], None], start: int, end: int, *, deadline: float
) -> int:
    """Calls `write(i, j)` for rows start..end-1, BATCH rows (one transaction) at a time, until
    done or past `deadline` (a perf_counter instant); returns the end of what was written.
    Yields to the event loop between batches, so Ctrl-C is prompt."""
    written = start
    while written < end and time.perf_counter() < deadline:
        upto = min(written + BATCH, end)
        write(written, upto)
        written = upto
        await asyncio.sleep(0)
    return written


async def seed_contacts(path: Path, count: int, *, time_limit: float) -> SeedResult:
    """Writes `count` live contacts (one email each) through the store's own row writer; stops
    at a whole batch once `time_limit` seconds have passed."""
    store = SqliteContactStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    for_seeding(store)
    started = time.perf_counter()
    try:
        written = await write_batches(
            lambda i, j: _write_batch(store, i, j), 0, count, deadline=started + time_limit
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


def _write_batch(store: SqliteContactStore, start: int, end: int) -> None:
    """Contacts start..end-1 in one transaction, as the service would have saved them."""
    window = timedelta(days=90)
    with db.transaction(store._writer.conn) as conn:
        for i in range(start, end):
            at = SEED_EPOCH + timedelta(seconds=i)
            contact = Contact(
                id=new_id(),
                details=ContactDetails(
                    display_name=f"Seeded Contact {i}", emails=(seeded_email(i),)
                ),
                status=lifecycle.status_for(None, at, window),
                created_at=at,
                updated_at=at,
                created_by="bench",
                updated_by="bench",
            )
            store._save(conn, store._row(contact), contact, 0)


def checkpoint(store: SqliteStore, path: Path) -> int:
    """Moves the WAL into the database file, so the service opens a compact file, and flushes
    that file to disk: otherwise the first fsyncs of whatever is timed next would also wait for
    the seed's gigabytes of dirty pages (measured: a first scheduler tick 5x slower). Its size."""
    store._writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("rb") as written:
        os.fsync(written.fileno())
    return path.stat().st_size


async def time_email_lookups(
    path: Path, seeded: int, lookups: int, rng: random.Random
) -> LatencySummary:
    """Awaits `store.holder_of_email` for random seeded emails, one at a time, in process."""
    store = SqliteContactStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    latencies = Latencies()
    try:
        for index in rng.choices(range(seeded), k=lookups):
            email = seeded_email(index)
            t0 = time.perf_counter()
            holder = await store.holder_of_email(email)
            latencies.add(time.perf_counter() - t0)
            if holder is None:
                raise AssertionError(f"seeded email {email} has no holder")
    finally:
        await store.close()
    return latencies.summary()
