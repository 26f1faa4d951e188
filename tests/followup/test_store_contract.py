"""One contract for the follow-up storage port, run against every adapter.

It tests the port's own methods: what a commit saves and refuses, how promises are found
(by contact, by kind, by filter and page, overdue, made in a window), how reminders are listed,
claimed on a lease and replanned, the contacts' preferences, and their fates (combined, never
replaced; a change for a contact gone meanwhile refused). The outbox, inbox, idempotency
and dead-letter behaviour of the store bases is tested once for every service, in
tests/platform.

`PromiseStoreContract` holds the behaviour; an adapter subclasses it and says how to create (and
dispose of) a store. SQLite always runs; MongoDB runs when CRM_TEST_MONGODB_URI names a replica
set (transactions need one), each test in a database of its own that is dropped afterwards.
"""

from __future__ import annotations

import abc
import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from followup.adapters import event_codec
from followup.adapters.mongo_store import MongoPromiseStore, due_query, next_due_query
from followup.adapters.sqlite_store import SCHEMA, SqlitePromiseStore
from followup.domain import lifecycle, notices
from followup.domain.contacts import ContactFate, ContactPreferences, QuietHours
from followup.domain.events import PromiseEvent, PromiseMade
from followup.domain.model import (
    LATEST,
    Action,
    Channel,
    Evidence,
    HistoryEntry,
    Priority,
    Promise,
    PromiseKind,
    Status,
)
from followup.domain.reminders import (
    DeliveryAttempt,
    NoticeReason,
    NoticeRecord,
    NoticeTemplate,
    Outcome,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    delivery,
)
from followup.ports import (
    Change,
    Claim,
    ContactGoneError,
    LeaseLostError,
    PromiseFilter,
    PromiseStore,
)
from promesa.clock import ManualClock
from promesa.events import OutgoingEvent
from promesa.pagination import Cursor
from promesa.storage import AlreadyHandledError, IdempotencyKey, InboxKey, VersionConflictError
from tests.support import mongod_planner_only, plan_stages

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
POLICY = ReminderPolicy()


class RecordingEncoder:
    """The real event codec, keeping what it produced so the outbox can be compared to it."""

    def __init__(self) -> None:
        self.produced: list[OutgoingEvent] = []

    def __call__(self, event: PromiseEvent) -> OutgoingEvent:
        encoded = event_codec.encode(event)
        self.produced.append(encoded)
        return encoded


def a_promise(promise_id: str = "p1", due_in: timedelta = 5 * HOUR, **fields: object) -> Promise:
    """A new promise, made at T0 by its owner; `fields` override any other attribute."""
    made = lifecycle.created(
        Promise(
            id=promise_id,
            contact_id="c1",
            text="Call back",
            kind=PromiseKind.CALL_BACK,
            owner_id="ana",
            team="madrid",
            created_by="ana",
            due_at=T0 + due_in,
            created_at=T0,
        )
    )
    return replace(made, **fields)  # type: ignore[arg-type]


def changed(p: Promise, **fields: object) -> Promise:
    """The next version of a promise, as a use case would save it."""
    return replace(p, version=p.version + 1, **fields)  # type: ignore[arg-type]


def making(*promises: Promise) -> Change:
    return Change(saves=[(p, 0) for p in promises])


def a_reminder(
    p: Promise,
    reminder_id: str,
    at: datetime,
    kind: ReminderKind = ReminderKind.AT_DUE,
    recipient: str = "",
) -> ReminderDelivery:
    return delivery(p, kind, at, recipient or p.owner_id, POLICY, reminder_id)


def ids(found: Sequence[Promise] | Sequence[ReminderDelivery]) -> list[str]:
    return [x.id for x in found]


def completed(claim: Claim, **fields: object) -> Claim:
    """The claimed reminder as the scheduler completes it."""
    return replace(claim, delivery=replace(claim.delivery, **fields))  # type: ignore[arg-type]


class PromiseStoreContract(abc.ABC):
    """What every PromiseStore adapter does; subclasses only create and dispose of stores."""

    @abc.abstractmethod
    async def create_store(self, tmp_path: Path, encode: RecordingEncoder) -> PromiseStore: ...

    @abc.abstractmethod
    async def open_peer(self, tmp_path: Path) -> PromiseStore:
        """Another store on the data of the one `create_store` made: a second replica."""

    async def dispose_store(self, store: PromiseStore) -> None:
        await store.close()

    @pytest.fixture
    def encoder(self) -> RecordingEncoder:
        return RecordingEncoder()

    @pytest.fixture
    async def store(self, tmp_path: Path, encoder: RecordingEncoder) -> AsyncIterator[PromiseStore]:
        store = await self.create_store(tmp_path, encoder)
        try:
            yield store
        finally:
            await self.dispose_store(store)

    # --- reading back what was committed -----------------------------------------------------

    async def test_a_promise_reads_back_equal_with_every_field(self, store: PromiseStore) -> None:
        at = T0.replace(microsecond=123456)
        p = a_promise(
            "p1",
            text="Send the replacement part, ñ and 日本",
            kind=PromiseKind.DELIVER,
            channel=Channel.EMAIL,
            priority=Priority.URGENT,
            source_interaction_id="i-1",
            follows_promise_id="p0",
            status=Status.KEPT,
            cancel_reason="",
            kept_at=at + 2 * HOUR,
            kept_on_time=True,
            evidence=Evidence("i-2", "Sent by courier.\nTracking 123."),
            customer_confirmed=True,
            confirmed_at=at + 3 * HOUR,
            satisfaction=4,
            handoff_count=2,
            renegotiation_count=1,
            paused_total=timedelta(days=3, microseconds=7),
            escalated_at=at + HOUR,
            overdue_noted_for=at + 5 * HOUR,
            history=(
                HistoryEntry("ana", at, Action.CREATED, to_value="2026-03-02T14:00:00Z"),
                HistoryEntry("system", at + HOUR, Action.ESCALATED, "overdue", "", "sup"),
                HistoryEntry("bea", at + 2 * HOUR, Action.KEPT, "done", "", "i-2"),
            ),
            version=7,
            updated_at=at + 3 * HOUR,
            updated_by="bea",
        )
        waiting = a_promise(
            "p2", status=Status.WAITING_ON_CUSTOMER, paused_at=at, erased_at=at + MINUTE
        )

        await store.commit(making(p, waiting))

        assert await store.get("p1") == p
        assert await store.get("p2") == waiting

    async def test_unknown_ids_read_as_nothing(self, store: PromiseStore) -> None:
        assert await store.get("nope") is None
        assert await store.get_many(["nope"]) == []
        assert await store.get_many([]) == []
        assert await store.of_contact("nobody") == []
        assert await store.open_of_kind("nobody", PromiseKind.WIN_BACK) == []
        assert await store.profile("nobody") is None
        assert await store.deliveries("nope", "", None, 10) == []
        assert await store.claim_due(T0, T0 + MINUTE, 10) == []

    async def test_get_many_reads_the_known_ids_of_a_batch(self, store: PromiseStore) -> None:
        await store.commit(making(a_promise("p1"), a_promise("p2"), a_promise("p3")))

        found = await store.get_many(["p3", "nope", "p1", "p3"])

        assert sorted(ids(found)) == ["p1", "p3"]

    async def test_a_commit_carries_its_events_request_key_and_inbox_row(
        self, store: PromiseStore, encoder: RecordingEncoder
    ) -> None:
        """How the outbox, the request log and the inbox behave is the platform's
        (tests/platform); here only that this port's commit hands them what its Change holds."""
        p = a_promise()
        key = IdempotencyKey("req-1", "create", "digest-1", p.id)
        await store.commit(
            Change(saves=[(p, 0)], events=[PromiseMade(p, "ana", T0)], idempotency=key)
        )
        await store.commit(Change(handled=InboxKey("followup-contacts", "evt-1")))

        [(_, event)] = await store.pending_events(10)
        assert [event] == encoder.produced
        assert event.subject == "crm.followup.promise_made.c1" and event.ce_subject == p.id
        assert await store.find_request("req-1") == key
        with pytest.raises(AlreadyHandledError):
            await store.commit(
                Change(saves=[(a_promise("p2"), 0)], handled=InboxKey("followup-contacts", "evt-1"))
            )
        assert await store.get("p2") is None

    # --- optimistic concurrency --------------------------------------------------------------

    async def test_a_save_from_a_stale_version_conflicts_and_writes_nothing(
        self, store: PromiseStore
    ) -> None:
        v1 = a_promise()
        await store.commit(making(v1))
        v2 = changed(v1, owner_id="bea")
        await store.commit(Change(saves=[(v2, v1.version)]))

        # When a writer that still holds version 1 saves, with a plan, a profile and an event
        stale = changed(v1, owner_id="cid")
        with pytest.raises(VersionConflictError) as raised:
            await store.commit(
                Change(
                    saves=[(stale, v1.version)],
                    events=[PromiseMade(stale, "cid", T0)],
                    replans={v1.id: [a_reminder(stale, "r1", T0)]},
                    profiles=[ContactPreferences("c1")],
                )
            )

        # Then nothing of it was written
        assert raised.value.resource_id == v1.id
        assert await store.get(v1.id) == v2
        assert await store.deliveries(v1.id, "", None, 10) == []
        assert await store.profile("c1") is None
        assert await store.outbox_backlog() == 0

    async def test_saving_a_new_promise_under_an_existing_id_conflicts(
        self, store: PromiseStore
    ) -> None:
        first = a_promise()
        await store.commit(making(first))

        with pytest.raises(VersionConflictError):
            await store.commit(making(a_promise(text="An impostor")))

        assert await store.get(first.id) == first

    async def test_a_conflict_in_one_save_rolls_back_the_whole_change(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(making(p))
        fresh = a_promise("p2")
        notice = notices.schedule(fresh, NoticeReason.PROMISE_MADE, T0, "n1")

        with pytest.raises(VersionConflictError):
            await store.commit(
                Change(
                    saves=[(fresh, 0), (changed(p, team="lisbon"), p.version + 5)],
                    events=[PromiseMade(fresh, "ana", T0)],
                    replans={fresh.id: [a_reminder(fresh, "r1", T0)]},
                    added=[notice],
                    profiles=[ContactPreferences("c1")],
                )
            )

        assert await store.get_many(["p2"]) == []
        assert await store.get(p.id) == p
        assert await store.deliveries("", "", None, 10) == []
        assert await store.profile("c1") is None
        assert await store.outbox_backlog() == 0

    async def test_a_saved_change_is_what_every_read_sees(self, store: PromiseStore) -> None:
        """The columns reads filter on follow the promise: owner, team, status, due time."""
        p = a_promise(due_in=HOUR)
        await store.commit(making(p))
        moved = changed(
            p, owner_id="bea", team="lisbon", contact_id="c2", status=Status.KEPT, due_at=T0
        )

        await store.commit(Change(saves=[(moved, p.version)]))

        assert await store.get(p.id) == moved
        assert ids(await store.list(PromiseFilter(owner_id="bea", team="lisbon"), None, 9)) == [
            p.id
        ]
        assert await store.list(PromiseFilter(owner_id="ana"), None, 9) == []
        assert ids(await store.list(PromiseFilter(status=Status.KEPT), None, 9)) == [p.id]
        assert ids(await store.of_contact("c2")) == [p.id]
        assert await store.of_contact("c1") == []
        assert await store.list(PromiseFilter(overdue_at=T0 + HOUR), None, 9) == []

    # --- a contact's promises ----------------------------------------------------------------

    async def test_of_contact_finds_every_promise_of_the_contact_whatever_its_status(
        self, store: PromiseStore
    ) -> None:
        await store.commit(
            making(
                a_promise("open"),
                a_promise("kept", status=Status.KEPT),
                a_promise("cancelled", status=Status.CANCELLED),
                a_promise("erased", status=Status.CANCELLED, erased_at=T0),
                a_promise("waiting", status=Status.WAITING_ON_CUSTOMER, paused_at=T0),
                a_promise("someone-else", contact_id="c2"),
            )
        )

        found = await store.of_contact("c1")

        assert sorted(ids(found)) == ["cancelled", "erased", "kept", "open", "waiting"]

    async def test_open_of_kind_finds_the_contacts_open_and_waiting_ones_of_that_kind(
        self, store: PromiseStore
    ) -> None:
        win_back = PromiseKind.WIN_BACK
        await store.commit(
            making(
                a_promise("open", kind=win_back),
                a_promise("waiting", kind=win_back, status=Status.WAITING_ON_CUSTOMER),
                a_promise("kept", kind=win_back, status=Status.KEPT),
                a_promise("cancelled", kind=win_back, status=Status.CANCELLED),
                a_promise("other-kind"),
                a_promise("other-contact", kind=win_back, contact_id="c2"),
            )
        )

        found = await store.open_of_kind("c1", win_back)

        assert sorted(ids(found)) == ["open", "waiting"]
        assert await store.open_of_kind("c1", PromiseKind.VISIT) == []

    # --- listing -----------------------------------------------------------------------------

    @pytest.fixture
    async def population(self, store: PromiseStore) -> PromiseStore:
        """Six promises due an hour apart (p1 first), of two owners, teams and contacts."""
        await store.commit(
            making(
                a_promise("p1", HOUR),
                a_promise("p2", 2 * HOUR, owner_id="bea", team="lisbon"),
                a_promise("p3", 3 * HOUR, contact_id="c2", status=Status.KEPT),
                a_promise("p4", 4 * HOUR, status=Status.WAITING_ON_CUSTOMER, paused_at=T0),
                a_promise("p5", 5 * HOUR, owner_id="bea", status=Status.CANCELLED),
                a_promise("p6", 6 * HOUR, team="lisbon", contact_id="c2"),
            )
        )
        return store

    @pytest.mark.parametrize(
        ("f", "expected"),
        [
            pytest.param(PromiseFilter(), ["p1", "p2", "p3", "p4", "p5", "p6"], id="all"),
            pytest.param(PromiseFilter(owner_id="bea"), ["p2", "p5"], id="owner"),
            pytest.param(PromiseFilter(team="lisbon"), ["p2", "p6"], id="team"),
            pytest.param(PromiseFilter(contact_id="c2"), ["p3", "p6"], id="contact"),
            pytest.param(PromiseFilter(status=Status.OPEN), ["p1", "p2", "p6"], id="open"),
            pytest.param(PromiseFilter(status=Status.WAITING_ON_CUSTOMER), ["p4"], id="waiting"),
            pytest.param(PromiseFilter(status=Status.KEPT), ["p3"], id="kept"),
            pytest.param(PromiseFilter(status=Status.CANCELLED), ["p5"], id="cancelled"),
            pytest.param(
                PromiseFilter(due_after=T0 + 5 * HOUR), ["p5", "p6"], id="due-after-inclusive"
            ),
            pytest.param(
                PromiseFilter(due_before=T0 + 2 * HOUR), ["p1"], id="due-before-exclusive"
            ),
            pytest.param(
                PromiseFilter(due_after=T0 + 2 * HOUR, due_before=T0 + 4 * HOUR + MINUTE),
                ["p2", "p3", "p4"],
                id="due-window",
            ),
            pytest.param(
                PromiseFilter(owner_id="ana", team="lisbon", status=Status.OPEN),
                ["p6"],
                id="owner-team-status",
            ),
            pytest.param(PromiseFilter(owner_id="nobody"), [], id="no-match"),
        ],
    )
    async def test_list_matches_by_filter_earliest_due_first(
        self, population: PromiseStore, f: PromiseFilter, expected: list[str]
    ) -> None:
        assert ids(await population.list(f, None, 100)) == expected

    async def test_list_pages_with_the_cursor_and_breaks_ties_by_id(
        self, store: PromiseStore
    ) -> None:
        for promise_id, due_in in [
            ("b", HOUR),
            ("a", HOUR),
            ("c", 2 * HOUR),
            ("d", 2 * HOUR + timedelta(microseconds=5)),
            ("e", 3 * HOUR),
        ]:
            await store.commit(making(a_promise(promise_id, due_in)))

        pages: list[list[str]] = []
        after: Cursor | None = None
        while page := await store.list(PromiseFilter(), after, 2):
            pages.append(ids(page))
            after = Cursor(page[-1].due_at, page[-1].id)

        assert pages == [["a", "b"], ["c", "d"], ["e"]]

    async def test_list_pages_of_a_filter_stay_within_it(self, population: PromiseStore) -> None:
        first = await population.list(PromiseFilter(status=Status.OPEN), None, 2)
        rest = await population.list(
            PromiseFilter(status=Status.OPEN), Cursor(first[-1].due_at, first[-1].id), 2
        )

        assert (ids(first), ids(rest)) == (["p1", "p2"], ["p6"])

    async def test_overdue_are_open_promises_due_before_the_instant(
        self, population: PromiseStore
    ) -> None:
        exactly_due = await population.list(PromiseFilter(overdue_at=T0 + 2 * HOUR), None, 9)
        later = await population.list(PromiseFilter(overdue_at=T0 + 10 * HOUR), None, 9)
        of_bea = await population.list(
            PromiseFilter(overdue_at=T0 + 10 * HOUR, owner_id="bea"), None, 9
        )

        assert ids(exactly_due) == ["p1"]  # due at that very instant is not late yet
        assert ids(later) == ["p1", "p2", "p6"]  # kept, cancelled and waiting ones are not
        assert ids(of_bea) == ["p2"]

    async def test_a_waiting_promise_is_overdue_only_if_it_was_paused_after_its_due_time(
        self, store: PromiseStore
    ) -> None:
        waiting = Status.WAITING_ON_CUSTOMER
        await store.commit(
            making(
                a_promise("paused-in-time", HOUR, status=waiting, paused_at=T0 + 30 * MINUTE),
                a_promise("paused-late", HOUR, status=waiting, paused_at=T0 + 2 * HOUR),
            )
        )

        found = await store.list(PromiseFilter(overdue_at=T0 + 10 * HOUR), None, 9)

        assert ids(found) == ["paused-late"]

    async def test_made_between_includes_the_start_and_excludes_the_end(
        self, store: PromiseStore
    ) -> None:
        tick = timedelta(microseconds=1)
        await store.commit(
            making(
                a_promise("before", created_at=T0 - tick),
                a_promise("at-start", created_at=T0),
                a_promise("inside", created_at=T0 + HOUR),
                a_promise("at-end", created_at=T0 + 2 * HOUR),
            )
        )

        window = await store.made_between(T0, T0 + 2 * HOUR)
        from_start = await store.made_between(T0, None)
        until_end = await store.made_between(None, T0 + 2 * HOUR)
        every = await store.made_between(None, None)

        assert sorted(ids(window)) == ["at-start", "inside"]
        assert sorted(ids(from_start)) == ["at-end", "at-start", "inside"]
        assert sorted(ids(until_end)) == ["at-start", "before", "inside"]
        assert len(every) == 4

    async def test_times_at_the_ends_of_the_calendar_are_kept_and_ordered(
        self, store: PromiseStore
    ) -> None:
        """A promise due at the calendar's end (an interaction may say so) is read, listed
        last, and its never-reached reminder is never due."""
        at_the_end = a_promise(
            "forever", due_at=LATEST, status=Status.WAITING_ON_CUSTOMER, paused_at=T0
        )
        escalation = a_reminder(at_the_end, "r-end", LATEST, ReminderKind.ESCALATION, "sup")
        await store.commit(
            Change(
                saves=[(at_the_end, 0), (a_promise("soon"), 0)],
                replans={at_the_end.id: [escalation]},
            )
        )

        assert await store.get("forever") == at_the_end
        assert ids(await store.list(PromiseFilter(), None, 9)) == ["soon", "forever"]
        assert ids(await store.list(PromiseFilter(overdue_at=T0 + HOUR * 24), None, 9)) == ["soon"]
        assert await store.deliveries("forever", "", None, 9) == [escalation]
        assert await store.claim_due(T0 + timedelta(days=3650), T0 + timedelta(days=3651), 9) == []

    # --- reminder deliveries -----------------------------------------------------------------

    async def test_a_delivery_reads_back_equal_with_its_attempts_and_notice(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        at = T0.replace(microsecond=654321)
        sent = replace(
            a_reminder(p, "r1", at),
            next_attempt_at=at + MINUTE,
            remaining=("webhook",),
            attempts=(
                DeliveryAttempt("nats", at, True),
                DeliveryAttempt("webhook", at, False, "HTTP 503"),
            ),
            outcome=Outcome.DELIVERED,
            rounds=1,
            announced=True,
        )
        notice = replace(
            notices.schedule(p, NoticeReason.DUE_DATE_RENEGOTIATED, at, "n1"),
            outcome=Outcome.DROPPED,
            next_attempt_at=None,
            notice=NoticeRecord(
                reason=NoticeReason.DUE_DATE_RENEGOTIATED,
                renegotiation=2,
                channel=Channel.EMAIL,
                template=NoticeTemplate.NEW_DUE_DATE,
                due_at=at + HOUR,
                quiet_hours_end_at=at + 2 * HOUR,
                dropped_reason="contact erased",
            ),
        )

        await store.commit(Change(saves=[(p, 0)], added=[sent, notice]))

        assert await store.deliveries(p.id, "", None, 10) == [sent, notice]

    async def test_deliveries_are_listed_latest_scheduled_first_by_promise_or_owner(
        self, store: PromiseStore
    ) -> None:
        p1, p2 = a_promise("p1"), a_promise("p2", owner_id="bea")
        await store.commit(
            Change(
                saves=[(p1, 0), (p2, 0)],
                replans={
                    p1.id: [a_reminder(p1, "r1", T0), a_reminder(p1, "r3", T0 + 2 * HOUR)],
                    p2.id: [a_reminder(p2, "r2", T0 + HOUR)],
                },
                added=[a_reminder(p1, "r4", T0 + 3 * HOUR, ReminderKind.ESCALATION, "sup")],
            )
        )

        assert ids(await store.deliveries("p1", "", None, 10)) == ["r4", "r3", "r1"]
        assert ids(await store.deliveries("", "bea", None, 10)) == ["r2"]
        assert ids(await store.deliveries("", "ana", None, 10)) == ["r4", "r3", "r1"]
        assert ids(await store.deliveries("p1", "bea", None, 10)) == []
        assert ids(await store.deliveries("", "", None, 10)) == ["r4", "r3", "r2", "r1"]

    async def test_deliveries_page_with_the_cursor_and_break_ties_by_id(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        at = T0 + HOUR
        await store.commit(
            Change(
                saves=[(p, 0)],
                added=[
                    a_reminder(p, "r-a", at),
                    a_reminder(p, "r-b", at),
                    a_reminder(p, "r-c", at + timedelta(microseconds=3)),
                    a_reminder(p, "r-d", T0),
                    a_reminder(p, "r-e", at + HOUR),
                ],
            )
        )

        pages: list[list[str]] = []
        before: Cursor | None = None
        while page := await store.deliveries(p.id, "", before, 2):
            pages.append(ids(page))
            before = Cursor(page[-1].scheduled_at, page[-1].id)

        assert pages == [["r-e", "r-c"], ["r-b", "r-a"], ["r-d"]]

    # --- replanning ----------------------------------------------------------------------------

    async def test_a_replan_replaces_only_reminders_not_yet_attempted(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        due = [a_reminder(p, "r1", T0), a_reminder(p, "r2", T0 + HOUR)]
        await store.commit(Change(saves=[(p, 0)], replans={p.id: due}))
        [claim] = await store.claim_due(T0, T0 + MINUTE, 10)
        await store.commit(
            Change(completed=[completed(claim, outcome=Outcome.DELIVERED, next_attempt_at=None)])
        )

        await store.commit(Change(replans={p.id: [a_reminder(p, "r3", T0 + 2 * HOUR)]}))

        listed = await store.deliveries(p.id, "", None, 10)
        assert ids(listed) == ["r3", "r1"]  # latest scheduled first; r2 replaced

    async def test_a_replan_of_one_promise_leaves_the_others_reminders_alone(
        self, store: PromiseStore
    ) -> None:
        p1, p2 = a_promise("p1"), a_promise("p2")
        await store.commit(
            Change(
                saves=[(p1, 0), (p2, 0)],
                replans={p1.id: [a_reminder(p1, "r1", T0)], p2.id: [a_reminder(p2, "r2", T0)]},
            )
        )

        await store.commit(Change(replans={p1.id: []}))  # e.g. p1 was kept

        assert await store.deliveries("p1", "", None, 10) == []
        assert ids(await store.deliveries("p2", "", None, 10)) == ["r2"]
        assert [c.delivery.id for c in await store.claim_due(T0, T0 + MINUTE, 10)] == ["r2"]

    async def test_a_replan_leaves_queued_customer_notices_and_they_read_back_equal(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        notice = notices.schedule(p, NoticeReason.DUE_DATE_RENEGOTIATED, T0, "n1")
        await store.commit(
            Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}, added=[notice])
        )
        await store.commit(Change(replans={p.id: []}))  # e.g. the promise was paused
        assert await store.deliveries(p.id, "", None, 10) == [notice]

        [claim] = await store.claim_due(T0, T0 + MINUTE, 10)
        until = T0 + 9 * HOUR
        held = notices.held(claim.delivery, until)
        await store.commit(Change(completed=[replace(claim, delivery=held)]))
        assert await store.claim_due(until - timedelta(seconds=1), until, 10) == []
        [again] = await store.claim_due(until, until + MINUTE, 10)
        assert again.delivery == held

    async def test_a_reminder_replanned_away_while_claimed_cannot_be_completed(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        [claim] = await store.claim_due(T0, T0 + MINUTE, 10)
        await store.commit(Change(replans={p.id: [a_reminder(p, "r2", T0 + HOUR)]}))

        with pytest.raises(LeaseLostError):
            await store.commit(Change(completed=[completed(claim, next_attempt_at=None)]))

        assert ids(await store.deliveries(p.id, "", None, 10)) == ["r2"]

    # --- the scheduler's claims --------------------------------------------------------------

    async def test_claim_due_leases_what_is_due_earliest_first_up_to_the_limit(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(
            Change(
                saves=[(p, 0)],
                replans={
                    p.id: [
                        a_reminder(p, "late", T0 + HOUR),
                        a_reminder(p, "second", T0 - MINUTE),
                        a_reminder(p, "first", T0 - HOUR),
                        a_reminder(p, "third", T0),
                    ]
                },
            )
        )

        first = await store.claim_due(T0, T0 + MINUTE, 2)
        rest = await store.claim_due(T0, T0 + MINUTE, 10)

        assert [c.delivery.id for c in first] == ["first", "second"]
        assert [c.delivery.id for c in rest] == ["third"]  # "late" is not due yet
        assert len({c.token for c in first}) == 1 and first[0].token != rest[0].token
        assert first[0].delivery == a_reminder(p, "first", T0 - HOUR)

    async def test_a_claim_is_exclusive_until_its_lease_ends_and_only_its_holder_completes(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        lease_end = T0 + MINUTE
        [first] = await store.claim_due(T0, lease_end, 10)
        assert await store.claim_due(T0 + timedelta(seconds=59), lease_end, 10) == []
        [second] = await store.claim_due(lease_end, lease_end + MINUTE, 10)
        assert second.delivery.id == first.delivery.id and second.token != first.token

        # The replica whose lease ended writes nothing, not even the rest of its change
        with pytest.raises(LeaseLostError):
            await store.commit(
                Change(
                    completed=[first],
                    saves=[(changed(p, owner_id="late"), p.version)],
                    events=[PromiseMade(p, "x", T0)],
                )
            )
        assert await store.outbox_backlog() == 0
        assert await store.get(p.id) == p

        await store.commit(Change(completed=[completed(second, next_attempt_at=None)]))
        assert await store.claim_due(T0 + timedelta(days=1), T0 + timedelta(days=2), 10) == []

    async def test_a_completed_reminder_falls_due_again_at_its_next_attempt(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        [claim] = await store.claim_due(T0, T0 + MINUTE, 10)
        retry_at = T0 + 30 * timedelta(seconds=1)
        failed = claim.delivery.after_attempts(
            [DeliveryAttempt("webhook", T0, False, "HTTP 500")], T0, POLICY
        )
        assert failed.next_attempt_at == retry_at

        await store.commit(Change(completed=[replace(claim, delivery=failed)]))

        assert await store.claim_due(retry_at - timedelta(seconds=1), retry_at, 10) == []
        [again] = await store.claim_due(retry_at, retry_at + MINUTE, 10)
        assert again.delivery == failed
        assert await store.deliveries(p.id, "", None, 10) == [failed]

    async def test_next_due_is_the_earliest_next_attempt_and_none_when_nothing_is_planned(
        self, store: PromiseStore
    ) -> None:
        assert await store.next_due() is None
        p = a_promise()
        await store.commit(
            Change(
                saves=[(p, 0)],
                replans={p.id: [a_reminder(p, "later", T0 + HOUR), a_reminder(p, "soon", T0)]},
            )
        )
        assert await store.next_due() == T0

        # A claim's lease end counts: a claim that lapses falls due then.
        [claim] = await store.claim_due(T0, T0 + MINUTE, 1)
        assert await store.next_due() == T0 + MINUTE
        await store.commit(Change(completed=[completed(claim, next_attempt_at=None)]))
        assert await store.next_due() == T0 + HOUR

        await store.commit(Change(replans={p.id: []}))
        assert await store.next_due() is None

    async def test_replicas_claiming_at_once_never_lease_the_same_reminder(
        self, store: PromiseStore, tmp_path: Path
    ) -> None:
        p = a_promise()
        due = [a_reminder(p, f"r{n:02}", T0 - timedelta(seconds=n)) for n in range(30)]
        await store.commit(Change(saves=[(p, 0)], replans={p.id: due}))
        peers = [await self.open_peer(tmp_path) for _ in range(2)]
        try:
            replicas = [store, *peers]
            lease_end = T0 + MINUTE
            claimed: list[str] = []
            while batches := [
                b
                for b in await asyncio.gather(*(r.claim_due(T0, lease_end, 4) for r in replicas))
                if b
            ]:
                claimed.extend(c.delivery.id for batch in batches for c in batch)
        finally:
            for peer in peers:
                await peer.close()

        assert sorted(claimed) == sorted(r.id for r in due)  # each one once, none left

    async def test_the_holder_renews_its_claims_and_a_renewed_claim_is_not_taken_over(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(
            Change(
                saves=[(p, 0)],
                replans={p.id: [a_reminder(p, "r1", T0), a_reminder(p, "r2", T0)]},
            )
        )
        lease_end = T0 + MINUTE
        claims = await store.claim_due(T0, lease_end, 10)

        renewed_until = lease_end + MINUTE
        assert await store.renew_claims(claims, renewed_until) == {"r1", "r2"}

        # Past the first lease, nothing is due: the renewed lease holds…
        assert await store.claim_due(lease_end, lease_end + MINUTE, 10) == []
        # …until it ends too.
        [taken] = await store.claim_due(renewed_until, renewed_until + MINUTE, 1)
        assert await store.renew_claims(claims, renewed_until + MINUTE) == {"r1", "r2"} - {
            taken.delivery.id
        }
        [still_mine] = [c for c in claims if c.delivery.id != taken.delivery.id]
        await store.commit(Change(completed=[completed(still_mine, next_attempt_at=None)]))
        with pytest.raises(LeaseLostError):
            await store.commit(Change(completed=[completed(claims[0], next_attempt_at=None)]))
        assert await store.renew_claims(claims, renewed_until + MINUTE) == set()

    async def test_progress_on_a_claim_is_recorded_and_the_claim_kept_while_it_holds(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        [claim] = await store.claim_due(T0, T0 + MINUTE, 10)
        nats = DeliveryAttempt("nats", T0, True)
        step = replace(claim, delivery=claim.delivery.progressed([nats]))

        await store.commit(Change(progressed=[step], events=[PromiseMade(p, "x", T0)]))

        assert await store.deliveries(p.id, "", None, 10) == [step.delivery]
        assert await store.claim_due(T0 + timedelta(seconds=59), T0 + MINUTE, 10) == []
        done = step.delivery.after_attempts([DeliveryAttempt("webhook", T0, True)], T0, POLICY)
        await store.commit(Change(completed=[replace(step, delivery=done)]))
        assert await store.deliveries(p.id, "", None, 10) == [done]
        assert done.outcome is Outcome.DELIVERED and done.remaining == ()

        # Once the claim is gone, progress on it is refused and nothing of it is written.
        with pytest.raises(LeaseLostError):
            await store.commit(Change(progressed=[step], events=[PromiseMade(p, "y", T0)]))
        assert await store.deliveries(p.id, "", None, 10) == [done]

    # --- contacts' preferences ---------------------------------------------------------------

    async def test_contact_profiles_read_back_equal_are_replaced_and_forgotten(
        self, store: PromiseStore
    ) -> None:
        full = ContactPreferences(
            contact_id="c1",
            owner_id="ana",
            team="madrid",
            time_zone="Europe/Madrid",
            preferred_channel=Channel.EMAIL,
            consents=((Channel.EMAIL, True), (Channel.PHONE, False)),
            quiet_hours=QuietHours(22 * 60, 8 * 60),
            discreet=True,
        )
        await store.commit(Change(profiles=[full, ContactPreferences("c2")]))
        assert await store.profile("c1") == full

        await store.commit(Change(profiles=[ContactPreferences("c1", time_zone="UTC")]))
        assert await store.profile("c1") == ContactPreferences("c1", time_zone="UTC")

        await store.commit(Change(forgotten_profiles=["c1", "never-known"]))
        assert await store.profile("c1") is None
        assert await store.profile("c2") == ContactPreferences("c2")

    async def test_an_older_profile_heard_late_does_not_replace_a_newer_one(
        self, store: PromiseStore
    ) -> None:
        newer = ContactPreferences("c1", time_zone="America/Lima", changed_at=T0 + HOUR)
        await store.commit(Change(profiles=[newer]))

        await store.commit(
            Change(profiles=[ContactPreferences("c1", time_zone="UTC", changed_at=T0)])
        )
        assert await store.profile("c1") == newer

        same_time = replace(newer, discreet=True)
        await store.commit(Change(profiles=[same_time]))
        assert await store.profile("c1") == same_time
        undated = ContactPreferences("c1", time_zone="Europe/Madrid")
        await store.commit(Change(profiles=[undated]))
        assert await store.profile("c1") == undated

    # --- contacts' fates -----------------------------------------------------------------------

    async def test_a_contacts_fate_reads_back_equal_and_later_news_is_combined_not_replacing(
        self, store: PromiseStore
    ) -> None:
        full = ContactFate(
            "c1",
            merged_into_id="c0",
            erased_at=T0.replace(microsecond=5),
            erasure_confirmed_at=T0 + MINUTE,
            active_at=T0 - HOUR,
            inactive_at=T0 - 2 * HOUR,
        )
        await store.commit(Change(fates=[full, ContactFate("c2")]))
        assert await store.fate("c1") == full
        assert await store.fate("c2") == ContactFate("c2")

        # News that says less, or older activity, takes nothing away
        await store.commit(
            Change(
                fates=[
                    ContactFate("c1", active_at=T0 - 3 * HOUR, erased_at=T0 + HOUR),
                    ContactFate("c2", active_at=T0, inactive_at=T0 - HOUR),
                ]
            )
        )
        assert await store.fate("c1") == full
        await store.commit(Change(fates=[ContactFate("c2", active_at=T0 - HOUR, erased_at=T0)]))
        assert await store.fate("c2") == ContactFate(
            "c2", erased_at=T0, active_at=T0, inactive_at=T0 - HOUR
        )

    async def test_duplicates_of_lists_the_contacts_merged_into_one(
        self, store: PromiseStore
    ) -> None:
        await store.commit(
            Change(
                fates=[
                    ContactFate("d2", merged_into_id="c1"),
                    ContactFate("d1", merged_into_id="c1"),
                    ContactFate("d3", merged_into_id="d1"),
                    ContactFate("c1"),
                ]
            )
        )

        assert await store.duplicates_of("c1") == ["d1", "d2"]
        assert await store.duplicates_of("d1") == ["d3"]
        assert await store.duplicates_of("d2") == []
        assert await store.fate("nobody") is None
        assert await store.duplicates_of("nobody") == []

    @pytest.mark.parametrize(
        "gone",
        [
            pytest.param(ContactFate("c1", erased_at=T0), id="erased"),
            pytest.param(ContactFate("c1", merged_into_id="c0"), id="merged"),
        ],
    )
    async def test_a_change_for_a_contact_gone_meanwhile_is_refused_and_writes_nothing(
        self, store: PromiseStore, gone: ContactFate
    ) -> None:
        await store.commit(Change(fates=[gone]))
        p = a_promise()
        inbox = InboxKey("followup-interactions", "evt-1")

        with pytest.raises(ContactGoneError) as raised:
            await store.commit(
                Change(
                    saves=[(p, 0)],
                    events=[PromiseMade(p, "ana", T0)],
                    replans={p.id: [a_reminder(p, "r1", T0)]},
                    live_contact="c1",
                    handled=inbox,
                )
            )

        assert raised.value.contact_id == "c1"
        assert await store.get(p.id) is None
        assert await store.deliveries(p.id, "", None, 10) == []
        assert await store.outbox_backlog() == 0
        await store.commit(Change(handled=inbox))  # the inbox row was not taken either

    async def test_a_change_for_a_live_or_unknown_contact_commits(
        self, store: PromiseStore
    ) -> None:
        await store.commit(Change(fates=[ContactFate("c1", active_at=T0)]))

        await store.commit(Change(saves=[(a_promise("p1"), 0)], live_contact="c1"))
        await store.commit(
            Change(saves=[(a_promise("p2", contact_id="new"), 0)], live_contact="new")
        )

        assert sorted(ids(await store.get_many(["p1", "p2"]))) == ["p1", "p2"]
        assert await store.fate("c1") == ContactFate("c1", active_at=T0)

    async def test_scrub_after_an_erasure_keeps_every_read_as_it_was(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], fates=[ContactFate("c1", erased_at=T0)]))

        await store.scrub()
        await store.scrub()

        assert await store.get(p.id) == p
        assert await store.fate("c1") == ContactFate("c1", erased_at=T0)


class TestSqlitePromiseStore(PromiseStoreContract):
    async def create_store(self, tmp_path: Path, encode: RecordingEncoder) -> PromiseStore:
        return SqlitePromiseStore(tmp_path / "followup.db", encode, ManualClock(T0))

    async def open_peer(self, tmp_path: Path) -> PromiseStore:
        return SqlitePromiseStore(tmp_path / "followup.db", event_codec.encode, ManualClock(T0))

    def test_the_scheduler_finds_due_reminders_through_its_index(self, tmp_path: Path) -> None:
        """Cost grows with what is due, not with how many promises are open."""
        conn = sqlite3.connect(tmp_path / "plan.db")
        conn.executescript(SCHEMA)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT rowid, doc FROM reminders WHERE next_attempt_us <= ?"
            " ORDER BY next_attempt_us LIMIT ?",
            (1_772_442_000_000_000, 10),
        ).fetchall()
        assert "USING INDEX reminders_due" in plan[0][3]

    def test_the_next_due_time_is_the_first_entry_of_the_index(self, tmp_path: Path) -> None:
        """The scheduler asks after every run: one index entry, however many are planned."""
        conn = sqlite3.connect(tmp_path / "plan.db")
        conn.executescript(SCHEMA)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT next_attempt_us FROM reminders"
            " WHERE next_attempt_us IS NOT NULL ORDER BY next_attempt_us LIMIT 1"
        ).fetchall()
        [(_, _, _, detail)] = plan  # no sort step: the index is in order
        assert "USING COVERING INDEX reminders_due" in detail


@pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")
class TestMongoPromiseStore(PromiseStoreContract):
    database: str

    async def create_store(self, tmp_path: Path, encode: RecordingEncoder) -> PromiseStore:
        self.database = f"promesa_contract_{uuid.uuid4().hex}"
        return await MongoPromiseStore.open(MONGODB_URI, self.database, encode, ManualClock(T0))

    async def open_peer(self, tmp_path: Path) -> PromiseStore:
        return await MongoPromiseStore.open(
            MONGODB_URI, self.database, event_codec.encode, ManualClock(T0)
        )

    async def dispose_store(self, store: PromiseStore) -> None:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()

    @mongod_planner_only(MONGODB_URI)
    async def test_the_scheduler_finds_due_reminders_through_its_index(
        self, store: PromiseStore
    ) -> None:
        """Cost grows with what is due, not with how many promises are open."""
        assert isinstance(store, MongoPromiseStore)
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        cursor = store._reminders.find(due_query(T0)).sort("next_attempt_at", 1).limit(10)

        stages = plan_stages((await cursor.explain())["queryPlanner"]["winningPlan"])

        assert ("IXSCAN", "reminders_due") in stages
        assert "SORT" not in [stage for stage, _ in stages]

    @mongod_planner_only(MONGODB_URI)
    async def test_the_next_due_time_is_the_first_entry_of_the_index(
        self, store: PromiseStore
    ) -> None:
        assert isinstance(store, MongoPromiseStore)
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        cursor = store._reminders.find(next_due_query()).sort("next_attempt_at", 1).limit(1)

        stages = plan_stages((await cursor.explain())["queryPlanner"]["winningPlan"])

        assert ("IXSCAN", "reminders_due") in stages
        assert "SORT" not in [stage for stage, _ in stages]
