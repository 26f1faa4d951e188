"""Group commit: one writer connection on a thread of its own, one transaction and one fsync for
every write that arrives while the previous commit is in flight.

An fsync'd SQLite commit costs ~215 µs of disk time here, and a service's writes used to pay it
one after the other on the event loop. The writer takes the changes queued while it was busy,
runs each in a savepoint of one transaction (a change that fails rolls back alone and its
caller gets its error), commits and fsyncs once, and only then answers every caller: nobody
hears "done" before their change is durable. The loop meanwhile serves calls; reads go through
a reader connection of their own (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
# Changes in one transaction at most: a bound on how long the first of them waits for the fsync.
MAX_GROUP = 256


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


class GroupWriter:
    """Owns the write connection: only its thread uses it once started."""

    def __init__(self, conn: sqlite3.Connection, *, name: str = "sqlite-writer") -> None:
        self.conn = conn
        self._level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        self._current = self._level
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self.groups = 0  # transactions committed: with `changes`, how well writes are grouped
        self.changes = 0
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def write(self, apply: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Runs `apply` in a savepoint of the next group transaction; returns its result once
        the group committed (its exception if it raised, or the commit's if the commit failed).
        `durable` False commits without the fsync unless a durable change shares the group."""
        return await self._submit(apply, durable=durable, alone=False)

    async def alone(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `apply` between groups, outside any transaction (a WAL checkpoint)."""
        return await self._submit(apply, durable=True, alone=True)

    async def _submit(
        self, apply: Callable[[sqlite3.Connection], T], *, durable: bool, alone: bool
    ) -> T:
        if self._closed:
            raise WriterClosedError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Job(apply, future, loop, durable, alone))
        return cast(T, await future)

    async def close(self) -> None:
        """Lets the queued changes commit, then stops the thread and closes the connection."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    # --- the writer thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        carried: _Job | None = None
        stopping = False
        try:
            while not stopping or carried is not None:
                job = carried if carried is not None else self._jobs.get()
                carried = None
                if job is None:
                    break
                if job.alone:
                    _answer([job], [self._run_alone(job)])
                    continue
                group = [job]
                while len(group) < MAX_GROUP:
                    try:
                        following = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if following is None:
                        stopping = True
                        break
                    if following.alone:
                        carried = following
                        break
                    group.append(following)
                try:
                    outcomes = self._commit(group)
                except BaseException as exc:  # a bug here must not strand every later caller
                    self._rollback()
                    outcomes = [(False, exc)] * len(group)
                _answer(group, outcomes)
        finally:
            self._refuse_the_rest()
            self.conn.close()

    def _refuse_the_rest(self) -> None:
        """Writes that slipped in as the store closed get an error, not an endless wait."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _answer([job], [(False, WriterClosedError("the store is closed"))])

    def _run_alone(self, job: _Job) -> _Outcome:
        try:
            result = job.apply(self.conn)
        except BaseException as exc:
            return False, exc
        if isinstance(result, sqlite3.Cursor):
            result.close()
            return False, TypeError("a write must not return a cursor: it keeps its statement open")
        return True, result

    def _commit(self, group: Sequence[_Job]) -> list[_Outcome]:
        conn = self.conn
        try:
            self._synchronous(any(j.durable for j in group))
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            return [(False, exc)] * len(group)
        outcomes: list[_Outcome] = []
        for job in group:
            try:
                conn.execute("SAVEPOINT change")
            except BaseException as exc:
                self._rollback()
                return [(False, exc)] * len(group)
            try:
                result = job.apply(conn)
                if isinstance(result, sqlite3.Cursor):
                    result.close()
                    raise TypeError(
                        "a change must not return a cursor: it keeps its statement open"
                    )
                conn.execute("RELEASE change")
            except BaseException as exc:
                outcomes.append((False, exc))
                if not self._undo_change():
                    # The transaction itself is gone (disk full, I/O error): none of the group
                    # is written, so every caller hears the error.
                    return [(False, exc)] * len(group)
                continue
            outcomes.append((True, result))
        try:
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            return [(False, exc)] * len(group)
        self.groups += 1
        self.changes += len(group)
        return outcomes

    def _undo_change(self) -> bool:
        """Rolls the failed change back to its savepoint; False if the transaction is lost."""
        try:
            self.conn.execute("ROLLBACK TO change")
            self.conn.execute("RELEASE change")
        except sqlite3.Error as exc:
            log.error("sqlite_group_lost", error=repr(exc))
            self._rollback()
            return False
        return True

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
    """Hands each outcome to its caller's loop: one wake-up per loop for the whole group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, answers in by_loop.items():
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
