"""Group commit: one writer connection, one transaction and one fsync for every write that
arrives while the previous commit is in flight.

An fsync'd SQLite commit costs ~215 µs of disk time here, and a service's writes used to pay it
one after the other on the event loop. The writer takes the changes queued while it was busy,
runs each in a savepoint of one transaction (a change that fails rolls back alone and its
caller gets its error), commits and fsyncs once, and only then answers every caller: nobody
hears "done" before their change is durable. Reads go through a reader connection of their own
(WAL lets them run beside the writer).

Where each part runs is measured, not taken for granted. The changes' statements run on the
event loop: on a thread of their own, every statement gave the GIL up and waited to get it back
from a busy loop, and at 500 events/s on a million open promises the writer spent half its time
waiting for the GIL. What blocks on the disk runs on the writer's thread, with the GIL released
throughout: BEGIN IMMEDIATE (which may wait for another process's lock), COMMIT (the WAL write,
the fsync and SQLite's automatic checkpoints) and whatever must run outside a transaction.
So a group holds the file's write lock until the loop has run its statements: nothing on the
loop may wait for that lock (open another store on the same file from a thread).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
# Changes in one transaction at most: a bound on how long the first of them waits for the fsync.
MAX_GROUP = 256
# A group's statements give the loop back this often (seconds), so calls go on being served
# while a large group is written.
YIELD_EVERY = 0.002


@dataclass(slots=True)
class _Job:
    apply: Callable[[sqlite3.Connection], object]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool  # False for bookkeeping that may be lost and redone (outbox claims)
    alone: bool  # outside any transaction (WAL checkpoints)


_Outcome = tuple[bool, object]  # (succeeded, result or exception)


class WriterClosedError(sqlite3.ProgrammingError):
    """A write after the store was closed."""


class _TransactionLostError(Exception):
    """The group's transaction is gone (disk full, I/O error): none of it was written."""


class GroupWriter:
    """Owns the write connection: the group being written uses it, on the loop or on the
    writer's thread, never both at once."""

    def __init__(self, conn: sqlite3.Connection, *, name: str = "sqlite-writer") -> None:
        self.conn = conn
        self._level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        self._current = self._level
        self._disk = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._jobs: collections.deque[_Job] = collections.deque()
        self._writing: asyncio.Task[None] | None = None
        self._closed = False
        self.groups = 0  # transactions committed: with `changes`, how well writes are grouped
        self.changes = 0

    async def write(self, apply: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Runs `apply` in a savepoint of the next group transaction; returns its result once
        the group committed (its exception if it raised, or the commit's if the commit failed).
        `durable` False commits without the fsync unless a durable change shares the group."""
        return await self._submit(apply, durable=durable, alone=False)

    async def alone(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `apply` between groups, outside any transaction, on the writer's thread (a WAL
        checkpoint)."""
        return await self._submit(apply, durable=True, alone=True)

    async def _submit(
        self, apply: Callable[[sqlite3.Connection], T], *, durable: bool, alone: bool
    ) -> T:
        if self._closed:
            raise WriterClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.append(_Job(apply, future, loop, durable, alone))
        writing = self._writing
        if (
            writing is not None
            and writing.get_loop() is not loop
            and writing.get_loop().is_closed()
        ):
            writing = None  # a loop that closed mid-group (a test's): this one takes over
        if writing is None:
            self._writing = loop.create_task(self._write_all())
        return cast(T, await future)

    async def close(self) -> None:
        """Lets the queued changes commit, then closes the connection and the thread."""
        if self._closed:
            return
        self._closed = True
        writing = self._writing
        if writing is not None and writing.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(writing)
        self._refuse_the_rest()
        await asyncio.get_running_loop().run_in_executor(self._disk, self.conn.close)
        self._disk.shutdown(wait=True)

    def _refuse_the_rest(self) -> None:
        """Writes that slipped in as the store closed get an error, not an endless wait."""
        while self._jobs:
            job = self._jobs.popleft()
            _answer([job], [(False, WriterClosedError("the store is closed"))])

    # --- writing -------------------------------------------------------------------------------

    async def _write_all(self) -> None:
        try:
            while self._jobs:
                if self._jobs[0].alone:
                    job = self._jobs.popleft()
                    _answer([job], [await self._on_disk(functools.partial(self._run_alone, job))])
                    continue
                group = [self._jobs.popleft()]
                while self._jobs and len(group) < MAX_GROUP and not self._jobs[0].alone:
                    group.append(self._jobs.popleft())
                try:
                    outcomes = await self._commit(group)
                except BaseException as exc:  # a bug or a cancellation: nobody left waiting
                    # After whatever the thread is doing with the connection, not beside it.
                    self._disk.submit(self._rollback)
                    _answer(group, [(False, exc)] * len(group))
                    raise
                _answer(group, outcomes)
        finally:
            self._writing = None

    async def _on_disk(self, work: Callable[[], _Outcome]) -> _Outcome:
        return await asyncio.get_running_loop().run_in_executor(self._disk, work)

    async def _commit(self, group: Sequence[_Job]) -> list[_Outcome]:
        durable = any(j.durable for j in group)
        began, error = await self._on_disk(functools.partial(self._begin, durable))
        if not began:
            return [(False, error)] * len(group)
        outcomes: list[_Outcome] = []
        given_back = time.perf_counter()
        for job in group:
            try:
                outcomes.append(self._apply(job))
            except _TransactionLostError as lost:
                self._rollback()
                return [(False, lost.__cause__)] * len(group)
            if time.perf_counter() - given_back > YIELD_EVERY:
                await asyncio.sleep(0)
                given_back = time.perf_counter()
        committed, error = await self._on_disk(self._end)
        if not committed:
            return [(False, error)] * len(group)
        self.groups += 1
        self.changes += len(group)
        return outcomes

    def _apply(self, job: _Job) -> _Outcome:
        """One change in a savepoint of its own; raises _TransactionLostError when rolling the
        change back fails, which means the whole transaction is gone."""
        conn = self.conn
        try:
            conn.execute("SAVEPOINT change")
        except BaseException as exc:
            raise _TransactionLostError from exc
        try:
            result = job.apply(conn)
            if isinstance(result, sqlite3.Cursor):
                result.close()
                raise TypeError("a change must not return a cursor: it keeps its statement open")
            conn.execute("RELEASE change")
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK TO change")
                conn.execute("RELEASE change")
            except sqlite3.Error as undo:
                log.error("sqlite_group_lost", error=repr(undo))
                raise _TransactionLostError from exc
            return False, exc
        return True, result

    # --- on the writer's thread ----------------------------------------------------------------

    def _begin(self, durable: bool) -> _Outcome:
        try:
            self._synchronous(durable)
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            return False, exc
        return True, None

    def _end(self) -> _Outcome:
        try:
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            return False, exc
        return True, None

    def _run_alone(self, job: _Job) -> _Outcome:
        try:
            result = job.apply(self.conn)
        except BaseException as exc:
            return False, exc
        if isinstance(result, sqlite3.Cursor):
            result.close()
            return False, TypeError("a write must not return a cursor: it keeps its statement open")
        return True, result

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("sqlite_rollback_failed", error=repr(exc))

    def _synchronous(self, durable: bool) -> None:
        """Bookkeeping-only groups commit at NORMAL: if a power loss undoes one, outbox rows are
        claimed or sent again, and JetStream and the inboxes drop the copies."""
        wanted = self._level if durable else min(self._level, 1)
        if wanted != self._current:
            self.conn.execute(f"PRAGMA synchronous={wanted}")
            self._current = wanted


def _answer(jobs: Sequence[_Job], outcomes: Sequence[_Outcome]) -> None:
    """Hands each outcome to its caller: at once on this loop, one wake-up per other loop."""
    here = asyncio.get_running_loop()
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, answers in by_loop.items():
        if loop is here:
            _settle(answers)
            continue
        try:
            loop.call_soon_threadsafe(_settle, answers)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
            continue


def _settle(answers: Sequence[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (succeeded, value) in answers:
        if future.done():  # the caller was cancelled; the change committed all the same
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(cast(BaseException, value))
