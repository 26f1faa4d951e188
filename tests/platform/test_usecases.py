"""What every service's use cases share: the one rule for creates, the optimistic retry loop,
the merge-chain walk and the write path that wakes the outbox relay. In-memory stand-ins for
the ports: these rules are the same whatever the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from promesa.errors import (
    ContentionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    Violations,
)
from promesa.storage import (
    AlreadyHandledError,
    DuplicateRequestError,
    IdempotencyKey,
    InboxKey,
    VersionConflictError,
)
from promesa.usecases import (
    MAX_ATTEMPTS,
    MAX_MERGE_HOPS,
    MAX_REQUEST_ID,
    CreateRequest,
    Writes,
    check_request_id,
    create_once,
    follow_merges,
    retry_on_conflict,
)

REUSED = FieldViolation("request_id", "was already used for a different request")


# --- create_once ------------------------------------------------------------------------------


class RequestLog:
    """The idempotency keys a store committed, counting how often they were looked up."""

    def __init__(self, *keys: IdempotencyKey) -> None:
        self.keys = {k.request_id: k for k in keys}
        self.lookups = 0

    async def find_request(self, request_id: str) -> IdempotencyKey | None:
        self.lookups += 1
        return self.keys.get(request_id)


@dataclass
class Calls:
    """What create_once did with the use case's callbacks."""

    loaded: list[str] = field(default_factory=list)
    created: int = 0
    # The store holds the request's idempotency key already: its commit is refused, as the
    # key is written in the same transaction as what a create makes.
    key_taken: bool = False

    async def load(self, resource_id: str) -> str:
        self.loaded.append(resource_id)
        return f"the promise {resource_id}"

    async def create(self) -> str:
        if self.key_taken:
            raise DuplicateRequestError("req-1")
        self.created += 1
        return "a new promise"


def known(
    request_id: str = "req-1", digest: str = "d-1", resource_id: str = "p-1"
) -> IdempotencyKey:
    return IdempotencyKey(request_id, "create", digest, resource_id)


async def test_a_known_request_is_answered_with_its_first_result_and_nothing_is_created() -> None:
    # Given a request committed earlier
    log, calls = RequestLog(known()), Calls(key_taken=True)

    # When the caller retries it
    result = await create_once(
        CreateRequest("req-1", "create", "d-1"), log, load=calls.load, create=calls.create
    )

    # Then it gets the first result, and nothing is created again
    assert result == "the promise p-1"
    assert calls.created == 0
    assert calls.loaded == ["p-1"]


async def test_a_known_request_refused_now_is_answered_with_its_first_result() -> None:
    # Given a request committed earlier, whose due time has since passed
    log, calls = RequestLog(known()), Calls()

    async def refuse() -> str:
        raise InvalidArgumentError([FieldViolation("promise.due_at", "is in the past")])

    # When the caller retries it, it gets the first result, not the refusal
    result = await create_once(
        CreateRequest("req-1", "create", "d-1"), log, load=calls.load, create=refuse
    )
    assert result == "the promise p-1"


@pytest.mark.parametrize(
    "request_",
    [CreateRequest("req-1", "create", "d-other"), CreateRequest("req-1", "merge", "d-1")],
    ids=["other-digest", "other-operation"],
)
async def test_a_request_id_reused_for_a_different_request_is_refused(
    request_: CreateRequest,
) -> None:
    log, calls = RequestLog(known()), Calls(key_taken=True)

    with pytest.raises(InvalidArgumentError) as raised:
        await create_once(request_, log, load=calls.load, create=calls.create)

    assert raised.value.violations == (REUSED,)
    assert (calls.created, calls.loaded) == (0, [])


async def test_a_new_request_is_created() -> None:
    log, calls = RequestLog(known("req-other")), Calls()

    result = await create_once(
        CreateRequest("req-1", "create", "d-1"), log, load=calls.load, create=calls.create
    )

    assert result == "a new promise"
    assert calls.created == 1
    assert calls.loaded == []
    assert log.lookups == 0  # the common case reads nothing before its commit


async def test_a_create_without_a_request_id_never_looks_one_up() -> None:
    log, calls = RequestLog(known("")), Calls()

    result = await create_once(
        CreateRequest("", "create", "d-1"), log, load=calls.load, create=calls.create
    )

    assert result == "a new promise"
    assert log.lookups == 0


async def test_a_twin_that_committed_first_is_answered_with_the_winners_result() -> None:
    log, calls = RequestLog(), Calls()

    async def create_and_lose_the_race() -> str:
        # A concurrent twin commits between the lookup and this commit
        log.keys["req-1"] = known(resource_id="p-winner")
        raise DuplicateRequestError("req-1")

    result = await create_once(
        CreateRequest("req-1", "create", "d-1"),
        log,
        load=calls.load,
        create=create_and_lose_the_race,
    )

    assert result == "the promise p-winner"
    assert calls.loaded == ["p-winner"]


async def test_a_different_request_that_won_the_race_for_the_id_is_refused() -> None:
    log, calls = RequestLog(), Calls()

    async def create_and_lose_the_race() -> str:
        log.keys["req-1"] = known(digest="d-other", resource_id="p-other")
        raise DuplicateRequestError("req-1")

    with pytest.raises(InvalidArgumentError) as raised:
        await create_once(
            CreateRequest("req-1", "create", "d-1"),
            log,
            load=calls.load,
            create=create_and_lose_the_race,
        )

    assert raised.value.violations == (REUSED,)
    assert calls.loaded == []


async def test_a_validation_error_of_a_new_request_reaches_the_caller() -> None:
    log, calls = RequestLog(), Calls()

    async def refuse() -> str:
        raise InvalidArgumentError([FieldViolation("promise.due_at", "is in the past")])

    with pytest.raises(InvalidArgumentError):
        await create_once(
            CreateRequest("req-1", "create", "d-1"), log, load=calls.load, create=refuse
        )
    assert calls.loaded == []


def test_a_create_request_keys_its_resource_only_when_it_has_an_id() -> None:
    assert CreateRequest("req-1", "create", "d-1").key("p-1") == IdempotencyKey(
        "req-1", "create", "d-1", "p-1"
    )
    assert CreateRequest("", "create", "d-1").key("p-1") is None


@pytest.mark.parametrize(
    ("request_id", "description"),
    [
        ("r" * (MAX_REQUEST_ID + 1), f"must be at most {MAX_REQUEST_ID} characters"),
        ("req\x00-1", "must not contain control characters"),
        ("req\n1", "must not contain control characters"),
    ],
    ids=["too-long", "nul", "line-break"],
)
def test_a_request_id_is_text_like_any_other(request_id: str, description: str) -> None:
    v = Violations()

    check_request_id(request_id, v)

    with pytest.raises(InvalidArgumentError) as raised:
        v.raise_if_any()
    assert raised.value.violations == (FieldViolation("request_id", description),)


def test_a_plain_request_id_passes() -> None:
    v = Violations()

    check_request_id("3f1c9a52-7d0e-4a8b-9c1d-2b3e4f5a6b7c", v)
    check_request_id("", v)

    assert not v


# --- retry_on_conflict ------------------------------------------------------------------------


class Attempts:
    """An optimistic write that conflicts a given number of times before it commits."""

    def __init__(self, conflicts: int, error: Exception | None = None) -> None:
        self.conflicts = conflicts
        self.error = error or VersionConflictError("p-1")
        self.made = 0

    async def __call__(self) -> str:
        self.made += 1
        if self.made <= self.conflicts:
            raise self.error
        return "committed"


async def test_a_write_that_keeps_conflicting_gives_up_with_contention_after_max_attempts() -> None:
    attempt = Attempts(conflicts=1000)

    with pytest.raises(ContentionError) as raised:
        await retry_on_conflict(attempt, resource="promise", resource_id="p-1")

    assert attempt.made == MAX_ATTEMPTS
    assert str(raised.value) == "promise 'p-1' kept changing; try again"


async def test_a_write_that_conflicts_then_commits_returns_its_result() -> None:
    attempt = Attempts(conflicts=MAX_ATTEMPTS - 1)

    assert await retry_on_conflict(attempt, resource="promise", resource_id="p-1") == "committed"
    assert attempt.made == MAX_ATTEMPTS


async def test_an_error_that_is_no_conflict_is_not_retried() -> None:
    attempt = Attempts(conflicts=1, error=NotFoundError("promise", "p-1"))

    with pytest.raises(NotFoundError):
        await retry_on_conflict(attempt, resource="promise", resource_id="p-1")

    assert attempt.made == 1


async def test_the_conflicts_to_retry_are_the_callers_to_name() -> None:
    class EmailRaceError(Exception):
        pass

    raced = Attempts(conflicts=2, error=EmailRaceError())
    stale = Attempts(conflicts=1)

    assert (
        await retry_on_conflict(
            raced, resource="contact", resource_id="c-1", conflicts=(EmailRaceError,)
        )
        == "committed"
    )
    with pytest.raises(VersionConflictError):
        await retry_on_conflict(
            stale, resource="contact", resource_id="c-1", conflicts=(EmailRaceError,)
        )
    assert (raced.made, stale.made) == (3, 1)


# --- follow_merges ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    id: str
    merged_into_id: str = ""


class Records:
    """Contacts by id, counting lookups, so a loop is seen to end."""

    def __init__(self, *records: Record) -> None:
        self.by_id = {r.id: r for r in records}
        self.lookups = 0

    async def lookup(self, record_id: str) -> Record | None:
        self.lookups += 1
        return self.by_id.get(record_id)


def merged_into(record: Record) -> str:
    return record.merged_into_id


def chain(hops: int) -> Records:
    """r-0 merged into r-1, … into r-<hops>, which was not merged."""
    return Records(*(Record(f"r-{i}", f"r-{i + 1}") for i in range(hops)), Record(f"r-{hops}"))


async def test_a_record_that_was_not_merged_is_its_own_end() -> None:
    records = Records(Record("a"))

    assert await follow_merges(Record("a"), records.lookup, merged_into) == Record("a")
    assert records.lookups == 0


async def test_a_chain_of_merges_leads_to_the_survivor() -> None:
    records = chain(3)

    end = await follow_merges(records.by_id["r-0"], records.lookup, merged_into)

    assert end == Record("r-3")


async def test_a_chain_of_exactly_the_limit_is_followed_to_its_end() -> None:
    records = chain(MAX_MERGE_HOPS)

    end = await follow_merges(records.by_id["r-0"], records.lookup, merged_into)

    assert end == Record(f"r-{MAX_MERGE_HOPS}")


async def test_a_chain_longer_than_the_limit_leads_nowhere() -> None:
    records = chain(MAX_MERGE_HOPS + 1)

    assert await follow_merges(records.by_id["r-0"], records.lookup, merged_into) is None
    assert records.lookups == MAX_MERGE_HOPS


async def test_a_loop_of_merges_leads_nowhere_and_ends() -> None:
    records = Records(Record("a", "b"), Record("b", "a"))

    assert await follow_merges(records.by_id["a"], records.lookup, merged_into) is None
    assert records.lookups == MAX_MERGE_HOPS


async def test_a_merge_into_an_unknown_record_leads_nowhere() -> None:
    records = Records(Record("a", "b"), Record("b", "gone"))

    assert await follow_merges(records.by_id["a"], records.lookup, merged_into) is None


async def test_no_first_record_leads_nowhere() -> None:
    records = Records()

    assert await follow_merges(None, records.lookup, merged_into) is None
    assert records.lookups == 0


def test_the_merge_limit_is_one_constant_for_every_service() -> None:
    assert MAX_MERGE_HOPS == 10


# --- Writes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    events: Sequence[object] = ()
    handled: InboxKey | None = None


class Store:
    """Keeps what was committed; refuses an inbox key it has seen, as the stores do."""

    def __init__(self, error: Exception | None = None) -> None:
        self.committed: list[Change] = []
        self.error = error
        self.inbox: set[InboxKey] = set()

    async def commit(self, change: Change) -> None:
        if self.error is not None:
            raise self.error
        if change.handled is not None:
            if change.handled in self.inbox:
                raise AlreadyHandledError(change.handled.event_id)
            self.inbox.add(change.handled)
        self.committed.append(change)


class Relay:
    def __init__(self) -> None:
        self.woken = 0

    def notify(self) -> None:
        self.woken += 1


async def test_a_commit_with_events_wakes_the_relay_once() -> None:
    store, relay = Store(), Relay()
    writes = Writes(store, relay.notify)

    await writes.commit(Change(events=["PromiseMade", "ReminderScheduled"]))

    assert len(store.committed) == 1
    assert relay.woken == 1


async def test_a_commit_without_events_leaves_the_relay_asleep() -> None:
    store, relay = Store(), Relay()

    await Writes(store, relay.notify).commit(Change())

    assert len(store.committed) == 1
    assert relay.woken == 0


async def test_a_failed_commit_leaves_the_relay_asleep() -> None:
    relay = Relay()
    writes = Writes(Store(VersionConflictError("p-1")), relay.notify)

    with pytest.raises(VersionConflictError):
        await writes.commit(Change(events=["PromiseKept"]))

    assert relay.woken == 0


async def test_a_reaction_applied_once_is_true_and_a_redelivery_false_without_waking() -> None:
    store, relay = Store(), Relay()
    writes = Writes(store, relay.notify)
    inbox = InboxKey("followup-interactions", "evt-1")

    first = await writes.react(Change(events=["PromiseMade"], handled=inbox))
    again = await writes.react(Change(events=["PromiseMade"], handled=inbox))

    assert (first, again) == (True, False)
    assert len(store.committed) == 1
    assert relay.woken == 1


async def test_a_reaction_without_events_is_applied_without_waking_the_relay() -> None:
    relay = Relay()
    writes = Writes(Store(), relay.notify)

    assert await writes.react(Change(handled=InboxKey("contacts-touches", "evt-1"))) is True
    assert relay.woken == 0


async def test_a_reaction_that_fails_otherwise_raises() -> None:
    writes = Writes(Store(VersionConflictError("c-1")), Relay().notify)

    with pytest.raises(VersionConflictError):
        await writes.react(Change(events=["x"], handled=InboxKey("c", "e")))
