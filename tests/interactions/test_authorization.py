"""The authorization table of InteractionsService, row by row, allowed and refused.

The rows are proved on the use cases with a real SQLite store (every caller against every kind
of touch is many cases, and each needs only milliseconds); the last tests prove the same over
real gRPC and NATS: the status and the rule a caller sees, the callers' tokens, and a contact's
team following the contacts stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.adapters import event_codec
from interactions.adapters.sqlite_store import SqliteInteractionStore
from interactions.domain.model import Channel, Interaction, InteractionDraft, InteractionType
from interactions.ports import Change, TimelineFilter
from interactions.usecases import InteractionCommands, InteractionQueries, InteractionReactions
from promesa.clock import ManualClock
from promesa.errors import PermissionDeniedError
from promesa.storage import InboxKey
from promesa.usecases import Writes
from tests.interactions.conftest import (
    PARIS_AGENT_TOKEN,
    RunningInteractions,
    an_interaction,
    announce_contact,
    known_contact,
    record,
)
from tests.support import AGENT_TOKEN, ANA, CALLERS, PIA, SAM, SVC, bearer, eventually

# Touches of one (unassigned) contact: (team, agent who handled it).
TOUCHES = {
    "madrid": ("madrid", "agent-bea"),
    "paris": ("paris", "agent-paul"),
    "paris, handled by ana": ("paris", "agent-ana"),
    "unassigned": ("", "svc-intake"),
}
# Who may get, rate, amend (and list) each touch.
MAY_ACT_ON = {
    "ana": {"madrid", "paris, handled by ana", "unassigned"},
    "pia": {"paris", "paris, handled by ana", "unassigned"},
    "ned": {"unassigned"},
    "pat": {"paris", "paris, handled by ana", "unassigned"},
    "sam": set(TOUCHES),
    "svc": set(TOUCHES),
}
# Contacts by team; "dup" (madrid) was merged into the paris one.
CONTACT_TEAMS = {"madrid": "madrid", "paris": "paris", "unassigned": "", "dup": "madrid"}
# Who may record a touch for each contact.
MAY_RECORD_FOR = {
    "ana": {"madrid", "unassigned"},
    "pia": {"paris", "unassigned", "dup"},
    "ned": {"unassigned"},
    "pat": {"paris", "unassigned", "dup"},
    "sam": set(CONTACT_TEAMS),
    "svc": set(CONTACT_TEAMS),
}


class NoStream:
    async def erase(self, contact_id: str) -> None:
        pass


@dataclass
class Desk:
    """The use cases over one store, with a contact of each team and a touch of each kind."""

    commands: InteractionCommands
    queries: InteractionQueries
    touches: dict[str, Interaction]


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    clock = ManualClock()
    store = SqliteInteractionStore(
        tmp_path / "interactions.db", event_codec.encode, clock, synchronous="OFF"
    )
    writes = Writes(store, lambda: None)
    commands = InteractionCommands(store, writes, clock)
    reactions = InteractionReactions(store, writes, clock, streams=NoStream())
    for contact_id, team in CONTACT_TEAMS.items():
        await reactions.contact_created(
            InboxKey("test", f"created-{contact_id}"),
            contact_id=contact_id,
            owner_id="",
            team=team,
            at=clock.now(),
        )
    await reactions.contacts_merged(
        InboxKey("test", "merged"), merged_id="dup", survivor_id="paris", actor="sup-sam"
    )
    touches = {}
    for name, (team, agent) in TOUCHES.items():
        draft = InteractionDraft(
            type=InteractionType.INQUIRY, channel=Channel.CHAT, agent_id=agent, team=team
        )
        touches[name] = await commands.record("unassigned", draft, [], "", SVC)
    yield Desk(commands, InteractionQueries(store), touches)
    await store.close()


def rows(table: dict[str, set[str]], names: list[str]) -> list[tuple[str, str, bool]]:
    return [(who, what, what in table[who]) for who in table for what in names]


def row_id(who: str, what: str, allowed: bool) -> str:
    return f"{who}-{what}-{'allowed' if allowed else 'refused'}"


def param(who: str, what: str, allowed: bool) -> object:
    return pytest.param(who, what, allowed, id=row_id(who, what, allowed))


# --- RecordInteraction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "contact", "allowed"), [param(*r) for r in rows(MAY_RECORD_FOR, [*CONTACT_TEAMS])]
)
async def test_a_touch_is_recorded_for_a_contact_of_the_callers_team_or_an_unassigned_one(
    desk: Desk, who: str, contact: str, allowed: bool
) -> None:
    draft = InteractionDraft(type=InteractionType.REQUEST, channel=Channel.PHONE)
    record = desk.commands.record(contact, draft, [], "", CALLERS[who])
    if allowed:
        # A merged-away contact's touch lands on the survivor, whose team decided.
        assert (await record).contact_id == ("paris" if contact == "dup" else contact)
    else:
        with pytest.raises(PermissionDeniedError, match="record_interaction"):
            await record


async def test_a_touch_with_no_team_named_is_the_contacts_teams(desk: Desk) -> None:
    """A caller with no team (a service, a supervisor of every team) names none: the touch is
    then the team's whose contact it is, not everyone's."""
    draft = InteractionDraft(type=InteractionType.REQUEST, channel=Channel.PHONE)

    recorded = await desk.commands.record("madrid", draft, [], "", SAM)

    assert recorded.details.team == "madrid"
    with pytest.raises(PermissionDeniedError):
        await desk.queries.get(recorded.id, PIA)


async def test_a_retry_is_answered_only_to_a_caller_who_may_read_the_touch(desk: Desk) -> None:
    draft = InteractionDraft(type=InteractionType.REQUEST, channel=Channel.PHONE)
    first = await desk.commands.record("madrid", draft, [], "req-1", ANA)

    assert await desk.commands.record("madrid", draft, [], "req-1", ANA) == first
    with pytest.raises(PermissionDeniedError, match="get_interaction"):
        await desk.commands.record("madrid", draft, [], "req-1", PIA)


# --- GetInteraction, RateInteraction, AmendInteraction ---------------------------------------


@pytest.mark.parametrize(
    ("who", "touch", "allowed"), [param(*r) for r in rows(MAY_ACT_ON, [*TOUCHES])]
)
async def test_a_touch_is_read_by_its_team_or_the_agent_who_handled_it(
    desk: Desk, who: str, touch: str, allowed: bool
) -> None:
    get = desk.queries.get(desk.touches[touch].id, CALLERS[who])
    if allowed:
        assert await get == desk.touches[touch]
    else:
        with pytest.raises(PermissionDeniedError, match="get_interaction"):
            await get


@pytest.mark.parametrize(
    ("who", "touch", "allowed"), [param(*r) for r in rows(MAY_ACT_ON, [*TOUCHES])]
)
async def test_a_touch_is_rated_by_its_team_or_the_agent_who_handled_it(
    desk: Desk, who: str, touch: str, allowed: bool
) -> None:
    rate = desk.commands.rate(desk.touches[touch].id, 4, CALLERS[who])
    if allowed:
        assert (await rate).satisfaction == 4
    else:
        with pytest.raises(PermissionDeniedError, match="rate_interaction"):
            await rate
        assert (await desk.queries.get(desk.touches[touch].id, SVC)).satisfaction is None


@pytest.mark.parametrize(
    ("who", "touch", "allowed"), [param(*r) for r in rows(MAY_ACT_ON, [*TOUCHES])]
)
async def test_a_touch_is_amended_by_its_team_or_the_agent_who_handled_it(
    desk: Desk, who: str, touch: str, allowed: bool
) -> None:
    original = desk.touches[touch]
    sent = InteractionDraft(summary="Asked about sizes")
    amend = desk.commands.amend(original.id, "", sent, ["summary"], "detail", CALLERS[who])
    if allowed:
        assert (await amend).details.summary == "Asked about sizes"
    else:
        with pytest.raises(PermissionDeniedError, match="amend_interaction"):
            await amend
        assert await desk.queries.get(original.id, SVC) == original


# --- ListInteractions ------------------------------------------------------------------------


@pytest.mark.parametrize("who", [*CALLERS])
async def test_a_timeline_lists_only_the_touches_the_caller_may_read(desk: Desk, who: str) -> None:
    """Never refused: narrowed, in the store's query, so pages stay full and in order."""
    found: list[str] = []
    token = ""
    while True:
        page = await desk.queries.list(TimelineFilter("unassigned"), 1, token, CALLERS[who])
        found.extend(i.id for i in page.items)
        token = page.next_page_token
        if not token:
            break

    visible = {desk.touches[name].id for name in MAY_ACT_ON[who]}
    assert set(found) == visible and len(found) == len(visible)


# --- over gRPC and NATS ----------------------------------------------------------------------


async def test_a_refusal_is_permission_denied_naming_the_rule(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    madrid = await known_contact(svc)
    paris = await known_contact(svc, team="paris")
    touch = await record(svc, an_interaction(madrid))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.GetInteraction(
            interactions_pb.GetInteractionRequest(id=touch.id), metadata=bearer(PARIS_AGENT_TOKEN)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "get_interaction" in (caught.value.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, an_interaction(paris, team=""))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "record_interaction" in (caught.value.details() or "")

    # The timeline of the madrid contact, to the paris agent: nothing of madrid's.
    listed = await svc.stub.ListInteractions(
        interactions_pb.ListInteractionsRequest(contact_id=madrid),
        metadata=bearer(PARIS_AGENT_TOKEN),
    )
    assert list(listed.interactions) == []


async def test_who_may_record_for_a_contact_follows_its_team_on_the_contacts_stream(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    await record(svc, an_interaction(contact_id), token=AGENT_TOKEN)

    # When the contacts service moves the contact to the paris team,
    moved_at = svc.clock.now() + timedelta(minutes=1)
    await announce_contact(svc.bus, contact_id, moved_at, team="paris", updated=True)

    async def moved() -> bool:
        known = await svc.store.contact(contact_id)
        return known is not None and known.team == "paris"

    await eventually(moved)
    # then the paris agent records touches for it, and the madrid agent no longer does.
    paris_touch = an_interaction(contact_id, team="")
    assert (await record(svc, paris_touch, token=PARIS_AGENT_TOKEN)).team == "paris"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, an_interaction(contact_id, team=""), token=AGENT_TOKEN)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_late_creation_does_not_undo_a_later_move_to_another_team(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    store = SqliteInteractionStore(tmp_path / "i.db", event_codec.encode, clock)
    writes: Writes[Change] = Writes(store, lambda: None)
    reactions = InteractionReactions(store, writes, clock, streams=NoStream())
    created_at = clock.now()
    try:
        await reactions.contact_updated(
            InboxKey("t", "u"),
            contact_id="c",
            owner_id="agent-pia",
            team="paris",
            at=created_at + timedelta(minutes=5),
        )
        await reactions.contact_created(
            InboxKey("t", "c"), contact_id="c", owner_id="agent-ana", team="madrid", at=created_at
        )
        known = await store.contact("c")
        assert known is not None and (known.team, known.owner_id) == ("paris", "agent-pia")
    finally:
        await store.close()
