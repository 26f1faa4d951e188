"""The authorization table of FollowupService, row by row, allowed and refused.

The rows are proved on the use cases with a real SQLite store (every caller against every kind
of promise is many cases, each needing milliseconds); the last tests prove the same over real
gRPC and NATS: the status and the rule a caller sees, callers' tokens of other teams, and
StreamReminders sending a user their own reminders and nobody else's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from devtools.natsserver import NatsServer
from followup import authorization
from followup.adapters import event_codec
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.domain.model import Evidence, Promise, PromiseDraft, PromiseKind
from followup.domain.reminders import ReminderKind, ReminderPolicy, delivery
from followup.domain.stats import Grouping, PromiseStats
from followup.ports import Change, FedReminder, PromiseFilter
from followup.usecases import PromiseCommands, PromiseQueries
from followup.usecases.planning import PromisePlanner
from promesa.auth import Identity
from promesa.clock import ManualClock
from promesa.errors import InvalidArgumentError, PermissionDeniedError
from promesa.usecases import Writes
from tests.followup.conftest import (
    RunningFollowup,
    a_promise,
    followup_env,
    make,
    start_followup,
)
from tests.support import (
    AGENT_TOKEN,
    ANA,
    CALLERS,
    NED,
    PAT,
    PIA,
    SAM,
    SVC,
    TOKENS,
    bearer,
    eventually,
)

# Promises by (owner, team).
PROMISES = {
    "ana's": ("agent-ana", "madrid"),
    "bea's": ("agent-bea", "madrid"),
    "pia's": ("agent-pia", "paris"),
    "ana's in paris": ("agent-ana", "paris"),
    "ned's unassigned": ("agent-ned", ""),
    "zed's unassigned": ("agent-zed", ""),
}
UNASSIGNED = {"ned's unassigned", "zed's unassigned"}
# Who may read each promise (GetPromise, its deliveries, and what counts in their statistics).
MAY_READ = {
    "ana": {"ana's", "bea's", "ana's in paris", *UNASSIGNED},
    "pia": {"pia's", "ana's in paris", *UNASSIGNED},
    "ned": UNASSIGNED,
    "pat": {"pia's", "ana's in paris", *UNASSIGNED},
    "sam": set(PROMISES),
    "svc": set(PROMISES),
}
# Who may keep, reassign, renegotiate, pause, resume, cancel and confirm each promise.
MAY_ACT_ON = {
    "ana": {"ana's", "ana's in paris"},
    "pia": {"pia's"},
    "ned": {"ned's unassigned"},
    "pat": {"pia's", "ana's in paris", *UNASSIGNED},
    "sam": set(PROMISES),
    "svc": set(PROMISES),
}
# New promises by (owner, team named): "self" is the caller.
DRAFTS = {
    "own, team unnamed": ("self", ""),
    "own, in paris": ("self", "paris"),
    "bea's, in madrid": ("agent-bea", "madrid"),
    "bea's, team unnamed": ("agent-bea", ""),
    "zed's, in lisbon": ("agent-zed", "lisbon"),
}
# Who may make each, and the team it lands in (an unnamed team is the caller's own).
MAY_CREATE = {
    "ana": {"own, team unnamed": "madrid", "bea's, in madrid": "madrid",
            "bea's, team unnamed": "madrid"},
    "pia": {"own, team unnamed": "paris", "own, in paris": "paris",
            "bea's, team unnamed": "paris"},
    "ned": {"own, team unnamed": ""},
    "pat": {"own, team unnamed": "paris", "own, in paris": "paris",
            "bea's, team unnamed": "paris"},
    "sam": {"own, team unnamed": "", "own, in paris": "paris", "bea's, in madrid": "madrid",
            "bea's, team unnamed": "", "zed's, in lisbon": "lisbon"},
    "svc": {"own, team unnamed": "", "own, in paris": "paris", "bea's, in madrid": "madrid",
            "bea's, team unnamed": "", "zed's, in lisbon": "lisbon"},
}  # fmt: skip


class NoFeed:
    """StreamReminders' feed, as the use cases see it: subscribing hands back nothing."""

    def __init__(self) -> None:
        self.subscribed: list[str] = []

    async def subscribe(self, user_id: str, after: int | None = None) -> NoSubscription:
        self.subscribed.append(user_id)
        return NoSubscription()


class NoSubscription:
    started_after = 0

    async def __aiter__(self) -> AsyncIterator[FedReminder]:
        return
        yield  # an async generator that yields nothing

    async def close(self) -> None:
        pass


@dataclass
class Desk:
    """The use cases over one store, with one promise of each kind (made by the service)."""

    store: SqlitePromiseStore
    commands: PromiseCommands
    queries: PromiseQueries
    feed: NoFeed
    clock: ManualClock
    promises: dict[str, Promise]

    async def stored(self, name: str) -> Promise:
        return await self.queries.get(self.promises[name].id, SVC)


def supervisor_of(team: str) -> str:
    return {"paris": "sup-pat", "madrid": "sup-sam"}.get(team, "")


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    clock = ManualClock()
    store = SqlitePromiseStore(
        tmp_path / "followup.db", event_codec.encode, clock, synchronous="OFF"
    )
    writes: Writes[Change] = Writes(store, lambda: None)
    feed = NoFeed()
    queries = PromiseQueries(store, clock, feed)
    planner = PromisePlanner(ReminderPolicy(), supervisor_of)
    commands = PromiseCommands(store, writes, clock, queries=queries, planner=planner)
    promises = {}
    for name, (owner, team) in PROMISES.items():
        promises[name] = await commands.create(a_draft(clock, owner, team), "", SVC)
    yield Desk(store, commands, queries, feed, clock, promises)
    await store.close()


def a_draft(clock: ManualClock, owner: str, team: str) -> PromiseDraft:
    return PromiseDraft(
        contact_id="contact-1",
        text="Call back with the refund reference",
        kind=PromiseKind.CALL_BACK,
        owner_id=owner,
        due_at=clock.now() + timedelta(days=2),
        team=team,
    )


def rows(table: dict[str, set[str]], names: list[str]) -> list[object]:
    return [
        pytest.param(
            who, what, what in table[who], id=f"{who}-{what}-{verdict(what in table[who])}"
        )
        for who in table
        for what in names
    ]


def verdict(allowed: bool) -> str:
    return "allowed" if allowed else "refused"


# --- CreatePromise ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "draft", "allowed"),
    rows({who: set(drafts) for who, drafts in MAY_CREATE.items()}, [*DRAFTS]),
)
async def test_agents_make_promises_in_their_team_and_supervisors_in_the_team_they_supervise(
    desk: Desk, who: str, draft: str, allowed: bool
) -> None:
    caller = CALLERS[who]
    owner, team = DRAFTS[draft]
    sent = a_draft(desk.clock, caller.subject if owner == "self" else owner, team)
    create = desk.commands.create(sent, f"req-{who}-{draft}", caller)
    if allowed:
        made = await create
        assert made.team == MAY_CREATE[who][draft]  # an unnamed team is the caller's own
        assert made.owner_id == sent.owner_id and made.created_by == caller.subject
    else:
        with pytest.raises(PermissionDeniedError, match=r"^create_promise"):
            await create


async def test_a_retried_create_is_answered_only_to_a_caller_who_may_read_the_promise(
    desk: Desk,
) -> None:
    draft = a_draft(desk.clock, "agent-ana", "madrid")
    first = await desk.commands.create(draft, "req-1", ANA)

    assert await desk.commands.create(draft, "req-1", ANA) == first
    with pytest.raises(PermissionDeniedError, match=r"^get_promise"):
        await desk.commands.create(draft, "req-1", PIA)


# --- GetPromise ------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "promise", "allowed"), rows(MAY_READ, [*PROMISES]))
async def test_a_promise_is_read_by_its_owner_and_its_team(
    desk: Desk, who: str, promise: str, allowed: bool
) -> None:
    get = desk.queries.get(desk.promises[promise].id, CALLERS[who])
    if allowed:
        assert await get == desk.promises[promise]
    else:
        with pytest.raises(PermissionDeniedError, match=r"^get_promise"):
            await get


# --- KeepPromise, ReassignPromise, RenegotiateDueDate, Pause, Resume, Cancel, Confirm --------

Act = Callable[[Desk, str, Identity], Awaitable[Promise]]


def in_days(desk: Desk, days: int) -> datetime:
    return desk.clock.now() + timedelta(days=days)


async def paused(desk: Desk, promise_id: str) -> None:
    await desk.commands.pause(promise_id, "", "waiting for photos", SVC)


async def kept(desk: Desk, promise_id: str) -> None:
    await desk.commands.keep(promise_id, "", Evidence(note="refund sent"), SVC)


# rule → (what the service does first, the action as the caller)
ACTIONS: dict[str, tuple[Callable[[Desk, str], Awaitable[None]] | None, Act]] = {
    "keep_promise": (
        None,
        lambda d, pid, who: d.commands.keep(pid, "", Evidence(note="done"), who),
    ),
    "reassign_promise": (
        None,
        lambda d, pid, who: d.commands.reassign(pid, "", "agent-zoe", "", "covering", who),
    ),
    "renegotiate_due_date": (
        None,
        lambda d, pid, who: d.commands.renegotiate(pid, "", in_days(d, 5), "parts", True, who),
    ),
    "pause_promise": (
        None,
        lambda d, pid, who: d.commands.pause(pid, "", "waiting for photos", who),
    ),
    "resume_promise": (
        paused,
        lambda d, pid, who: d.commands.resume(pid, "", "photos arrived", who),
    ),
    "cancel_promise": (
        None,
        lambda d, pid, who: d.commands.cancel(pid, "", "customer withdrew", who),
    ),
    "confirm_by_customer": (
        kept,
        lambda d, pid, who: d.commands.confirm(pid, 5, who),
    ),
}


@pytest.mark.parametrize("rule", [*ACTIONS])
@pytest.mark.parametrize(("who", "promise", "allowed"), rows(MAY_ACT_ON, [*PROMISES]))
async def test_a_promise_is_acted_on_by_its_owner_or_a_supervisor_of_its_team(
    desk: Desk, rule: str, who: str, promise: str, allowed: bool
) -> None:
    prepare, act = ACTIONS[rule]
    promise_id = desk.promises[promise].id
    if prepare is not None:
        await prepare(desk, promise_id)
    before = await desk.stored(promise)

    action = act(desk, promise_id, CALLERS[who])
    if allowed:
        assert (await action).version == before.version + 1
    else:
        with pytest.raises(PermissionDeniedError, match=rf"^{rule}"):
            await action
        assert await desk.stored(promise) == before


async def test_a_promise_handed_to_another_agent_is_no_longer_the_first_owners_to_act_on(
    desk: Desk,
) -> None:
    ana_s = desk.promises["ana's"].id
    await desk.commands.reassign(ana_s, "", "agent-bea", "", "Ana is on leave", ANA)

    with pytest.raises(PermissionDeniedError, match=r"^pause_promise"):
        await desk.commands.pause(ana_s, "", "waiting", ANA)
    # still her team's: she reads it
    assert (await desk.queries.get(ana_s, ANA)).owner_id == "agent-bea"


# --- ListPromises ----------------------------------------------------------------------------


async def listed(desk: Desk, f: PromiseFilter, who: Identity) -> list[str]:
    """Every page, one promise at a time: the narrowing holds across page tokens."""
    names = {p.id: name for name, p in desk.promises.items()}
    found: list[str] = []
    token = ""
    while True:
        page = await desk.queries.list(f, False, 1, token, who)
        found.extend(names[p.id] for p in page.items)
        token = page.next_page_token
        if not token:
            return found


# With no owner or team named: the caller's team's promises (no team: their own).
UNFILTERED = {
    "ana": {"ana's", "bea's"},
    "pia": {"pia's", "ana's in paris"},
    "ned": {"ned's unassigned"},
    "pat": {"pia's", "ana's in paris"},
    "sam": set(PROMISES),
    "svc": set(PROMISES),
}


@pytest.mark.parametrize("who", [*CALLERS])
async def test_a_list_with_no_owner_or_team_named_is_the_callers_teams(
    desk: Desk, who: str
) -> None:
    found = await listed(desk, PromiseFilter(), CALLERS[who])
    assert set(found) == UNFILTERED[who] and len(found) == len(UNFILTERED[who])


@pytest.mark.parametrize(
    ("who", "owner", "team", "expected"),
    [
        pytest.param("ana", "agent-ana", "", {"ana's", "ana's in paris"}, id="ana-her-own"),
        pytest.param("ana", "agent-ana", "paris", {"ana's in paris"}, id="ana-her-own-in-paris"),
        pytest.param("ana", "", "madrid", {"ana's", "bea's"}, id="ana-her-team"),
        pytest.param("ana", "agent-bea", "", {"bea's"}, id="ana-a-teammates"),
        pytest.param("ana", "agent-pia", "", set(), id="ana-another-teams-agent-narrowed"),
        pytest.param("ned", "agent-ned", "", {"ned's unassigned"}, id="ned-his-own"),
        pytest.param("pat", "", "paris", {"pia's", "ana's in paris"}, id="pat-her-team"),
        pytest.param("pat", "agent-ana", "", {"ana's in paris"}, id="pat-an-agent-narrowed"),
        pytest.param("sam", "", "madrid", {"ana's", "bea's"}, id="sam-any-team"),
        pytest.param("svc", "agent-ana", "", {"ana's", "ana's in paris"}, id="svc-anyones"),
    ],
)
async def test_a_list_is_narrowed_to_what_the_caller_may_read(
    desk: Desk, who: str, owner: str, team: str, expected: set[str]
) -> None:
    found = await listed(desk, PromiseFilter(owner_id=owner, team=team), CALLERS[who])
    assert set(found) == expected and len(found) == len(expected)


@pytest.mark.parametrize(
    ("who", "owner", "team"),
    [
        pytest.param("ana", "", "paris", id="ana-another-team"),
        pytest.param("ana", "agent-pia", "paris", id="ana-another-teams-agent"),
        pytest.param("ned", "", "madrid", id="ned-a-team-he-is-not-in"),
        pytest.param("ned", "agent-zed", "", id="ned-another-agent"),
        pytest.param("pat", "", "madrid", id="pat-a-team-she-does-not-supervise"),
    ],
)
async def test_a_list_naming_a_team_the_caller_is_not_in_is_refused(
    desk: Desk, who: str, owner: str, team: str
) -> None:
    with pytest.raises(PermissionDeniedError, match=r"^list_promises"):
        await desk.queries.list(
            PromiseFilter(owner_id=owner, team=team), False, 10, "", CALLERS[who]
        )


async def test_a_page_token_never_widens_what_another_caller_sees(desk: Desk) -> None:
    """The token is bound to the narrowed filter: Sam's token is not Ana's to use."""
    page = await desk.queries.list(PromiseFilter(), False, 1, "", SAM)
    with pytest.raises(InvalidArgumentError):
        await desk.queries.list(PromiseFilter(), False, 1, page.next_page_token, ANA)


# --- ListReminderDeliveries ------------------------------------------------------------------


@pytest.mark.parametrize(("who", "promise", "allowed"), rows(MAY_READ, [*PROMISES]))
async def test_a_promises_deliveries_are_listed_to_whoever_may_read_it(
    desk: Desk, who: str, promise: str, allowed: bool
) -> None:
    promise_id = desk.promises[promise].id
    listing = desk.queries.deliveries(promise_id, "", 100, "", CALLERS[who])
    if allowed:
        page = await listing
        assert page.items and {d.promise_id for d in page.items} == {promise_id}
    else:
        with pytest.raises(PermissionDeniedError, match=r"^list_reminder_deliveries"):
            await listing


@pytest.mark.parametrize("who", [*CALLERS])
async def test_deliveries_listed_without_a_promise_are_those_of_promises_the_caller_may_read(
    desk: Desk, who: str
) -> None:
    page = await desk.queries.deliveries("", "", 100, "", CALLERS[who])
    names = {p.id: name for name, p in desk.promises.items()}
    assert {names[d.promise_id] for d in page.items} == MAY_READ[who]


async def test_deliveries_of_another_teams_agent_are_not_listed(desk: Desk) -> None:
    assert not (await desk.queries.deliveries("", "agent-pia", 100, "", ANA)).items
    pias = (await desk.queries.deliveries("", "agent-pia", 100, "", PAT)).items
    assert pias and {d.promise_id for d in pias} == {desk.promises["pia's"].id}


async def test_a_reminder_addressed_to_the_caller_is_listed_to_them(desk: Desk) -> None:
    """Whatever promise it is about: Ned covered for Pia once and was reminded."""
    pias = desk.promises["pia's"]
    to_ned = delivery(
        pias, ReminderKind.AT_DUE, desk.clock.now(), "agent-ned", ReminderPolicy(), "to-ned"
    )
    await desk.store.commit(Change(added=[to_ned]))

    listed = (await desk.queries.deliveries("", "", 100, "", NED)).items
    assert "to-ned" in {d.id for d in listed}
    assert {d.promise_id for d in listed if d.id != "to-ned"} <= {
        desk.promises[name].id for name in MAY_READ["ned"]
    }
    with pytest.raises(PermissionDeniedError):  # the promise itself stays Pia's team's
        await desk.queries.deliveries(pias.id, "", 100, "", NED)


# --- GetPromiseStats -------------------------------------------------------------------------


@pytest.mark.parametrize("who", [*CALLERS])
async def test_statistics_count_only_the_promises_the_caller_may_read(desk: Desk, who: str) -> None:
    rows_ = await desk.queries.stats(Grouping.ALL, None, None, CALLERS[who])
    assert sum(r.made for r in rows_) == len(MAY_READ[who])


async def test_statistics_across_teams_need_a_supervisor_of_every_team(desk: Desk) -> None:
    def teams(found: list[PromiseStats]) -> set[str]:
        return {r.key for r in found}

    assert teams(await desk.queries.stats(Grouping.TEAM, None, None, SAM)) == {
        "madrid",
        "paris",
        "",
    }
    # Pat supervises paris: her team's (and the unassigned promises, anyone's).
    assert teams(await desk.queries.stats(Grouping.TEAM, None, None, PAT)) == {"paris", ""}
    # Ana's team's, and her own promise in paris.
    assert "paris" in teams(await desk.queries.stats(Grouping.TEAM, None, None, ANA))
    pia_by_owner = await desk.queries.stats(Grouping.OWNER, None, None, PIA)
    assert "agent-bea" not in teams(pia_by_owner)  # Bea works in madrid


# --- StreamReminders -------------------------------------------------------------------------

USERS = ["agent-ana", "agent-pia", "sup-pat", "sup-sam"]
MAY_STREAM = {
    "ana": {"agent-ana"},
    "pia": {"agent-pia"},
    "ned": set(),
    "pat": {"sup-pat"},  # a supervisor streams her own reminders, not her team's
    "sam": {"sup-sam"},
    "svc": set(USERS),
}


@pytest.mark.parametrize(("who", "user", "allowed"), rows(MAY_STREAM, USERS))
async def test_a_users_reminders_are_streamed_to_that_user_only(
    desk: Desk, who: str, user: str, allowed: bool
) -> None:
    stream = desk.queries.reminders(user, CALLERS[who])
    if allowed:
        await (await stream).close()
        assert desk.feed.subscribed == [user]
    else:
        with pytest.raises(PermissionDeniedError, match=r"^stream_reminders"):
            await stream
        assert desk.feed.subscribed == []


def test_every_rpc_of_the_service_has_a_rule() -> None:
    rpcs = followup_pb.DESCRIPTOR.services_by_name["FollowupService"].methods_by_name
    assert set(authorization.RULES) == set(rpcs)
    for rpc, rule in authorization.RULES.items():
        name = rule.partition(":")[0]
        assert hasattr(authorization, name), f"{rpc}: no function {name}"


# --- over gRPC and NATS ----------------------------------------------------------------------

PARIS_AGENT_TOKEN = "paris-agent-token"
PARIS_SUPERVISOR_TOKEN = "paris-supervisor-token"
FOLLOWUP_TOKENS = (
    f"{TOKENS},{PARIS_AGENT_TOKEN}=agent-pia:agent:paris,"
    f"{PARIS_SUPERVISOR_TOKEN}=sup-pat:supervisor:paris"
)


@pytest.fixture
async def teams_service(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RunningFollowup]:
    env = followup_env(nats_server, tmp_path, CRM_API_TOKENS=FOLLOWUP_TOKENS)
    svc = await start_followup(nats_server, env, ManualClock())
    yield svc
    await svc.stop()


async def refusal(call: Awaitable[object]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return caught.value.details() or ""


async def test_a_refusal_is_permission_denied_naming_the_rule(
    teams_service: RunningFollowup,
) -> None:
    svc, stub = teams_service, teams_service.stub
    anas = await make(svc)  # agent-ana's, in madrid

    keep = followup_pb.KeepPromiseRequest(id=anas.id, evidence=promise_pb2.Evidence(note="x"))
    details = await refusal(stub.KeepPromise(keep, metadata=bearer(PARIS_AGENT_TOKEN)))
    assert details.startswith("keep_promise:")
    assert (
        await refusal(stub.KeepPromise(keep, metadata=bearer(PARIS_SUPERVISOR_TOKEN)))
    ).startswith("keep_promise:")
    get = followup_pb.GetPromiseRequest(id=anas.id)
    assert (await refusal(stub.GetPromise(get, metadata=bearer(PARIS_AGENT_TOKEN)))).startswith(
        "get_promise:"
    )
    in_madrid = followup_pb.ListPromisesRequest(team="madrid")
    assert (
        await refusal(stub.ListPromises(in_madrid, metadata=bearer(PARIS_AGENT_TOKEN)))
    ).startswith("list_promises:")
    for_ana = followup_pb.CreatePromiseRequest(
        promise=a_promise_for(svc, owner_id="agent-ana", team="madrid")
    )
    assert (
        await refusal(stub.CreatePromise(for_ana, metadata=bearer(PARIS_AGENT_TOKEN)))
    ).startswith("create_promise:")

    # Pia's own list leaves Ana's promise out; Ana's keeps it.
    pias = await stub.ListPromises(
        followup_pb.ListPromisesRequest(), metadata=bearer(PARIS_AGENT_TOKEN)
    )
    assert list(pias.promises) == []
    anas_list = await stub.ListPromises(followup_pb.ListPromisesRequest(), metadata=bearer())
    assert [p.id for p in anas_list.promises] == [anas.id]
    # and her keep goes through.
    assert (await stub.KeepPromise(keep, metadata=bearer(AGENT_TOKEN))).promise.status == (
        promise_pb2.PROMISE_STATUS_KEPT
    )


def a_promise_for(svc: RunningFollowup, **fields: str) -> promise_pb2.Promise:
    return a_promise(svc.clock.now() + timedelta(days=2), **fields)


async def test_stream_reminders_sends_the_caller_their_own_reminders_and_nobody_elses(
    teams_service: RunningFollowup,
) -> None:
    svc, stub = teams_service, teams_service.stub
    # Given Ana streaming her reminders, and Pia refused Ana's,
    refused = stub.StreamReminders(
        followup_pb.StreamRemindersRequest(owner_id="agent-ana"),
        metadata=bearer(PARIS_AGENT_TOKEN),
    )
    details = await refusal(refused.read())
    assert details.startswith("stream_reminders:")
    call = stub.StreamReminders(
        followup_pb.StreamRemindersRequest(owner_id="agent-ana"), metadata=bearer()
    )
    received: list[reminder_pb2.Reminder] = []

    async def read() -> None:
        async for reply in call:
            received.append(reply.reminder)

    reader = asyncio.create_task(read())
    await call.initial_metadata()  # listening now

    # when a promise of Pia's and then one of Ana's fall due,
    pias = await make(
        svc,
        owner_id="agent-pia",
        team="paris",
        contact_id="contact-2",
        token=PARIS_AGENT_TOKEN,
        due_in=timedelta(minutes=20),
    )
    anas = await make(svc, due_in=timedelta(minutes=30))
    svc.clock.advance(timedelta(minutes=30))
    assert await svc.scheduler.tick() == 2
    await svc.runtime.parts.relay.flush()

    async def got() -> bool:
        return bool(received)

    await eventually(got)
    call.cancel()
    await asyncio.gather(reader, return_exceptions=True)

    # then Ana's stream carries hers only (Pia's went out on Pia's subjects).
    assert [(r.promise_id, r.recipient_id) for r in received] == [(anas.id, "agent-ana")]
    assert pias.id not in {r.promise_id for r in received}
