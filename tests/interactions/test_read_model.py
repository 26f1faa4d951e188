"""The local model of contacts and the cascades it drives, on a real SQLite store (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from interactions.adapters import event_codec
from interactions.adapters.sqlite_store import SqliteInteractionStore
from interactions.domain.model import (
    Channel,
    Interaction,
    InteractionDraft,
    InteractionType,
    PromiseDraft,
)
from interactions.ports import Change, TimelineFilter
from interactions.usecases import InteractionCommands, InteractionReactions
from promesa.auth import Identity, Role
from promesa.clock import ManualClock
from promesa.errors import FailedPreconditionError
from promesa.storage import InboxKey
from promesa.usecases import Writes

AGENT = Identity("agent-ana", Role.AGENT)
CONSUMER = "interactions-contacts"


def event(event_id: str) -> InboxKey:
    return InboxKey(CONSUMER, event_id)


class StreamsErased:
    """The service's stream, as erasure sees it: the contacts whose events were purged."""

    def __init__(self) -> None:
        self.erased: list[str] = []

    async def erase(self, contact_id: str) -> None:
        self.erased.append(contact_id)


async def created(reactions: InteractionReactions, contact_id: str, team: str = "") -> bool:
    """ContactCreated, of an unassigned contact unless a team is named."""
    return await reactions.contact_created(
        event(f"created-{contact_id}"), contact_id=contact_id, owner_id="", team=team, at=None
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteInteractionStore]:
    store = SqliteInteractionStore(
        tmp_path / "interactions.db", event_codec.encode, ManualClock(), synchronous="OFF"
    )
    yield store
    await store.close()


@pytest.fixture
def writes(store: SqliteInteractionStore) -> Writes[Change]:
    return Writes(store, lambda: None)


@pytest.fixture
def commands(store: SqliteInteractionStore, writes: Writes[Change]) -> InteractionCommands:
    return InteractionCommands(store, writes, ManualClock())


@pytest.fixture
def streams() -> StreamsErased:
    return StreamsErased()


@pytest.fixture
def reactions(
    store: SqliteInteractionStore, writes: Writes[Change], streams: StreamsErased
) -> InteractionReactions:
    # Batches of two, so a cascade over five touches takes several transactions.
    return InteractionReactions(store, writes, ManualClock(), streams=streams, cascade_batch=2)


async def touch(
    commands: InteractionCommands, contact_id: str, summary: str = "Sizes?"
) -> Interaction:
    draft = InteractionDraft(type=InteractionType.INQUIRY, channel=Channel.CHAT, summary=summary)
    return await commands.record(contact_id, draft, [], "", AGENT)


async def test_a_late_or_repeated_creation_does_not_bring_an_erased_contact_back(
    commands: InteractionCommands, reactions: InteractionReactions
) -> None:
    assert await reactions.contact_erased(event("e-erase"), contact_id="c-1", actor="sup-sam")
    assert await created(reactions, "c-1")

    with pytest.raises(FailedPreconditionError, match="'c-1' was erased"):
        await touch(commands, "c-1")


async def test_a_touch_for_a_merged_contact_follows_the_merges_to_the_last_survivor(
    commands: InteractionCommands, reactions: InteractionReactions
) -> None:
    for contact_id in ("a", "b", "c"):
        await created(reactions, contact_id)
    await reactions.contacts_merged(event("m-1"), merged_id="a", survivor_id="b", actor="agent-ana")
    await reactions.contacts_merged(event("m-2"), merged_id="b", survivor_id="c", actor="agent-ana")

    recorded = await touch(commands, "a")

    assert recorded.contact_id == "c"


async def test_a_survivor_that_was_erased_takes_no_touches_for_its_duplicates(
    commands: InteractionCommands, reactions: InteractionReactions
) -> None:
    await reactions.contacts_merged(event("m-1"), merged_id="a", survivor_id="b", actor="agent-ana")
    await reactions.contact_erased(event("e-1"), contact_id="b", actor="sup-sam")

    with pytest.raises(FailedPreconditionError, match="'a' \\(merged into 'b'\\) was erased"):
        await touch(commands, "a")


async def test_cascades_go_batch_by_batch_and_a_redelivery_changes_nothing(
    commands: InteractionCommands, reactions: InteractionReactions, store: SqliteInteractionStore
) -> None:
    await created(reactions, "a")
    await created(reactions, "b")
    for n in range(5):
        await touch(commands, "a", summary=f"touch {n}")

    merge = {"merged_id": "a", "survivor_id": "b", "actor": "agent-ana"}
    assert await reactions.contacts_merged(event("m-1"), **merge)
    moved = await store.timeline(TimelineFilter("b"), None, 10)
    assert len(moved) == 5 and await store.of_contact("a", 10) == []

    assert await reactions.contact_erased(event("e-1"), contact_id="b", actor="sup-sam")
    erased = await store.timeline(TimelineFilter("b"), None, 10)
    assert all(i.erased_at and not i.details.summary for i in erased)

    assert not await reactions.contacts_merged(event("m-1"), **merge)
    assert not await reactions.contact_erased(event("e-1"), contact_id="b", actor="sup-sam")
    assert await store.timeline(TimelineFilter("b"), None, 10) == erased


async def test_a_touch_typed_in_late_keeps_when_it_happened_and_promises_from_now_on(
    commands: InteractionCommands, reactions: InteractionReactions
) -> None:
    await created(reactions, "a")
    now = ManualClock().now()
    draft = InteractionDraft(
        type=InteractionType.REQUEST,
        channel=Channel.POSTAL_MAIL,
        occurred_at=now - timedelta(days=30),
    )
    promise = PromiseDraft("Send the catalogue", due_at=now + timedelta(days=1))

    recorded = await commands.record("a", draft, [promise], "", AGENT)

    assert recorded.details.occurred_at == now - timedelta(days=30)
    assert recorded.created_at == now
    assert [p.due_at for p in recorded.promises] == [now + timedelta(days=1)]


async def test_an_erasure_purges_the_stream_of_the_contact_and_its_merged_ones_then_confirms(
    reactions: InteractionReactions, store: SqliteInteractionStore, streams: StreamsErased
) -> None:
    for contact_id in ("a", "b", "c", "other"):
        await created(reactions, contact_id)
    await reactions.contacts_merged(event("m-1"), merged_id="a", survivor_id="b", actor="sup-sam")
    await reactions.contacts_merged(event("m-2"), merged_id="b", survivor_id="c", actor="sup-sam")

    assert await reactions.contact_erased(event("e-1"), contact_id="c", actor="sup-sam")

    assert streams.erased == ["c", "b", "a"]
    [(_, confirmed)] = await store.pending_events(10)
    assert confirmed.subject == "crm.interactions.contact_erasure_confirmed.c"
    known = await store.contact("c")
    assert known is not None and known.erasure_confirmed_at is not None

    # A redelivery, or another erasure of the same contact, neither purges nor confirms again:
    # a purge now would take the confirmation out of the stream.
    assert not await reactions.contact_erased(event("e-1"), contact_id="c", actor="sup-sam")
    assert await reactions.contact_erased(event("e-2"), contact_id="c", actor="sup-sam")
    assert streams.erased == ["c", "b", "a"]
    assert len(await store.pending_events(10)) == 1


async def test_a_merge_that_arrives_after_the_survivors_erasure_erases_what_it_brings(
    commands: InteractionCommands,
    reactions: InteractionReactions,
    store: SqliteInteractionStore,
    streams: StreamsErased,
) -> None:
    await created(reactions, "dup")
    await created(reactions, "survivor")
    await touch(commands, "dup", summary="Asked for Quentin's new address")
    assert await reactions.contact_erased(event("e-1"), contact_id="survivor", actor="sup-sam")

    # The merge happened before the erasure, but its delivery failed and came back late.
    await reactions.contacts_merged(
        event("m-1"), merged_id="dup", survivor_id="survivor", actor="sup-sam"
    )

    [moved] = await store.timeline(TimelineFilter("survivor"), None, 10)
    assert moved.erased_at is not None and moved.details.summary == ""
    assert streams.erased == ["survivor", "dup"]  # the survivor's confirmation stays
    assert len(await store.pending_events(10)) == 2  # the touch, one confirmation
