"""Bulk seeding of a contacts SQLite file, and timing of the store's email lookup on it."""

from __future__ import annotations

import asyncio
import random
import time
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


async def seed_contacts(path: Path, count: int, *, time_limit: float) -> SeedResult:
    """Writes `count` live contacts (one email each) through the store's own row writer, in
    transactions of BATCH and without outbox rows; stops at a whole batch once `time_limit`
    seconds have passed. Yields to the event loop between batches so Ctrl-C is prompt."""
    # A throwaway file: no fsync while seeding; the service reopens it with synchronous=FULL.
    store = SqliteContactStore(path, event_codec.encode, ManualClock(SEED_EPOCH), synchronous="OFF")
    store._conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: random-order index inserts hit RAM
    started = time.perf_counter()
    written = 0
    try:
        while written < count and time.perf_counter() - started < time_limit:
            end = min(written + BATCH, count)
            _write_batch(store, written, end)
            written = end
            await asyncio.sleep(0)
        file_bytes = _checkpoint(store, path)
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
    with db.transaction(store._conn) as conn:
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
            store._save(conn, contact, 0)


def _checkpoint(store: SqliteContactStore, path: Path) -> int:
    """Moves the WAL into the database file, so the service opens a compact file; its size."""
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
