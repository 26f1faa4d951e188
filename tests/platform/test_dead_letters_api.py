"""Dead letters seen and replayed over real gRPC, against the contacts service and its
consumer of the interactions stream: a poison event is dead-lettered at its first delivery,
listed, refused while the bug is still there, replayed after the fix, once; and only a
supervisor of every team may do any of it. Also the runtime's inbox pruning, on the same
service."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from contacts.entrypoints.interactions_consumer import CONSUMER
from crm.contacts.v1 import contact_pb2
from crm.operations.v1 import dead_letters_pb2 as dl_pb
from crm.operations.v1 import dead_letters_pb2_grpc as dl_grpc
from devtools.natsserver import NatsServer
from promesa.clock import ManualClock
from promesa.dead_letters import RULES
from promesa.storage import InboxKey
from tests.contacts.conftest import MADRID_SUPERVISOR_TOKEN, RunningContacts, running_contacts
from tests.contacts.test_contacts_api import a_person, create
from tests.contacts.test_events import PURCHASE, get, publish_interaction
from tests.support import AGENT_TOKEN, SUPERVISOR_TOKEN, bearer, eventually, field_violations


@dataclass
class Desk:
    contacts: RunningContacts
    stub: dl_grpc.DeadLettersServiceAsyncStub


MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
BACKENDS = [
    "sqlite",
    pytest.param(
        "mongodb",
        marks=pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set"),
    ),
]


def backend_env(backend: str) -> dict[str, str]:
    if backend == "sqlite":
        return {}
    database = f"promesa_dead_letters_{uuid.uuid4().hex}"
    return {
        "CRM_STORE": "mongodb",
        "CRM_MONGODB_URI": MONGODB_URI,
        "CRM_MONGODB_DATABASE": database,
    }


@pytest.fixture(params=BACKENDS)
async def desk(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[Desk]:
    """The contacts service on each store backend: the dead letters are the store bases'."""
    extra = backend_env(request.param)
    async with running_contacts(nats_server, tmp_path, ManualClock(), **extra) as contacts:
        yield Desk(contacts, dl_grpc.DeadLettersServiceStub(contacts.channel))


class Bug(Exception):
    """Stands for a defect in the handler that no retry fixes until a new release."""


def break_the_handler(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(inbox: InboxKey, **ids: object) -> bool:
        raise ValueError("bug #42: purchases are misread")

    monkeypatch.setattr(desk.contacts.app.reactions, "interaction_recorded", broken)


async def listed(
    desk: Desk, consumer: str = "", page_size: int = 0, page_token: str = ""
) -> dl_pb.ListDeadLettersResponse:
    request = dl_pb.ListDeadLettersRequest(
        consumer=consumer, page_size=page_size, page_token=page_token
    )
    return await desk.stub.ListDeadLetters(request, metadata=bearer(SUPERVISOR_TOKEN))


async def dead_letters_of(desk: Desk, count: int) -> list[dl_pb.DeadLetter]:
    async def found() -> list[dl_pb.DeadLetter] | None:
        letters = list((await listed(desk, consumer=CONSUMER)).dead_letters)
        return letters if len(letters) >= count else None

    return await eventually(found, timeout=10)


async def replay(
    desk: Desk, letter_id: str, token: str = SUPERVISOR_TOKEN
) -> dl_pb.ReplayDeadLetterResponse:
    return await desk.stub.ReplayDeadLetter(
        dl_pb.ReplayDeadLetterRequest(id=letter_id), metadata=bearer(token)
    )


async def test_a_poison_event_is_listed_then_replayed_once_after_the_fix(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact = await create(desk.contacts, a_person(emails=["poison@example.com"]))
    # Given a release whose handler fails on every purchase,
    break_the_handler(desk, monkeypatch)
    event_id = await publish_interaction(desk.contacts, contact.id, PURCHASE)

    # the event is dead-lettered at its first delivery (a ValueError is permanent),
    [letter] = await dead_letters_of(desk, 1)
    assert (letter.consumer, letter.event_id, letter.delivery) == (CONSUMER, event_id, 1)
    assert letter.event_type == "crm.interactions.v1.InteractionRecorded"
    assert letter.subject == f"crm.interactions.recorded.{contact.id}"
    assert "ValueError" in letter.error and "bug #42" in letter.error
    assert not letter.HasField("replayed_at")

    # and a replay before the fix fails again, says why, and leaves it dead.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await replay(desk, letter.id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "bug #42" in str(refused.value.details())
    [still] = (await listed(desk)).dead_letters
    assert not still.HasField("replayed_at")

    # When the fix is deployed, the replay applies the event, as the consumer would have:
    monkeypatch.undo()
    replayed = await replay(desk, letter.id)
    assert not replayed.already_replayed and replayed.dead_letter.HasField("replayed_at")
    after = await get(desk.contacts, contact.id)
    assert after.status == contact_pb2.LIFECYCLE_STATUS_ACTIVE

    # and once: a second replay is answered as such and changes nothing.
    again = await replay(desk, letter.id)
    assert again.already_replayed
    assert again.dead_letter.replayed_at == replayed.dead_letter.replayed_at
    assert (await get(desk.contacts, contact.id)).etag == after.etag


async def test_dead_letters_come_a_page_at_a_time_oldest_first(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_the_handler(desk, monkeypatch)
    first = await publish_interaction(desk.contacts, "c-1", PURCHASE)
    second = await publish_interaction(desk.contacts, "c-2", PURCHASE)
    await dead_letters_of(desk, 2)

    page = await listed(desk, consumer=CONSUMER, page_size=1)
    assert [d.event_id for d in page.dead_letters] == [first]
    rest = await listed(desk, consumer=CONSUMER, page_size=1, page_token=page.next_page_token)
    assert [d.event_id for d in rest.dead_letters] == [second]
    assert (await listed(desk, consumer="contacts-followup")).dead_letters == []


@pytest.mark.parametrize(
    ("token", "rule"),
    [(AGENT_TOKEN, "ListDeadLetters"), (MADRID_SUPERVISOR_TOKEN, "ListDeadLetters")],
)
async def test_only_a_supervisor_of_every_team_sees_dead_letters(
    desk: Desk, token: str, rule: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await desk.stub.ListDeadLetters(dl_pb.ListDeadLettersRequest(), metadata=bearer(token))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert RULES[rule] in str(refused.value.details())


@pytest.mark.parametrize("token", [AGENT_TOKEN, MADRID_SUPERVISOR_TOKEN])
async def test_only_a_supervisor_of_every_team_replays_one(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    break_the_handler(desk, monkeypatch)
    await publish_interaction(desk.contacts, "c-1", PURCHASE)
    [letter] = await dead_letters_of(desk, 1)
    monkeypatch.undo()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await replay(desk, letter.id, token)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert RULES["ReplayDeadLetter"] in str(refused.value.details())
    [still] = (await listed(desk)).dead_letters
    assert not still.HasField("replayed_at")


async def test_no_caller_no_dead_letters(desk: Desk) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await desk.stub.ListDeadLetters(dl_pb.ListDeadLettersRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_ids_and_tokens_are_named_and_unknown_ids_not_found(desk: Desk) -> None:
    for bad in ("", "x" * 300, "12\x00"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await replay(desk, bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "id" in field_violations(refused.value)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await listed(desk, page_token="not-a-token")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(refused.value)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await listed(desk, page_size=-1)
    assert "page_size" in field_violations(refused.value)

    for unknown in ("999999", "65f0c0ffee0000000000beef", "no-such-letter"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await replay(desk, unknown)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_inbox_forgets_events_handled_before_the_retention(desk: Desk) -> None:
    contacts = desk.contacts
    contact = await create(contacts, a_person(emails=["old@example.com"]))
    await publish_interaction(contacts, contact.id, PURCHASE)

    async def active() -> contact_pb2.Contact | None:
        c = await get(contacts, contact.id)
        return c if c.status == contact_pb2.LIFECYCLE_STATUS_ACTIVE else None

    await eventually(active)
    retention = contacts.app.runtime.settings.inbox_retention
    assert await contacts.app.runtime.prune_inbox() == 0  # handled just now: kept
    contacts.clock.advance(retention)
    contacts.clock.advance(retention / 1000)
    assert await contacts.app.runtime.prune_inbox() >= 1
    assert await contacts.app.runtime.prune_inbox() == 0
