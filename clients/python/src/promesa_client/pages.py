"""Page iteration: a List or Search call followed through next_page_token for the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page as the server sent it; `next_page_token` is empty on the last page."""

    items: list[T]
    next_page_token: str


# Fetches the page that starts at a token ("" = the first page).
PageFetcher = Callable[[str], Awaitable[Page[T]]]


class Pager(Generic[T]):
    """What a list call returns. `async for item in pager` walks every item of every page,
    fetching the next page only when the previous one is used up; `pages()` walks pages;
    `page(token)` fetches one (a UI that pages by hand keeps the token); `collect()` reads all.
    Items are walked once: a second `async for` goes on where the first stopped (call the list
    method again to start over); `pages()`, `page()` and `collect()` start afresh each time.
    """

    def __init__(self, fetch: PageFetcher[T], page_token: str = "") -> None:
        self._fetch = fetch
        self._start = page_token
        self._items: AsyncIterator[T] | None = None

    async def page(self, page_token: str | None = None) -> Page[T]:
        """The page starting at `page_token` (default: where this pager started)."""
        return await self._fetch(self._start if page_token is None else page_token)

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Every page from the start, until the server says there are no more."""
        token = self._start
        while True:
            page = await self._fetch(token)
            yield page
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def collect(self, limit: int | None = None) -> list[T]:
        """Up to `limit` items (all when None), fetching no page beyond what they need."""
        found: list[T] = []
        if limit is not None and limit <= 0:
            return found
        async for page in self.pages():
            found.extend(page.items)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    def __aiter__(self) -> Pager[T]:
        return self

    async def __anext__(self) -> T:
        if self._items is None:
            self._items = self._walk()
        return await anext(self._items)

    async def _walk(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item
