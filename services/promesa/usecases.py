"""What the use cases of every service share: commit then wake the outbox relay, answer a
retried create with its first result, retry an optimistic write, follow a chain of merges.

Free of gRPC, NATS and database types, like the use cases themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from promesa.errors import (
    ContentionError,
    FieldViolation,
    InvalidArgumentError,
    UnavailableError,
    Violations,
)
from promesa.ids import fingerprint
from promesa.storage import (
    AlreadyHandledError,
    DuplicateRequestError,
    IdempotencyKey,
    VersionConflictError,
)

T = TypeVar("T")

# Attempts of an optimistic write before the caller is told to try again (ABORTED).
MAX_ATTEMPTS = 5
# Merges followed from a merged-away contact to its survivor: a longer chain is a loop or
# damage, never a real history, and is treated as leading nowhere.
MAX_MERGE_HOPS = 10
MAX_REQUEST_ID = 100


class HasEvents(Protocol):
    @property
    def events(self) -> Sequence[object]: ...


C = TypeVar("C", bound=HasEvents)
C_contra = TypeVar("C_contra", bound=HasEvents, contravariant=True)


class Committer(Protocol[C_contra]):
    async def commit(self, change: C_contra) -> None: ...


class Writes(Generic[C]):
    """A store's one write path, then a nudge to the outbox relay when events were written,
    so they are published at once rather than at its next poll."""

    def __init__(self, store: Committer[C], on_commit: Callable[[], None]) -> None:
        self._store = store
        self._on_commit = on_commit

    async def commit(self, change: C) -> None:
        await self._store.commit(change)
        if change.events:
            self._on_commit()

    async def react(self, change: C) -> bool:
        """An event's effect, with its inbox row in the change: False when the inbox shows
        the event was applied before (a redelivery), and nothing was written."""
        try:
            await self.commit(change)
        except AlreadyHandledError:
            return False
        return True


class RequestLog(Protocol):
    async def find_request(self, request_id: str) -> IdempotencyKey | None: ...


@dataclass(frozen=True)
class CreateRequest:
    """A create's request id and a digest of what it asked for, as sent: values filled in
    later (from the clock, from the caller's token) would make a retry look like another
    request."""

    request_id: str
    operation: str
    digest: str

    @classmethod
    def of(cls, request_id: str, operation: str, sent: object) -> CreateRequest:
        """The request with the digest of what was `sent` (dataclasses, lists and dicts of
        them), computed only when there is a request id to remember it by."""
        return cls(request_id, operation, fingerprint(sent) if request_id else "")

    def key(self, resource_id: str) -> IdempotencyKey | None:
        """The idempotency key to commit with the new resource (none without a request id)."""
        if not self.request_id:
            return None
        return IdempotencyKey(self.request_id, self.operation, self.digest, resource_id)


def check_request_id(request_id: str, v: Violations) -> None:
    v.text("request_id", request_id, MAX_REQUEST_ID)


async def create_once(
    request: CreateRequest,
    requests: RequestLog,
    *,
    load: Callable[[str], Awaitable[T]],
    create: Callable[[], Awaitable[T]],
) -> T:
    """The one rule for creates: a known request id with the same digest is answered with
    what it produced, whatever else would be refused now (time has passed since the first
    call, and a due time that was in the future then may not be now). A request id reused for
    a different request is INVALID_ARGUMENT.

    The first call is the common one, so `create` runs first (it validates and commits with
    `request.key(...)`); the request log is read only when it fails: its key already
    committed (a retry, or a concurrent twin that got there first), or a refusal that a
    first answer would override."""
    if not request.request_id:
        return await create()
    try:
        return await create()
    except DuplicateRequestError:
        earlier = await _earlier(request, requests)
        assert earlier is not None, "a duplicate request id was committed, so it is found"
        return await load(earlier)
    except UnavailableError:
        raise  # the request log is as far away as the rest of the store
    except Exception:
        earlier = await _earlier(request, requests)
        if earlier is None:
            raise
        return await load(earlier)


async def _earlier(request: CreateRequest, requests: RequestLog) -> str | None:
    key = await requests.find_request(request.request_id)
    if key is None:
        return None
    if key.operation != request.operation or key.fingerprint != request.digest:
        raise InvalidArgumentError(
            [FieldViolation("request_id", "was already used for a different request")]
        )
    return key.resource_id


async def retry_on_conflict(
    attempt: Callable[[], Awaitable[T]],
    *,
    resource: str,
    resource_id: str,
    conflicts: tuple[type[Exception], ...] = (VersionConflictError,),
) -> T:
    """Runs `attempt` (which reads afresh each time) until it commits without a conflict;
    after MAX_ATTEMPTS the one outcome is ContentionError (ABORTED: send it again)."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return await attempt()
        except conflicts:
            continue
    raise ContentionError(resource, resource_id)


async def follow_merges(
    first: T | None,
    lookup: Callable[[str], Awaitable[T | None]],
    merged_into: Callable[[T], str],
) -> T | None:
    """The record a chain of merges leads to (the first one when it was not merged); None
    when a link is unknown or the chain is longer than MAX_MERGE_HOPS."""
    current = first
    for _ in range(MAX_MERGE_HOPS):
        if current is None or not merged_into(current):
            return current
        current = await lookup(merged_into(current))
    return None if current is None or merged_into(current) else current
