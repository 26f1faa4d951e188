"""One contract for the contacts storage port, run against every adapter.

`ContactStoreContract` holds the behaviour; each adapter subclasses it and says how to
create (and dispose of) a store. SQLite always runs; MongoDB runs when
CRM_TEST_MONGODB_URI names a replica set (transactions need one), each test in a database
of its own that is dropped afterwards.
"""

from __future__ import annotations

import abc
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
from pymongo import AsyncMongoClient

from contacts.adapters import event_codec
from contacts.adapters.mongo_store import MongoContactStore
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.domain import merging
from contacts.domain.events import (
    ContactCreated,
    ContactErased,
    ContactEvent,
    ContactsMerged,
    ContactUpdated,
)
from contacts.domain.model import (
    Channel,
    Contact,
    ContactDetails,
    ContactKind,
    Lifecycle,
    PostalAddress,
    QuietHours,
    Relationship,
)
from contacts.ports import (
    AlreadyHandledError,
    Change,
    ContactFilter,
    ContactStore,
    DuplicateRequestError,
    EmailTakenError,
    IdempotencyKey,
    VersionConflictError,
)
from promesa.clock import ManualClock
from promesa.events import IncomingEvent, OutgoingEvent

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
ACTOR = "agent-ana"
Encoder = Callable[[ContactEvent], OutgoingEvent]


class InspectableStore(ContactStore, Protocol):
    """The port plus what operators read: both adapters list their dead letters."""

    async def dead_letters(self) -> list[dict[str, object]]: ...


class RecordingEncoder:
    """The real event codec, keeping what it produced so the outbox can be compared to it."""

    def __init__(self) -> None:
        self.produced: list[OutgoingEvent] = []

    def __call__(self, event: ContactEvent) -> OutgoingEvent:
        encoded = event_codec.encode(event)
        self.produced.append(encoded)
        return encoded


def person(
    contact_id: str,
    at: datetime,
    *,
    name: str = "Ada Lovelace",
    preferred: str = "",
    emails: tuple[str, ...] = (),
    phones: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    owner: str = ACTOR,
    team: str = "care",
    kind: ContactKind = ContactKind.PERSON,
    relationship: Relationship = Relationship.EXTERNAL_CUSTOMER,
    status: Lifecycle = Lifecycle.NEVER_PURCHASED,
    last_purchase_at: datetime | None = None,
) -> Contact:
    return Contact(
        id=contact_id,
        details=ContactDetails(
            kind=kind,
            display_name=name,
            preferred_name=preferred,
            emails=emails,
            phones=phones,
            owner_id=owner,
            team=team,
            tags=tags,
            relationship=relationship,
        ),
        status=status,
        created_at=at,
        updated_at=at,
        created_by=ACTOR,
        updated_by=ACTOR,
        last_purchase_at=last_purchase_at,
    )


def creating(contact: Contact, *, idempotency: IdempotencyKey | None = None) -> Change:
    """The change that creates a contact, as the create use case commits it."""
    return Change(
        saves=[(contact, 0)],
        events=[ContactCreated(contact, ACTOR, contact.created_at)],
        idempotency=idempotency,
    )


def edited(contact: Contact, at: datetime, **details: object) -> Contact:
    """The next version of a contact, as a use case would save it."""
    return replace(
        contact,
        details=replace(contact.details, **details),  # type: ignore[arg-type]
        version=contact.version + 1,
        updated_at=at,
    )


def updating(before: Contact, after: Contact, *, handled: tuple[str, str] | None = None) -> Change:
    """The change that replaces `before` by `after`, with its event."""
    return Change(
        saves=[(after, before.version)],
        events=[ContactUpdated(after, ("display_name",), ACTOR, after.updated_at)],
        handled=handled,
    )


def ids(contacts: Sequence[Contact]) -> list[str]:
    return [c.id for c in contacts]


class ContactStoreContract(abc.ABC):
    """What every ContactStore adapter does; subclasses only create and dispose of stores."""

    @abc.abstractmethod
    async def create_store(
        self, tmp_path: Path, encode: Encoder, clock: ManualClock
    ) -> InspectableStore: ...

    async def dispose_store(self, store: InspectableStore) -> None:
        await store.close()

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    @pytest.fixture
    def encoder(self) -> RecordingEncoder:
        return RecordingEncoder()

    @pytest.fixture
    async def store(
        self, tmp_path: Path, encoder: RecordingEncoder, clock: ManualClock
    ) -> AsyncIterator[InspectableStore]:
        store = await self.create_store(tmp_path, encoder, clock)
        try:
            yield store
        finally:
            await self.dispose_store(store)

    # --- reading back what was committed -----------------------------------------------------

    async def test_a_committed_contact_reads_back_equal(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        at = clock.now().replace(microsecond=123456)
        contact = replace(
            person("c-1", at, emails=("ada@example.com",), phones=("+14155550100",)),
            details=ContactDetails(
                kind=ContactKind.PERSON,
                display_name="Ada Lovelace",
                preferred_name="Ada",
                emails=("ada@example.com", "countess@example.org"),
                phones=("+14155550100",),
                postal_address=PostalAddress(("12 St James's Sq",), "London", "", "SW1Y", "GB"),
                organisation_id="org-1",
                owner_id=ACTOR,
                team="care",
                tags=("vip", "analytical"),
                time_zone="Europe/London",
                preferred_channel=Channel.EMAIL,
                consents=((Channel.EMAIL, True), (Channel.PHONE, False)),
                quiet_hours=QuietHours(22 * 60, 7 * 60),
                discreet=True,
                referred_by_id="c-0",
                relationship=Relationship.EXTERNAL_CUSTOMER,
            ),
            status=Lifecycle.ACTIVE,
            last_purchase_at=at - timedelta(days=3, microseconds=7),
            last_interaction_at=at - timedelta(hours=1),
        )

        await store.commit(creating(contact))

        assert await store.get("c-1") == contact

    async def test_an_unknown_contact_reads_as_none(self, store: InspectableStore) -> None:
        assert await store.get("nobody") is None
        assert await store.holder_of_email("nobody@example.com") is None
        assert await store.find_request("no-such-request") is None

    # --- optimistic concurrency --------------------------------------------------------------

    async def test_a_save_from_a_stale_version_conflicts_and_writes_nothing(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        v1 = person("c-1", clock.now(), emails=("ada@example.com",))
        await store.commit(creating(v1))
        v2 = edited(v1, clock.advance(timedelta(minutes=1)), display_name="Ada King")
        await store.commit(updating(v1, v2))

        # When a writer that still holds version 1 saves
        stale = edited(v1, clock.advance(timedelta(minutes=1)), emails=("countess@example.org",))
        with pytest.raises(VersionConflictError) as raised:
            await store.commit(updating(v1, stale))

        # Then nothing of it was written: not the contact, its emails, nor its event
        assert raised.value.resource_id == "c-1"
        assert await store.get("c-1") == v2
        assert await store.holder_of_email("ada@example.com") == "c-1"
        assert await store.holder_of_email("countess@example.org") is None
        assert await store.outbox_backlog() == 2

    async def test_a_conflict_in_one_save_rolls_back_the_others_of_the_change(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        a = person("c-a", clock.now(), name="Alan")
        b = person("c-b", clock.now(), name="Grace")
        await store.commit(creating(a))
        await store.commit(creating(b))
        at = clock.advance(timedelta(minutes=1))

        change = Change(
            saves=[(edited(a, at, team="sales"), a.version), (edited(b, at), b.version + 5)],
            events=[ContactUpdated(edited(a, at), ("team",), ACTOR, at)],
        )
        with pytest.raises(VersionConflictError) as raised:
            await store.commit(change)

        assert raised.value.resource_id == "c-b"
        assert await store.get("c-a") == a
        assert await store.outbox_backlog() == 2

    async def test_saving_a_new_contact_under_an_existing_id_conflicts(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        first = person("c-1", clock.now(), name="Ada")
        await store.commit(creating(first))

        with pytest.raises(VersionConflictError):
            await store.commit(creating(person("c-1", clock.now(), name="Impostor")))

        assert await store.get("c-1") == first
        assert await store.outbox_backlog() == 1

    # --- one holder per email ----------------------------------------------------------------

    async def test_an_email_held_by_a_live_contact_is_refused_naming_the_holder(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        await store.commit(creating(person("c-1", clock.now(), emails=("ada@example.com",))))

        newcomer = person("c-2", clock.now(), emails=("new@example.com", "ada@example.com"))
        with pytest.raises(EmailTakenError) as raised:
            await store.commit(creating(newcomer))

        assert (raised.value.email, raised.value.holder_id) == ("ada@example.com", "c-1")
        assert await store.get("c-2") is None
        assert await store.holder_of_email("ada@example.com") == "c-1"
        assert await store.holder_of_email("new@example.com") is None
        assert await store.outbox_backlog() == 1

    async def test_an_update_adding_a_taken_email_is_refused_and_keeps_the_old_version(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        await store.commit(creating(person("c-1", clock.now(), emails=("ada@example.com",))))
        grace = person("c-2", clock.now(), name="Grace", emails=("grace@example.com",))
        await store.commit(creating(grace))

        taker = edited(
            grace,
            clock.advance(timedelta(minutes=1)),
            emails=("grace@example.com", "ada@example.com"),
        )
        with pytest.raises(EmailTakenError) as raised:
            await store.commit(updating(grace, taker))

        assert raised.value.holder_id == "c-1"
        assert await store.get("c-2") == grace
        assert await store.holder_of_email("grace@example.com") == "c-2"

    async def test_an_email_removed_from_its_holder_is_free_again(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now(), emails=("ada@example.com", "countess@example.org"))
        await store.commit(creating(ada))
        await store.commit(
            updating(
                ada, edited(ada, clock.advance(timedelta(minutes=1)), emails=("ada@example.com",))
            )
        )

        assert await store.holder_of_email("countess@example.org") is None
        await store.commit(creating(person("c-2", clock.now(), emails=("countess@example.org",))))
        assert await store.holder_of_email("countess@example.org") == "c-2"

    async def test_an_email_is_free_again_after_its_holder_is_erased(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now(), emails=("ada@example.com",))
        await store.commit(creating(ada))
        at = clock.advance(timedelta(hours=1))
        tombstone = merging.erased(ada, at, "sup-sam")
        await store.commit(
            Change(saves=[(tombstone, ada.version)], events=[ContactErased("c-1", "sup-sam", at)])
        )

        assert await store.holder_of_email("ada@example.com") is None
        assert await store.get("c-1") == tombstone
        await store.commit(creating(person("c-2", at, emails=("ada@example.com",))))
        assert await store.holder_of_email("ada@example.com") == "c-2"

    async def test_an_erased_contact_frees_its_emails_even_if_the_tombstone_keeps_them(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now(), emails=("ada@example.com",))
        await store.commit(creating(ada))
        # Only live contacts hold emails, whatever the saved details still say.
        gone = replace(ada, erased_at=clock.now(), version=2)
        await store.commit(Change(saves=[(gone, 1)]))

        assert await store.holder_of_email("ada@example.com") is None
        assert await store.search("", "ada@example.com", "", None, 10) == []

    async def test_an_email_moves_to_the_survivor_when_its_holder_is_merged_away(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        survivor = person("c-1", clock.now(), emails=("ada@example.com",))
        duplicate = person("c-2", clock.now(), emails=("countess@example.org",))
        await store.commit(creating(survivor))
        await store.commit(creating(duplicate))
        at = clock.advance(timedelta(hours=1))

        # As the merge use case saves it: the redirect first, then the survivor that absorbed it
        redirect = replace(
            merging.erased(duplicate, at, ACTOR), erased_at=None, merged_into_id="c-1"
        )
        absorbed = replace(
            survivor,
            details=merging.absorb(survivor, duplicate),
            version=survivor.version + 1,
            updated_at=at,
        )
        await store.commit(
            Change(
                saves=[(redirect, duplicate.version), (absorbed, survivor.version)],
                events=[
                    ContactsMerged("c-1", "c-2", ACTOR, at),
                    ContactUpdated(absorbed, ("emails",), ACTOR, at),
                ],
            )
        )

        assert await store.holder_of_email("countess@example.org") == "c-1"
        assert await store.holder_of_email("ada@example.com") == "c-1"
        assert await store.get("c-2") == redirect
        assert ids(await store.list(ContactFilter(), None, 10)) == ["c-1"]

    async def test_an_email_is_free_again_after_its_holder_is_merged_away(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        duplicate = person("c-2", clock.now(), emails=("countess@example.org",))
        await store.commit(creating(duplicate))
        redirect = replace(duplicate, merged_into_id="c-1", version=2)
        await store.commit(Change(saves=[(redirect, 1)]))

        assert await store.holder_of_email("countess@example.org") is None
        await store.commit(creating(person("c-3", clock.now(), emails=("countess@example.org",))))
        assert await store.holder_of_email("countess@example.org") == "c-3"

    # --- idempotency and the inbox -----------------------------------------------------------

    async def test_a_second_commit_with_the_same_request_id_is_a_duplicate(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        key = IdempotencyKey("req-1", "create", "digest-1", "c-1")
        await store.commit(creating(person("c-1", clock.now()), idempotency=key))

        retry = IdempotencyKey("req-1", "create", "digest-1", "c-2")
        with pytest.raises(DuplicateRequestError):
            await store.commit(creating(person("c-2", clock.now()), idempotency=retry))

        assert await store.find_request("req-1") == key
        assert await store.get("c-2") is None
        assert await store.outbox_backlog() == 1

    async def test_a_request_id_is_not_remembered_when_its_commit_fails(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        await store.commit(creating(person("c-1", clock.now(), emails=("ada@example.com",))))

        key = IdempotencyKey("req-2", "create", "digest", "c-2")
        clash = person("c-2", clock.now(), emails=("ada@example.com",))
        with pytest.raises(EmailTakenError):
            await store.commit(creating(clash, idempotency=key))

        assert await store.find_request("req-2") is None

    async def test_the_inbox_refuses_the_same_event_twice_and_the_effect_applies_once(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        v1 = person("c-1", clock.now())
        await store.commit(creating(v1))
        v2 = edited(v1, clock.advance(timedelta(minutes=1)), display_name="Ada King")
        await store.commit(updating(v1, v2, handled=("touches", "evt-1")))

        # When the same event is delivered again and its effect recomputed from version 2
        v3 = edited(v2, clock.advance(timedelta(minutes=1)), display_name="Ada, again")
        with pytest.raises(AlreadyHandledError):
            await store.commit(updating(v2, v3, handled=("touches", "evt-1")))

        assert await store.get("c-1") == v2
        assert await store.outbox_backlog() == 2

    async def test_the_inbox_is_kept_per_consumer(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        await store.commit(Change(handled=("touches", "evt-1")))
        await store.commit(Change(handled=("sweeper", "evt-1")))

        with pytest.raises(AlreadyHandledError):
            await store.commit(Change(handled=("sweeper", "evt-1")))
        assert await store.outbox_backlog() == 0

    async def test_an_inbox_row_is_not_kept_when_its_effect_fails(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        v1 = person("c-1", clock.now())
        await store.commit(creating(v1))
        v2 = edited(v1, clock.now(), display_name="Ada King")
        await store.commit(updating(v1, v2))

        with pytest.raises(VersionConflictError):
            await store.commit(updating(v1, edited(v1, clock.now()), handled=("touches", "evt-9")))

        # The redelivery, read from the current version, applies
        await store.commit(updating(v2, edited(v2, clock.now()), handled=("touches", "evt-9")))
        contact = await store.get("c-1")
        assert contact is not None and contact.version == 3

    # --- the outbox --------------------------------------------------------------------------

    async def test_events_wait_in_commit_order_until_marked_sent(
        self, store: InspectableStore, clock: ManualClock, encoder: RecordingEncoder
    ) -> None:
        a = person("c-a", clock.now())
        b = person("c-b", clock.now())
        await store.commit(creating(a))
        await store.commit(creating(b))
        at = clock.advance(timedelta(minutes=1))
        a2 = edited(a, at, display_name="Alan")
        await store.commit(
            Change(
                saves=[(a2, 1)],
                events=[
                    ContactUpdated(a2, ("display_name",), ACTOR, at),
                    ContactErased("c-b", ACTOR, at),
                ],
            )
        )

        pending = await store.pending_events(100)

        assert [event for _, event in pending] == encoder.produced
        seqs = [seq for seq, _ in pending]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        assert await store.outbox_backlog() == 4
        assert await store.pending_events(2) == pending[:2]

        await store.mark_events_sent(seqs[:3])

        assert await store.pending_events(100) == pending[3:]
        assert await store.outbox_backlog() == 1
        await store.mark_events_sent(seqs[3:])
        assert await store.pending_events(100) == []
        assert await store.outbox_backlog() == 0

    async def test_later_commits_follow_events_already_sent(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        await store.commit(creating(person("c-1", clock.now())))
        [(first, _)] = await store.pending_events(10)
        await store.mark_events_sent([first])

        await store.commit(creating(person("c-2", clock.now())))

        [(second, event)] = await store.pending_events(10)
        assert second > first
        assert event.ce_subject == "c-2"

    async def test_a_change_without_events_writes_no_outbox_rows(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        await store.commit(Change(saves=[(person("c-1", clock.now()), 0)]))

        assert await store.pending_events(10) == []
        assert await store.get("c-1") is not None

    # --- listing -----------------------------------------------------------------------------

    @pytest.fixture
    async def population(self, store: InspectableStore, clock: ManualClock) -> InspectableStore:
        """Six live contacts, created a minute apart, plus an erased and a merged one."""
        t0 = clock.now()
        minute = timedelta(minutes=1)
        live = [
            person("p-1", t0, tags=("vip",), status=Lifecycle.ACTIVE, last_purchase_at=t0),
            person("p-2", t0 + minute, owner="agent-bo", team="sales", tags=("vip", "press")),
            person("p-3", t0 + 2 * minute, kind=ContactKind.ORGANISATION, name="Acme"),
            person("p-4", t0 + 3 * minute, relationship=Relationship.INTERNAL_COLLEAGUE),
            person("p-5", t0 + 4 * minute, team="sales", status=Lifecycle.INACTIVE),
            person("p-6", t0 + 5 * minute, tags=("press",)),
        ]
        for c in live:
            await store.commit(creating(c))
        gone = person("p-7", t0 + 6 * minute, tags=("vip",), team="sales")
        merged = person("p-8", t0 + 7 * minute, tags=("vip",), team="sales")
        for c in (gone, merged):
            await store.commit(creating(c))
        await store.commit(Change(saves=[(replace(gone, erased_at=t0, version=2), 1)]))
        await store.commit(Change(saves=[(replace(merged, merged_into_id="p-1", version=2), 1)]))
        return store

    @pytest.mark.parametrize(
        ("f", "expected"),
        [
            pytest.param(ContactFilter(), ["p-1", "p-2", "p-3", "p-4", "p-5", "p-6"], id="all"),
            pytest.param(ContactFilter(status=Lifecycle.ACTIVE), ["p-1"], id="active"),
            pytest.param(ContactFilter(status=Lifecycle.INACTIVE), ["p-5"], id="inactive"),
            pytest.param(ContactFilter(owner_id="agent-bo"), ["p-2"], id="owner"),
            pytest.param(ContactFilter(team="sales"), ["p-2", "p-5"], id="team"),
            pytest.param(ContactFilter(tag="vip"), ["p-1", "p-2"], id="tag"),
            pytest.param(ContactFilter(tag=" Press "), ["p-2", "p-6"], id="tag-normalised"),
            pytest.param(ContactFilter(kind=ContactKind.ORGANISATION), ["p-3"], id="kind"),
            pytest.param(
                ContactFilter(relationship=Relationship.INTERNAL_COLLEAGUE),
                ["p-4"],
                id="relationship",
            ),
            pytest.param(ContactFilter(team="sales", tag="vip"), ["p-2"], id="team-and-tag"),
            pytest.param(ContactFilter(owner_id="nobody"), [], id="no-match"),
        ],
    )
    async def test_list_matches_live_contacts_by_filter_in_creation_order(
        self, population: InspectableStore, f: ContactFilter, expected: list[str]
    ) -> None:
        assert ids(await population.list(f, None, 100)) == expected

    async def test_list_filters_by_updated_since_to_the_microsecond(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        t0 = clock.now()
        on_the_second = person("u-1", t0)
        half_a_second_later = person("u-2", t0 + timedelta(milliseconds=500))
        a_second_later = person("u-3", t0 + timedelta(seconds=1))
        for c in (on_the_second, half_a_second_later, a_second_later):
            await store.commit(creating(c))

        since = await store.list(
            ContactFilter(updated_since=t0 + timedelta(microseconds=1)), None, 10
        )
        inclusive = await store.list(ContactFilter(updated_since=t0), None, 10)

        assert ids(since) == ["u-2", "u-3"]
        assert ids(inclusive) == ["u-1", "u-2", "u-3"]

    async def test_list_pages_with_the_cursor_and_breaks_ties_by_id(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        t0 = clock.now()
        for contact_id, at in [
            ("b", t0),
            ("a", t0),
            ("c", t0 + timedelta(seconds=1)),
            ("d", t0 + timedelta(seconds=1, microseconds=5)),
            ("e", t0 + timedelta(seconds=2)),
        ]:
            await store.commit(creating(person(contact_id, at)))

        pages: list[list[str]] = []
        after: tuple[str, str] | None = None
        while True:
            page = await store.list(ContactFilter(), after, 2)
            if not page:
                break
            pages.append(ids(page))
            after = (page[-1].created_at.isoformat(), page[-1].id)

        assert pages == [["a", "b"], ["c", "d"], ["e"]]

    # --- search ------------------------------------------------------------------------------

    @pytest.fixture
    async def people(self, store: InspectableStore, clock: ManualClock) -> InspectableStore:
        at = clock.now()
        for c in [
            person("s-1", at, name="Ada Lovelace", emails=("ada@example.com",)),
            person("s-2", at, name="Augusta King", preferred="Ada", phones=("+14155550100",)),
            person("s-3", at, name="adalbert Stifter", phones=("+14155550100",)),
            person("s-4", at, name="Grace Hopper", emails=("grace@example.com",)),
            person("s-5", at, name="Ådne Ås", preferred="Ådne"),
        ]:
            await store.commit(creating(c))
        gone = person("s-6", at, name="Ada Byron", emails=("byron@example.com",))
        await store.commit(creating(gone))
        await store.commit(Change(saves=[(replace(gone, erased_at=at, version=2), 1)]))
        return store

    async def test_search_by_name_prefix_matches_display_or_preferred_name_ignoring_case(
        self, people: InspectableStore
    ) -> None:
        assert ids(await people.search("ada", "", "", None, 10)) == ["s-1", "s-2", "s-3"]
        assert ids(await people.search("ada ", "", "", None, 10)) == ["s-1"]
        assert ids(await people.search("ådne", "", "", None, 10)) == ["s-5"]
        assert ids(await people.search("hopper", "", "", None, 10)) == []

    async def test_search_by_exact_email_or_phone(self, people: InspectableStore) -> None:
        assert ids(await people.search("", "grace@example.com", "", None, 10)) == ["s-4"]
        assert ids(await people.search("", "grace@example", "", None, 10)) == []
        assert ids(await people.search("", "", "+14155550100", None, 10)) == ["s-2", "s-3"]
        assert ids(await people.search("", "byron@example.com", "", None, 10)) == []

    async def test_search_matches_every_given_criterion(self, people: InspectableStore) -> None:
        assert ids(await people.search("aug", "", "+14155550100", None, 10)) == ["s-2"]
        assert ids(await people.search("ada", "grace@example.com", "", None, 10)) == []
        assert ids(await people.search("ada", "ada@example.com", "", None, 10)) == ["s-1"]

    async def test_search_pages_by_id_after_the_cursor(self, people: InspectableStore) -> None:
        first = await people.search("ada", "", "", None, 2)
        rest = await people.search("ada", "", "", first[-1].id, 2)

        assert ids(first) == ["s-1", "s-2"]
        assert ids(rest) == ["s-3"]
        assert ids(await people.search("", "ada@example.com", "", "s-1", 10)) == []

    # --- lapsing customers -------------------------------------------------------------------

    async def test_lapsed_finds_active_live_contacts_purchased_by_the_cutoff(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        cutoff = clock.now() - timedelta(days=90)
        day = timedelta(days=1)
        active = Lifecycle.ACTIVE
        for c in [
            person("l-old", cutoff, status=active, last_purchase_at=cutoff - 30 * day),
            person("l-edge", cutoff, status=active, last_purchase_at=cutoff),
            person("l-older", cutoff, status=active, last_purchase_at=cutoff - 60 * day),
            person("l-recent", cutoff, status=active, last_purchase_at=cutoff + day),
            person("l-inactive", cutoff, status=Lifecycle.INACTIVE, last_purchase_at=cutoff - day),
            person("l-never", cutoff),
        ]:
            await store.commit(creating(c))
        gone = person("l-erased", cutoff, status=active, last_purchase_at=cutoff - day)
        await store.commit(creating(gone))
        await store.commit(Change(saves=[(replace(gone, erased_at=cutoff, version=2), 1)]))

        lapsed = await store.lapsed(cutoff, 10)

        assert ids(lapsed) == ["l-older", "l-old", "l-edge"]
        assert ids(await store.lapsed(cutoff, 1)) == ["l-older"]

    # --- dead letters ------------------------------------------------------------------------

    async def test_dead_letters_are_recorded_oldest_first(
        self, store: InspectableStore, clock: ManualClock
    ) -> None:
        def incoming(event_id: str, delivery: int) -> IncomingEvent:
            return IncomingEvent(
                event_id=event_id,
                type="crm.interactions.v1.InteractionRecorded",
                subject="crm.interactions.recorded",
                source="promesa/interactions",
                ce_subject="i-1",
                time="2026-03-02T09:00:00Z",
                data=b"\x00\xffnot a proto",
                delivery=delivery,
            )

        await store.record_dead_letter("touches", incoming("evt-1", 3), "undecodable payload")
        recorded_at = clock.advance(timedelta(seconds=5))
        await store.record_dead_letter("touches", incoming("evt-2", 5), "contact kept changing")

        letters = await store.dead_letters()

        assert [letter["event_id"] for letter in letters] == ["evt-1", "evt-2"]
        assert letters[1] == {
            "consumer": "touches",
            "event_id": "evt-2",
            "subject": "crm.interactions.recorded",
            "type": "crm.interactions.v1.InteractionRecorded",
            "error": "contact kept changing",
            "deliveries": 5,
            "recorded_at": recorded_at.isoformat(),
        }


class TestSqliteContactStore(ContactStoreContract):
    async def create_store(
        self, tmp_path: Path, encode: Encoder, clock: ManualClock
    ) -> InspectableStore:
        return SqliteContactStore(tmp_path / "contacts.db", encode, clock)


@pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")
class TestMongoContactStore(ContactStoreContract):
    database: str

    async def create_store(
        self, tmp_path: Path, encode: Encoder, clock: ManualClock
    ) -> InspectableStore:
        self.database = f"promesa_contract_{uuid.uuid4().hex}"
        return await MongoContactStore.open(MONGODB_URI, self.database, encode, clock)

    async def dispose_store(self, store: InspectableStore) -> None:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()
