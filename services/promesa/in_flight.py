"""Events handled as they arrive, across fetches: side by side across contacts, one after the
other within a contact, and an event that reaches several contacts (a merge, an erasure) alone.

A consumer that finished each fetched batch before fetching the next paid its slowest commit
once per batch and left the disk idle while it worked out the next one: at 500 events/s on a
million open promises it fell seconds behind with the process two-thirds idle. Here the next
fetch's events start while earlier commits are still under way, so the work of one overlaps
the fsync of the other and a group commit takes in more at a time; `limit` bounds what is
unacknowledged (JetStream's `max_ack_pending` is the hard bound).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable

from nats.aio.msg import Msg

from promesa.event_catalog import ordering_key

Handle = Callable[[Msg], Awaitable[None]]


class InFlight:
    """The messages being handled. A message waits for the last one started about its contact
    and for the last event handled alone; an event handled alone waits for everything started
    before it. When a handling raises (NATS away at its ack), the messages waiting for it are
    not handled (they come back after the ack wait, in order) and `failure` holds the error:
    the consumer fetches no more, lets the rest finish, and raises it."""

    def __init__(self, handle: Handle, limit: int) -> None:
        self._handle = handle
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_of: dict[str, asyncio.Task[None]] = {}
        self._alone: asyncio.Task[None] | None = None
        self._freed = asyncio.Event()
        self.waiting: dict[int, Msg] = {}  # started and not finished: what the heartbeat keeps
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def room(self) -> int:
        return self._limit - len(self._tasks)

    async def freed(self) -> None:
        """Returns once a message finished (at once if there is room already)."""
        if self.room > 0:
            return
        self._freed.clear()
        await self._freed.wait()

    def start(self, msgs: Iterable[Msg]) -> None:
        for msg in msgs:
            key = ordering_key(msg.subject)
            if key is None:
                after = list(self._tasks)
            else:
                after = [t for t in (self._last_of.get(key), self._alone) if t is not None]
            task = asyncio.create_task(self._run(msg, after))
            if key is None:
                self._alone = task
            else:
                self._last_of[key] = task
            self.waiting[id(msg)] = msg
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, key))

    async def drain(self) -> None:
        """Lets every message started finish: handling is never cut short."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _run(self, msg: Msg, after: list[asyncio.Task[None]]) -> None:
        try:
            if after:
                await asyncio.wait(after)
                if any(t.cancelled() or t.exception() is not None for t in after):
                    # What had to come first did not happen: this comes back after it.
                    raise _Skipped
            await self._handle(msg)
        finally:
            self.waiting.pop(id(msg), None)

    def _finished(self, key: str | None, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if key is None:
            if self._alone is task:
                self._alone = None
        elif self._last_of.get(key) is task:
            del self._last_of[key]
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and not isinstance(exc, _Skipped) and self.failure is None:
                self.failure = exc
        self._freed.set()


class _Skipped(Exception):
    """A message not handled because one it had to follow failed."""
