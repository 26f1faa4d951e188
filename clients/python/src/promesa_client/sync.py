"""`SyncClient`: the same calls as `Client`, blocking, for scripts and command lines.

The async client runs on an event loop in a thread of its own, so a SyncClient works from any
thread, including one whose own event loop is running (a test, a notebook), where
`asyncio.run` would refuse. Each method has the async method's signature and result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from promesa_client._connection import ChannelOptions, TlsOption, TokenSource
from promesa_client.client import DEFAULT_DEADLINE, LOCAL_TARGETS, Client
from promesa_client.contacts import Contacts
from promesa_client.interactions import Interactions
from promesa_client.pages import Page, Pager
from promesa_client.promises import Promises

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
A = TypeVar("A")


class _LoopThread:
    """An event loop running in a daemon thread; coroutines are handed to it and waited for."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="promesa-client", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: the call must not go on behind our back
            raise

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


def _iterate(loop: _LoopThread, iterator: AsyncIterator[T]) -> Iterator[T]:
    """A blocking iterator over an async one; closing it closes the async one (hanging up)."""
    try:
        while True:
            try:
                yield loop.run(_next(iterator))
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            loop.run(aclose())


class SyncPager(Generic[T]):
    """A Pager, blocking: iterate it for every item, or use pages(), page(), collect()."""

    def __init__(self, loop: _LoopThread, pager: Pager[T]) -> None:
        self._loop = loop
        self._pager = pager

    def __iter__(self) -> Iterator[T]:
        return _iterate(self._loop, self._pager._walk())

    def pages(self) -> Iterator[Page[T]]:
        return _iterate(self._loop, self._pager.pages())

    def page(self, page_token: str | None = None) -> Page[T]:
        return self._loop.run(self._pager.page(page_token))

    def collect(self, limit: int | None = None) -> list[T]:
        return self._loop.run(self._pager.collect(limit))


class _SyncPart(Generic[A]):
    def __init__(self, loop: _LoopThread, part: A) -> None:
        self._loop = loop
        self._async = part


def _blocking(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_SyncPart[A], P], R]:
    def call(self: _SyncPart[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.run(method(self._async, *args, **kwargs))

    call.__doc__ = method.__doc__
    return call


def _paging(
    method: Callable[Concatenate[A, P], Pager[T]],
) -> Callable[Concatenate[_SyncPart[A], P], SyncPager[T]]:
    def call(self: _SyncPart[A], /, *args: P.args, **kwargs: P.kwargs) -> SyncPager[T]:
        return SyncPager(self._loop, method(self._async, *args, **kwargs))

    call.__doc__ = method.__doc__
    return call


def _streaming(
    method: Callable[Concatenate[A, P], AsyncIterator[T]],
) -> Callable[Concatenate[_SyncPart[A], P], Iterator[T]]:
    def call(self: _SyncPart[A], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return _iterate(self._loop, method(self._async, *args, **kwargs))

    call.__doc__ = method.__doc__
    return call


class SyncContacts(_SyncPart[Contacts]):
    """`Contacts`, blocking."""

    create = _blocking(Contacts.create)
    get = _blocking(Contacts.get)
    update = _blocking(Contacts.update)
    list = _paging(Contacts.list)
    search = _paging(Contacts.search)
    merge = _blocking(Contacts.merge)
    erase = _blocking(Contacts.erase)
    erasures = _paging(Contacts.erasures)


class SyncInteractions(_SyncPart[Interactions]):
    """`Interactions`, blocking."""

    record = _blocking(Interactions.record)
    get = _blocking(Interactions.get)
    list = _paging(Interactions.list)
    rate = _blocking(Interactions.rate)
    amend = _blocking(Interactions.amend)


class SyncPromises(_SyncPart[Promises]):
    """`Promises`, blocking; `reminders()` is a blocking iterator (close it to hang up)."""

    create = _blocking(Promises.create)
    get = _blocking(Promises.get)
    list = _paging(Promises.list)
    keep = _blocking(Promises.keep)
    reassign = _blocking(Promises.reassign)
    renegotiate = _blocking(Promises.renegotiate)
    pause = _blocking(Promises.pause)
    resume = _blocking(Promises.resume)
    cancel = _blocking(Promises.cancel)
    confirm = _blocking(Promises.confirm)
    deliveries = _paging(Promises.deliveries)
    stats = _blocking(Promises.stats)
    reminders = _streaming(Promises.reminders)


class SyncClient:
    """`Client`, blocking: the same arguments, `client.contacts.get(id)` without await.
    Close it (`with SyncClient(...) as client:`) to close the channels and stop its thread."""

    def __init__(
        self,
        *,
        contacts: str,
        interactions: str,
        followup: str,
        token: TokenSource,
        tls: TlsOption = False,
        deadline: float | None = DEFAULT_DEADLINE,
        channel_options: ChannelOptions = (),
    ) -> None:
        self._loop = _LoopThread()
        self.aio = Client(
            contacts=contacts,
            interactions=interactions,
            followup=followup,
            token=token,
            tls=tls,
            deadline=deadline,
            channel_options=channel_options,
        )
        self.contacts = SyncContacts(self._loop, self.aio.contacts)
        self.interactions = SyncInteractions(self._loop, self.aio.interactions)
        self.promises = SyncPromises(self._loop, self.aio.promises)

    @classmethod
    def local(
        cls,
        token: TokenSource = "dev-agent-token",
        *,
        deadline: float | None = DEFAULT_DEADLINE,
    ) -> SyncClient:
        """The services of `make run` on this machine (127.0.0.1:50051-50053)."""
        return cls(
            contacts=LOCAL_TARGETS["contacts"],
            interactions=LOCAL_TARGETS["interactions"],
            followup=LOCAL_TARGETS["followup"],
            token=token,
            deadline=deadline,
        )

    def close(self) -> None:
        """Closes the channels and stops the client's thread; safe to call twice."""
        try:
            if not self._loop._loop.is_closed():
                self._loop.run(self.aio.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
