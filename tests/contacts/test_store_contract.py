"""One contract for the contacts storage port, run against every adapter.

It tests the port's own methods: what a commit saves and refuses, how contacts are listed,
searched and found lapsing, and how erasure records and their confirmations are kept. The
outbox, inbox, idempotency and dead-letter behaviour of the store bases is tested once for
every service, in tests/platform.

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

import pytest
from pymongo import AsyncMongoClient

from contacts.adapters import event_codec
from contacts.adapters.mongo_store import MongoContactStore
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.domain import merging
from contacts.domain.erasure import ErasureConfirmation, ErasureRecord
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
from contacts.ports import Change, ContactFilter, ContactSearch, ContactStore, EmailTakenError
from promesa.clock import ManualClock
from promesa.events import OutgoingEvent
from promesa.pagination import Cursor
from promesa.storage import AlreadyHandledError, IdempotencyKey, InboxKey, VersionConflictError

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
ACTOR = "agent-ana"
Encoder = Callable[[ContactEvent], OutgoingEvent]


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


def updating(before: Contact, after: Contact, *, handled: InboxKey | None = None) -> Change:
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
    ) -> ContactStore: ...

    async def dispose_store(self, store: ContactStore) -> None:
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
    ) -> AsyncIterator[ContactStore]:
        store = await self.create_store(tmp_path, encoder, clock)
        try:
            yield store
        finally:
            await self.dispose_store(store)

    # --- reading back what was committed -----------------------------------------------------

    async def test_a_committed_contact_reads_back_equal(
        self, store: ContactStore, clock: ManualClock
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

    async def test_an_unknown_contact_reads_as_none(self, store: ContactStore) -> None:
        assert await store.get("nobody") is None
        assert await store.holder_of_email("nobody@example.com") is None

    async def test_a_commit_carries_its_events_request_key_and_inbox_row(
        self, store: ContactStore, clock: ManualClock, encoder: RecordingEncoder
    ) -> None:
        """How the outbox, the request log and the inbox behave is the platform's (tests/platform);
        here only that this port's commit hands them what its Change holds."""
        v1 = person("c-1", clock.now())
        key = IdempotencyKey("req-1", "create", "digest-1", "c-1")
        await store.commit(creating(v1, idempotency=key))
        v2 = edited(v1, clock.advance(timedelta(minutes=1)), display_name="Ada King")
        await store.commit(updating(v1, v2, handled=InboxKey("touches", "evt-1")))

        assert [event for _, event in await store.pending_events(10)] == encoder.produced
        assert await store.find_request("req-1") == key
        v3 = edited(v2, clock.advance(timedelta(minutes=1)), display_name="Ada, again")
        with pytest.raises(AlreadyHandledError):
            await store.commit(updating(v2, v3, handled=InboxKey("touches", "evt-1")))
        assert await store.get("c-1") == v2

    # --- optimistic concurrency --------------------------------------------------------------

    async def test_a_save_from_a_stale_version_conflicts_and_writes_nothing(
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        first = person("c-1", clock.now(), name="Ada")
        await store.commit(creating(first))

        with pytest.raises(VersionConflictError):
            await store.commit(creating(person("c-1", clock.now(), name="Impostor")))

        assert await store.get("c-1") == first
        assert await store.outbox_backlog() == 1

    # --- one holder per email ----------------------------------------------------------------

    async def test_an_email_held_by_a_live_contact_is_refused_naming_the_holder(
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now(), emails=("ada@example.com",))
        await store.commit(creating(ada))
        # Only live contacts hold emails, whatever the saved details still say.
        gone = replace(ada, erased_at=clock.now(), version=2)
        await store.commit(Change(saves=[(gone, 1)]))

        assert await store.holder_of_email("ada@example.com") is None
        assert await store.search(ContactSearch(email="ada@example.com"), None, 10) == []

    async def test_an_email_moves_to_the_survivor_when_its_holder_is_merged_away(
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        duplicate = person("c-2", clock.now(), emails=("countess@example.org",))
        await store.commit(creating(duplicate))
        redirect = replace(duplicate, merged_into_id="c-1", version=2)
        await store.commit(Change(saves=[(redirect, 1)]))

        assert await store.holder_of_email("countess@example.org") is None
        await store.commit(creating(person("c-3", clock.now(), emails=("countess@example.org",))))
        assert await store.holder_of_email("countess@example.org") == "c-3"

    # --- listing -----------------------------------------------------------------------------

    @pytest.fixture
    async def population(self, store: ContactStore, clock: ManualClock) -> ContactStore:
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
            pytest.param(ContactFilter(tag="press"), ["p-2", "p-6"], id="other-tag"),
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
        self, population: ContactStore, f: ContactFilter, expected: list[str]
    ) -> None:
        assert ids(await population.list(f, None, 100)) == expected

    @pytest.mark.parametrize(
        ("teams", "expected"),
        [
            pytest.param(None, ["p-1", "p-2", "p-3", "p-4", "p-5", "p-6"], id="every-team"),
            pytest.param(("sales",), ["p-2", "p-5"], id="one-team"),
            pytest.param(("sales", "care"), ["p-1", "p-2", "p-3", "p-4", "p-5", "p-6"], id="two"),
            pytest.param(("nowhere", ""), [], id="none-of-them"),
            pytest.param((), [], id="no-team-at-all"),
        ],
    )
    async def test_list_keeps_to_the_readers_teams(
        self, population: ContactStore, teams: tuple[str, ...] | None, expected: list[str]
    ) -> None:
        assert ids(await population.list(ContactFilter(teams=teams), None, 100)) == expected
        # Beside a team filter, both hold.
        both = ContactFilter(team="care", teams=("sales",))
        assert ids(await population.list(both, None, 100)) == []

    async def test_list_filters_by_updated_since_to_the_microsecond(
        self, store: ContactStore, clock: ManualClock
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
        self, store: ContactStore, clock: ManualClock
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
        after: Cursor | None = None
        while True:
            page = await store.list(ContactFilter(), after, 2)
            if not page:
                break
            pages.append(ids(page))
            after = Cursor(page[-1].created_at, page[-1].id)

        assert pages == [["a", "b"], ["c", "d"], ["e"]]

    # --- search ------------------------------------------------------------------------------

    @pytest.fixture
    async def people(self, store: ContactStore, clock: ManualClock) -> ContactStore:
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
        self, people: ContactStore
    ) -> None:
        assert ids(await people.search(ContactSearch("ada"), None, 10)) == ["s-1", "s-2", "s-3"]
        assert ids(await people.search(ContactSearch("ada "), None, 10)) == ["s-1"]
        assert ids(await people.search(ContactSearch("ådne"), None, 10)) == ["s-5"]
        assert ids(await people.search(ContactSearch("hopper"), None, 10)) == []

    async def test_search_by_exact_email_or_phone(self, people: ContactStore) -> None:
        assert ids(await people.search(ContactSearch(email="grace@example.com"), None, 10)) == [
            "s-4"
        ]
        assert ids(await people.search(ContactSearch(email="grace@example"), None, 10)) == []
        assert ids(await people.search(ContactSearch(phone="+14155550100"), None, 10)) == [
            "s-2",
            "s-3",
        ]
        assert ids(await people.search(ContactSearch(email="byron@example.com"), None, 10)) == []

    async def test_search_matches_every_given_criterion(self, people: ContactStore) -> None:
        assert ids(await people.search(ContactSearch("aug", phone="+14155550100"), None, 10)) == [
            "s-2"
        ]
        assert (
            ids(await people.search(ContactSearch("ada", email="grace@example.com"), None, 10))
            == []
        )
        assert ids(
            await people.search(ContactSearch("ada", email="ada@example.com"), None, 10)
        ) == ["s-1"]

    async def test_search_keeps_to_the_readers_teams(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        at = clock.now()
        for contact_id, team in [("t-1", "care"), ("t-2", "sales"), ("t-3", "")]:
            await store.commit(creating(person(contact_id, at, name="Ada", team=team)))

        def scoped(teams: tuple[str, ...] | None) -> ContactSearch:
            return ContactSearch("ada", teams=teams)

        assert ids(await store.search(scoped(None), None, 10)) == ["t-1", "t-2", "t-3"]
        assert ids(await store.search(scoped(("care", "")), None, 10)) == ["t-1", "t-3"]
        assert ids(await store.search(scoped(("",)), None, 10)) == ["t-3"]
        assert ids(await store.search(scoped(()), None, 10)) == []

    async def test_search_pages_by_id_after_the_cursor(self, people: ContactStore) -> None:
        first = await people.search(ContactSearch("ada"), None, 2)
        rest = await people.search(ContactSearch("ada"), Cursor(None, first[-1].id), 2)

        assert ids(first) == ["s-1", "s-2"]
        assert ids(rest) == ["s-3"]
        assert (
            ids(
                await people.search(ContactSearch(email="ada@example.com"), Cursor(None, "s-1"), 10)
            )
            == []
        )

    # --- lapsing customers -------------------------------------------------------------------

    async def test_lapsed_finds_active_live_contacts_purchased_by_the_cutoff(
        self, store: ContactStore, clock: ManualClock
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

    # --- erasure records -----------------------------------------------------------------------

    async def erase(self, store: ContactStore, contact: Contact, at: datetime) -> ErasureRecord:
        """As the erase use case commits it: the tombstone, the record and the event at once."""
        record = ErasureRecord(contact.id, "sup-sam", "ticket 42", at)
        await store.commit(
            Change(
                saves=[(merging.erased(contact, at, "sup-sam"), contact.version)],
                events=[ContactErased(contact.id, "sup-sam", at)],
                erasure=record,
            )
        )
        return record

    async def test_an_erasure_record_commits_with_its_tombstone_and_reads_back(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now(), emails=("ada@example.com",))
        await store.commit(creating(ada))
        at = clock.advance(timedelta(hours=1)).replace(microsecond=654321)

        record = await self.erase(store, ada, at)

        assert await store.erasure("c-1") == record
        assert await store.erasure("c-2") is None
        assert await store.erasures(None, 10) == [record]

    async def test_a_second_erasure_record_of_a_contact_conflicts_and_writes_nothing(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now())
        await store.commit(creating(ada))
        first = await self.erase(store, ada, clock.now())
        grace = person("c-2", clock.now(), name="Grace")
        await store.commit(creating(grace))
        backlog = await store.outbox_backlog()

        again = ErasureRecord("c-1", "svc-followup", "again", clock.advance(timedelta(hours=1)))
        renamed = edited(grace, clock.now(), display_name="Grace H")
        with pytest.raises(VersionConflictError):
            await store.commit(Change(saves=[(renamed, grace.version)], events=[], erasure=again))

        assert await store.erasure("c-1") == first
        assert await store.get("c-2") == grace
        assert await store.outbox_backlog() == backlog

    async def test_confirmations_are_kept_once_per_service_in_the_order_they_confirmed(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now())
        await store.commit(creating(ada))
        record = await self.erase(store, ada, clock.now())
        t0 = clock.now()
        interactions = ErasureConfirmation("c-1", "interactions", t0 + timedelta(seconds=1))
        followup = ErasureConfirmation("c-1", "followup", t0 + timedelta(seconds=2))

        # The later confirmation arrives first; then each one again, as a redelivery would.
        for confirmation in (followup, interactions, followup, interactions):
            await store.commit(Change(confirmations=[confirmation]))
        later = replace(interactions, confirmed_at=t0 + timedelta(minutes=5))
        await store.commit(Change(confirmations=[later]))

        expected = replace(record, confirmations=(interactions, followup))
        assert await store.erasure("c-1") == expected
        assert await store.erasures(None, 10) == [expected]

    async def test_a_confirmation_commits_with_its_inbox_row_or_not_at_all(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now())
        await store.commit(creating(ada))
        record = await self.erase(store, ada, clock.now())
        confirmation = ErasureConfirmation("c-1", "followup", clock.now())
        inbox = InboxKey("contacts-followup", "evt-1")
        await store.commit(Change(confirmations=[confirmation], handled=inbox))

        other = ErasureConfirmation("c-1", "interactions", clock.now())
        with pytest.raises(AlreadyHandledError):
            await store.commit(Change(confirmations=[other], handled=inbox))

        assert await store.erasure("c-1") == replace(record, confirmations=(confirmation,))

    async def test_erasures_are_listed_newest_first_and_page_by_cursor(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        t0 = clock.now()
        records = []
        for contact_id, at in [
            ("e-b", t0),
            ("e-a", t0),
            ("e-c", t0 + timedelta(seconds=1)),
            ("e-d", t0 + timedelta(seconds=1, microseconds=5)),
            ("e-e", t0 + timedelta(seconds=2)),
        ]:
            contact = person(contact_id, t0)
            await store.commit(creating(contact))
            records.append(await self.erase(store, contact, at))
        await store.commit(
            Change(confirmations=[ErasureConfirmation("e-c", "followup", t0 + timedelta(hours=1))])
        )

        pages: list[list[str]] = []
        after: Cursor | None = None
        while True:
            page = await store.erasures(after, 2)
            if not page:
                break
            pages.append([r.contact_id for r in page])
            after = Cursor(page[-1].erased_at, page[-1].contact_id)

        assert pages == [["e-e", "e-d"], ["e-c", "e-b"], ["e-a"]]
        [confirmed] = [r for r in await store.erasures(None, 10) if r.confirmations]
        assert confirmed.contact_id == "e-c"

    async def test_scrub_can_be_called_after_any_commit(
        self, store: ContactStore, clock: ManualClock
    ) -> None:
        ada = person("c-1", clock.now())
        await store.commit(creating(ada))
        await self.erase(store, ada, clock.now())

        await store.scrub()
        await store.scrub()

        assert await store.erasure("c-1") is not None


class TestSqliteContactStore(ContactStoreContract):
    async def create_store(
        self, tmp_path: Path, encode: Encoder, clock: ManualClock
    ) -> ContactStore:
        return SqliteContactStore(tmp_path / "contacts.db", encode, clock)


@pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")
class TestMongoContactStore(ContactStoreContract):
    database: str

    async def create_store(
        self, tmp_path: Path, encode: Encoder, clock: ManualClock
    ) -> ContactStore:
        self.database = f"promesa_contract_{uuid.uuid4().hex}"
        return await MongoContactStore.open(MONGODB_URI, self.database, encode, clock)

    async def dispose_store(self, store: ContactStore) -> None:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()
