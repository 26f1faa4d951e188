"""One contract for the interactions storage port, run against every adapter.

`InteractionStoreContract` holds the behaviour of the port's own methods; each adapter
subclasses it and says how to create (and dispose of) a store. The outbox, inbox, idempotency
and dead-letter behaviour the adapters inherit from the store bases is tested once, in
tests/platform. SQLite always runs; MongoDB runs when CRM_TEST_MONGODB_URI
names a replica set (transactions need one), each test in a database of its own that is
dropped afterwards.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from interactions.adapters import event_codec
from interactions.adapters.mongo_store import MongoInteractionStore, timeline_query
from interactions.adapters.sqlite_store import SqliteInteractionStore
from interactions.domain import rules
from interactions.domain.events import (
    InteractionRated,
    InteractionRecorded,
)
from interactions.domain.model import (
    Amendment,
    Channel,
    Direction,
    Interaction,
    InteractionDetails,
    InteractionType,
    KnownContact,
    PromiseInInteraction,
    PromiseKind,
    Purchase,
)
from interactions.ports import (
    Change,
    ContactGoneError,
    InteractionStore,
    Scope,
    TimelineFilter,
    VersionConflictError,
)
from promesa.clock import ManualClock
from promesa.pagination import Cursor
from tests.support import mongod_planner_only, mongodb_is_secantus, plan_stages

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
AGENT = "agent-ana"


def touch(
    interaction_id: str,
    contact_id: str,
    at: datetime,
    *,
    type: InteractionType = InteractionType.INQUIRY,
    channel: Channel = Channel.PHONE,
    agent: str = AGENT,
    team: str = "",
) -> Interaction:
    return Interaction(
        id=interaction_id,
        contact_id=contact_id,
        details=InteractionDetails(
            type=type, channel=channel, occurred_at=at, agent_id=agent, team=team
        ),
        created_at=at,
        updated_at=at,
        created_by=AGENT,
        updated_by=AGENT,
    )


def recording(i: Interaction, **change: object) -> Change:
    """The change that records an interaction, as the record use case commits it."""
    return Change(
        saves=[(i, 0)],
        events=[InteractionRecorded(i, AGENT, i.created_at)],
        **change,  # type: ignore[arg-type]
    )


def ids(interactions: Sequence[Interaction]) -> list[str]:
    return [i.id for i in interactions]


# Timeline queries whose plan is checked: each must walk the timeline index, never sort.
PLANNED = [
    pytest.param(TimelineFilter("c-1"), None, id="whole"),
    pytest.param(TimelineFilter("c-1", type=InteractionType.COMPLAINT), None, id="filtered"),
    pytest.param(TimelineFilter("c-1"), Scope("madrid", AGENT), id="scoped"),
]


class InteractionStoreContract(abc.ABC):
    """What every InteractionStore adapter does; subclasses only create and dispose of stores."""

    @abc.abstractmethod
    async def create_store(self, tmp_path: Path, clock: ManualClock) -> InteractionStore: ...

    async def dispose_store(self, store: InteractionStore) -> None:
        await store.close()

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    @pytest.fixture
    async def store(self, tmp_path: Path, clock: ManualClock) -> AsyncIterator[InteractionStore]:
        store = await self.create_store(tmp_path, clock)
        try:
            yield store
        finally:
            await self.dispose_store(store)

    # --- reading back what was committed -----------------------------------------------------

    async def test_a_committed_interaction_reads_back_equal(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        at = clock.now().replace(microsecond=123456)
        full = replace(
            touch("i-1", "c-1", at, type=InteractionType.PURCHASE),
            details=InteractionDetails(
                type=InteractionType.PURCHASE,
                channel=Channel.WEB,
                occurred_at=at - timedelta(microseconds=7),
                agent_id=AGENT,
                direction=Direction.INBOUND,
                team="madrid",
                summary="Bought a kettle",
                notes="Gift wrap «rouge»",
                outcome="Paid",
                purchase=Purchase(4999, "EUR"),
                thread_id="i-0",
            ),
            promises=(
                PromiseInInteraction(
                    "p-1",
                    "Deliver by Friday",
                    at + timedelta(days=3),
                    "agent-bo",
                    PromiseKind.DELIVER,
                ),
            ),
            satisfaction=5,
            rated_at=at + timedelta(hours=1),
            amendments=(
                Amendment(
                    "sup-sam",
                    at,
                    ("summary", "type"),
                    "typo",
                    (("summary", "Bougth"), ("type", "INQUIRY")),
                ),
            ),
            version=3,
        )

        await store.commit(recording(full))

        assert await store.get("i-1") == full
        # Its event waits in the outbox as the codec encodes it.
        [(_, event)] = await store.pending_events(10)
        assert event == event_codec.encode(InteractionRecorded(full, AGENT, full.created_at))

    async def test_unknown_things_read_as_none(self, store: InteractionStore) -> None:
        assert await store.get("nothing") is None
        assert await store.contact("nobody") is None

    # --- optimistic concurrency ----------------------------------------------

    async def test_a_save_from_a_stale_version_conflicts_and_writes_nothing(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        v1 = touch("i-1", "c-1", clock.now())
        await store.commit(recording(v1))
        v2 = rules.rated(v1, 4, AGENT, clock.advance(timedelta(minutes=1)))
        await store.commit(
            Change(saves=[(v2, 1)], events=[InteractionRated(v2, AGENT, clock.now())])
        )

        stale = rules.rated(v1, 1, AGENT, clock.now())
        with pytest.raises(VersionConflictError):
            await store.commit(
                Change(saves=[(stale, 1)], events=[InteractionRated(stale, AGENT, clock.now())])
            )

        assert await store.get("i-1") == v2
        assert await store.outbox_backlog() == 2

    async def test_a_new_interaction_under_an_existing_id_conflicts(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        first = touch("i-1", "c-1", clock.now())
        await store.commit(recording(first))

        with pytest.raises(VersionConflictError):
            await store.commit(recording(touch("i-1", "c-2", clock.now())))

        assert await store.get("i-1") == first

    async def test_a_change_that_fails_halfway_writes_nothing(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        first = touch("i-1", "c-1", clock.now())
        await store.commit(recording(first))
        fresh = touch("i-2", "c-1", clock.now())

        with pytest.raises(VersionConflictError):
            await store.commit(
                Change(
                    saves=[(fresh, 0), (touch("i-1", "c-2", clock.now()), 0)],
                    contacts=[KnownContact("c-9")],
                    events=[InteractionRecorded(fresh, AGENT, clock.now())],
                )
            )

        assert await store.get("i-2") is None
        assert await store.contact("c-9") is None
        assert await store.get("i-1") == first
        assert await store.outbox_backlog() == 1

    # --- the contacts read model -------------------------------------------------------------

    async def test_the_read_model_keeps_erasures_and_merges(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        erased = KnownContact("c-1", erased_at=clock.now())
        merged = KnownContact("c-2", merged_into_id="c-3")
        await store.commit(Change(contacts=[KnownContact("c-1"), KnownContact("c-2")]))
        await store.commit(Change(contacts=[erased, merged]))

        assert await store.contact("c-1") == erased
        assert await store.contact("c-2") == merged

    async def test_the_read_model_keeps_each_contacts_team_and_how_far_its_erasure_went(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        profiled = KnownContact("c-1", owner_id="agent-ana", team="madrid", profile_at=clock.now())
        confirmed = replace(
            profiled, erased_at=clock.now(), erasure_confirmed_at=clock.now() + timedelta(1)
        )
        await store.commit(Change(contacts=[profiled]))
        assert await store.contact("c-1") == profiled
        await store.commit(Change(contacts=[confirmed]))
        assert await store.contact("c-1") == confirmed

    async def test_what_was_merged_into_a_contact_is_found_from_it(
        self, store: InteractionStore
    ) -> None:
        await store.commit(
            Change(
                contacts=[
                    KnownContact("c-2", merged_into_id="c-1"),
                    KnownContact("c-3", merged_into_id="c-1"),
                    KnownContact("c-4", merged_into_id="c-2"),
                    KnownContact("c-1"),
                ]
            )
        )
        assert list(await store.merged_into("c-1")) == ["c-2", "c-3"]
        assert list(await store.merged_into("c-2")) == ["c-4"]
        assert list(await store.merged_into("c-4")) == []

    @pytest.mark.parametrize(
        "state",
        [
            pytest.param(None, id="unknown"),
            pytest.param(
                KnownContact("c-1", erased_at=datetime(2026, 1, 1, tzinfo=UTC)), id="erased"
            ),
            pytest.param(KnownContact("c-1", merged_into_id="c-9"), id="merged"),
        ],
    )
    async def test_a_touch_for_a_contact_that_is_not_live_is_not_written(
        self, store: InteractionStore, clock: ManualClock, state: KnownContact | None
    ) -> None:
        if state is not None:
            await store.commit(Change(contacts=[state]))

        with pytest.raises(ContactGoneError):
            await store.commit(recording(touch("i-1", "c-1", clock.now()), live_contact="c-1"))

        assert await store.get("i-1") is None
        assert await store.outbox_backlog() == 0

    async def test_a_touch_for_a_live_contact_is_written(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        await store.commit(Change(contacts=[KnownContact("c-1")]))
        await store.commit(recording(touch("i-1", "c-1", clock.now()), live_contact="c-1"))
        assert await store.get("i-1") is not None

    # --- the timeline ------------------------------------------------------------------------

    @pytest.fixture
    async def history(self, store: InteractionStore, clock: ManualClock) -> InteractionStore:
        """Six touches of c-1 a day apart (two at the same instant), and one of c-2."""
        t0 = clock.now()
        day = timedelta(days=1)
        for i in [
            touch("t-1", "c-1", t0),
            touch("t-2", "c-1", t0 + day, type=InteractionType.COMPLAINT),
            touch("t-3a", "c-1", t0 + 2 * day, channel=Channel.EMAIL),
            touch("t-3b", "c-1", t0 + 2 * day, agent="agent-bo"),
            touch("t-4", "c-1", t0 + 3 * day + timedelta(microseconds=1)),
            touch("t-5", "c-1", t0 + 4 * day, type=InteractionType.COMPLAINT),
            touch("x-1", "c-2", t0 + day),
        ]:
            await store.commit(recording(i))
        return store

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            pytest.param({}, ["t-5", "t-4", "t-3b", "t-3a", "t-2", "t-1"], id="all"),
            pytest.param({"type": InteractionType.COMPLAINT}, ["t-5", "t-2"], id="type"),
            pytest.param({"channel": Channel.EMAIL}, ["t-3a"], id="channel"),
            pytest.param({"agent_id": "agent-bo"}, ["t-3b"], id="agent"),
            pytest.param(
                {"occurred_after": timedelta(days=2), "occurred_before": timedelta(days=4)},
                ["t-4", "t-3b", "t-3a"],
                id="window",
            ),
        ],
    )
    async def test_the_timeline_is_newest_first_and_filtered(
        self,
        history: InteractionStore,
        clock: ManualClock,
        changes: dict[str, object],
        expected: list[str],
    ) -> None:
        values = {k: clock.now() + v if isinstance(v, timedelta) else v for k, v in changes.items()}
        f = TimelineFilter("c-1", **values)  # type: ignore[arg-type]
        assert ids(await history.timeline(f, None, 100)) == expected

    async def test_a_scoped_timeline_holds_the_teams_the_unassigned_and_the_agents_touches(
        self, store: InteractionStore, clock: ManualClock
    ) -> None:
        t0 = clock.now()
        for i in [
            touch("mine-elsewhere", "c-1", t0, team="paris"),
            touch("madrid", "c-1", t0 + timedelta(1), agent="agent-bea", team="madrid"),
            touch("paris", "c-1", t0 + timedelta(2), agent="agent-paul", team="paris"),
            touch("unassigned", "c-1", t0 + timedelta(3), agent="agent-bea"),
        ]:
            await store.commit(recording(i))
        scope = Scope(team="madrid", agent_id=AGENT)

        everything = await store.timeline(TimelineFilter("c-1"), None, 10)
        scoped = await store.timeline(TimelineFilter("c-1"), None, 10, scope)
        second_page = await store.timeline(
            TimelineFilter("c-1"), Cursor(scoped[1].details.occurred_at, scoped[1].id), 10, scope
        )

        assert len(everything) == 4
        assert ids(scoped) == ["unassigned", "madrid", "mine-elsewhere"]
        assert ids(second_page) == ["mine-elsewhere"]

    async def test_the_timeline_pages_with_a_cursor_and_breaks_ties_by_id(
        self, history: InteractionStore
    ) -> None:
        pages: list[list[str]] = []
        after: Cursor | None = None
        while page := await history.timeline(TimelineFilter("c-1"), after, 2):
            pages.append(ids(page))
            after = Cursor(page[-1].details.occurred_at, page[-1].id)

        assert pages == [["t-5", "t-4"], ["t-3b", "t-3a"], ["t-2", "t-1"]]

    async def test_a_window_or_cursor_at_the_ends_of_the_calendar_is_a_plain_query(
        self, history: InteractionStore
    ) -> None:
        """A caller may ask for everything from year 1 to 9999: the sort key of either end
        is still a number, not an overflow."""
        first = datetime(1, 1, 1, tzinfo=UTC)
        last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        everything = TimelineFilter("c-1", occurred_after=first, occurred_before=last)

        assert len(await history.timeline(everything, None, 100)) == 6
        assert len(await history.timeline(TimelineFilter("c-1"), Cursor(last, "~"), 100)) == 6
        assert await history.timeline(TimelineFilter("c-1"), Cursor(first, ""), 100) == []

    async def test_cascades_select_a_contacts_touches_and_skip_those_already_erased(
        self, history: InteractionStore, clock: ManualClock
    ) -> None:
        [one] = await history.timeline(
            TimelineFilter("c-1", type=InteractionType.COMPLAINT), None, 1
        )
        gone = rules.erased(one, "sup-sam", clock.now())
        await history.commit(Change(saves=[(gone, one.version)]))

        everything = await history.of_contact("c-1", 100)
        unerased = await history.of_contact("c-1", 100, unerased_only=True)

        assert len(everything) == 6 and one.id not in ids(unerased) and len(unerased) == 5
        assert len(await history.of_contact("c-1", 2)) == 2


class TestSqliteInteractionStore(InteractionStoreContract):
    async def create_store(self, tmp_path: Path, clock: ManualClock) -> InteractionStore:
        return SqliteInteractionStore(tmp_path / "interactions.db", event_codec.encode, clock)

    async def test_a_database_from_before_contacts_had_teams_opens_and_reads(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        path = tmp_path / "old.db"
        with sqlite3.connect(path) as old:
            old.execute(
                "CREATE TABLE known_contacts (id TEXT PRIMARY KEY, merged_into_id TEXT NOT NULL,"
                " erased_at TEXT) WITHOUT ROWID"
            )
            old.execute("INSERT INTO known_contacts VALUES ('c-1', 'c-2', NULL)")
        old.close()

        store = SqliteInteractionStore(path, event_codec.encode, clock)
        try:
            assert await store.contact("c-1") == KnownContact("c-1", merged_into_id="c-2")
            assert list(await store.merged_into("c-2")) == ["c-1"]
        finally:
            await store.close()

    @pytest.mark.parametrize(("f", "scope"), PLANNED)
    async def test_a_timeline_page_is_read_from_the_index_without_sorting(
        self, history: InteractionStore, clock: ManualClock, f: TimelineFilter, scope: Scope | None
    ) -> None:
        """So a contact with 10,000 touches among 1,000,000 pages as fast as one with ten."""
        assert isinstance(history, SqliteInteractionStore)
        conn = history._conn
        issued: list[str] = []
        conn.set_trace_callback(issued.append)
        try:
            await history.timeline(f, Cursor(clock.now(), "t-9"), 50, scope)
        finally:
            conn.set_trace_callback(None)
        [query] = [q for q in issued if q.startswith("SELECT")]

        plan = " | ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))

        assert "USING INDEX interactions_timeline" in plan
        assert "TEMP B-TREE" not in plan


@pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")
class TestMongoInteractionStore(InteractionStoreContract):
    database: str

    @pytest.fixture(autouse=True)
    def _secantus_range_scan(self, request: pytest.FixtureRequest) -> None:
        """A time window over the timeline index is a range on `occurred_us` followed by `_id`:
        SecantusDB 0.7.0b3 returns too few rows from such a scan (reproduced on its own in
        tests/platform/test_mongo_wire.py). The query is right for MongoDB, so it stays; the
        case is an expected failure there, strict, so that a fixed release shows up."""
        callspec = getattr(request.node, "callspec", None)
        if (
            request.node.originalname == "test_the_timeline_is_newest_first_and_filtered"
            and callspec is not None
            and callspec.id == "window"
            and mongodb_is_secantus(MONGODB_URI)
        ):
            request.applymarker(
                pytest.mark.xfail(strict=True, reason="SecantusDB compound-index range scan")
            )

    async def create_store(self, tmp_path: Path, clock: ManualClock) -> InteractionStore:
        self.database = f"promesa_contract_{uuid.uuid4().hex}"
        return await MongoInteractionStore.open(
            MONGODB_URI, self.database, event_codec.encode, clock
        )

    async def dispose_store(self, store: InteractionStore) -> None:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()

    @mongod_planner_only(MONGODB_URI)
    @pytest.mark.parametrize(("f", "scope"), PLANNED)
    async def test_a_timeline_page_is_read_from_the_index_without_sorting(
        self, history: InteractionStore, clock: ManualClock, f: TimelineFilter, scope: Scope | None
    ) -> None:
        """The same guarantee as SQLite's, read from the server's winning plan."""
        assert isinstance(history, MongoInteractionStore)
        query, sort = timeline_query(f, Cursor(clock.now(), "t-9"), scope)
        cursor = history._interactions.find(query).sort(sort).limit(50)

        stages = plan_stages((await cursor.explain())["queryPlanner"]["winningPlan"])

        assert ("IXSCAN", "interactions_timeline") in stages
        assert "SORT" not in [stage for stage, _ in stages]
