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
from interactions.ports import TimelineFilter
from interactions.usecases import Timeline
from promesa.auth import Identity, Role
from promesa.clock import ManualClock
from promesa.errors import FailedPreconditionError

AGENT = Identity("agent-ana", Role.AGENT)
CONSUMER = "interactions-contacts"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteInteractionStore]:
    store = SqliteInteractionStore(
        tmp_path / "interactions.db", event_codec.encode, ManualClock(), synchronous="OFF"
    )
    yield store
    await store.close()


@pytest.fixture
def timeline(store: SqliteInteractionStore) -> Timeline:
    # Batches of two, so a cascade over five touches takes several transactions.
    return Timeline(store, ManualClock(), cascade_batch=2)


async def touch(timeline: Timeline, contact_id: str, summary: str = "Sizes?") -> Interaction:
    draft = InteractionDraft(type=InteractionType.INQUIRY, channel=Channel.CHAT, summary=summary)
    return await timeline.record(contact_id, draft, [], "", AGENT)


async def test_a_late_or_repeated_creation_does_not_bring_an_erased_contact_back(
    timeline: Timeline,
) -> None:
    assert await timeline.contact_erased(CONSUMER, "e-erase", "c-1", "sup-sam")
    assert await timeline.contact_created(CONSUMER, "e-create", "c-1")

    with pytest.raises(FailedPreconditionError, match="'c-1' was erased"):
        await touch(timeline, "c-1")


async def test_a_touch_for_a_merged_contact_follows_the_merges_to_the_last_survivor(
    timeline: Timeline,
) -> None:
    for contact_id in ("a", "b", "c"):
        await timeline.contact_created(CONSUMER, f"created-{contact_id}", contact_id)
    await timeline.contacts_merged(CONSUMER, "m-1", "a", "b", "agent-ana")
    await timeline.contacts_merged(CONSUMER, "m-2", "b", "c", "agent-ana")

    recorded = await touch(timeline, "a")

    assert recorded.contact_id == "c"


async def test_a_survivor_that_was_erased_takes_no_touches_for_its_duplicates(
    timeline: Timeline,
) -> None:
    await timeline.contacts_merged(CONSUMER, "m-1", "a", "b", "agent-ana")
    await timeline.contact_erased(CONSUMER, "e-1", "b", "sup-sam")

    with pytest.raises(FailedPreconditionError, match="'a' \\(merged into 'b'\\) was erased"):
        await touch(timeline, "a")


async def test_cascades_go_batch_by_batch_and_a_redelivery_changes_nothing(
    timeline: Timeline, store: SqliteInteractionStore
) -> None:
    await timeline.contact_created(CONSUMER, "created-a", "a")
    await timeline.contact_created(CONSUMER, "created-b", "b")
    for n in range(5):
        await touch(timeline, "a", summary=f"touch {n}")

    assert await timeline.contacts_merged(CONSUMER, "m-1", "a", "b", "agent-ana")
    moved = await store.timeline(TimelineFilter("b"), None, 10)
    assert len(moved) == 5 and await store.of_contact("a", 10) == []

    assert await timeline.contact_erased(CONSUMER, "e-1", "b", "sup-sam")
    erased = await store.timeline(TimelineFilter("b"), None, 10)
    assert all(i.erased_at and not i.details.summary for i in erased)

    assert not await timeline.contacts_merged(CONSUMER, "m-1", "a", "b", "agent-ana")
    assert not await timeline.contact_erased(CONSUMER, "e-1", "b", "sup-sam")
    assert await store.timeline(TimelineFilter("b"), None, 10) == erased


async def test_a_touch_typed_in_late_keeps_when_it_happened_and_promises_from_now_on(
    timeline: Timeline,
) -> None:
    await timeline.contact_created(CONSUMER, "created-a", "a")
    now = ManualClock().now()
    draft = InteractionDraft(
        type=InteractionType.REQUEST,
        channel=Channel.POSTAL_MAIL,
        occurred_at=now - timedelta(days=30),
    )
    promise = PromiseDraft("Send the catalogue", due_at=now + timedelta(days=1))

    recorded = await timeline.record("a", draft, [promise], "", AGENT)

    assert recorded.details.occurred_at == now - timedelta(days=30)
    assert recorded.created_at == now
    assert [p.due_at for p in recorded.promises] == [now + timedelta(days=1)]
