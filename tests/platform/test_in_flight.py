"""The order in which a consumer handles what it fetched: side by side across contacts, one
after the other within a contact, across fetches too, and an event about several contacts
alone; what had to follow a failed handling is not handled."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from promesa.in_flight import InFlight


def a_message(subject: str) -> Msg:
    return Msg(_client=None, subject=subject)  # type: ignore[arg-type]  # never acked


class Handling:
    """A handler whose calls the test ends one by one, recording starts and ends."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.failing: set[str] = set()

    async def __call__(self, msg: Msg) -> None:
        name = msg.subject.removeprefix("crm.contacts.")
        self.log.append(f"start {name}")
        gate = self.gates.setdefault(name, asyncio.Event())
        await gate.wait()
        self.log.append(f"end {name}")
        if name in self.failing:
            raise ConnectionError("NATS away at the ack")

    def started(self) -> set[str]:
        return {e.removeprefix("start ") for e in self.log if e.startswith("start ")}

    def finish(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_contacts_side_by_side_and_one_contact_in_order_across_fetches() -> None:
    handling = Handling()
    in_flight = InFlight(handling, limit=100)
    # Two fetches: ana's second event comes in the second, while her first is under way.
    in_flight.start([a_message("crm.contacts.updated.ana"), a_message("crm.contacts.updated.bo")])
    in_flight.start([a_message("crm.contacts.became_active.ana")])
    await settle()
    assert handling.started() == {"updated.ana", "updated.bo"}

    handling.finish("updated.ana")
    await settle()
    assert handling.started() == {"updated.ana", "updated.bo", "became_active.ana"}
    assert handling.log.index("end updated.ana") < handling.log.index("start became_active.ana")

    handling.finish("updated.bo")
    handling.finish("became_active.ana")
    await in_flight.drain()
    assert len(in_flight) == 0
    assert in_flight.waiting == {}
    assert in_flight.failure is None


async def test_an_event_about_several_contacts_waits_for_all_before_it_and_holds_the_rest() -> None:
    handling = Handling()
    in_flight = InFlight(handling, limit=100)
    in_flight.start(
        [
            a_message("crm.contacts.updated.ana"),
            a_message("crm.contacts.updated.bo"),
            a_message("crm.contacts.merged.ana"),  # bo merged into ana: reaches both
            a_message("crm.contacts.updated.cy"),
        ]
    )
    await settle()
    assert handling.started() == {"updated.ana", "updated.bo"}

    handling.finish("updated.ana")
    await settle()
    assert "merged.ana" not in handling.started()  # bo's event is still under way
    handling.finish("updated.bo")
    await settle()
    assert handling.started() == {"updated.ana", "updated.bo", "merged.ana"}

    handling.finish("merged.ana")
    await settle()
    assert "updated.cy" in handling.started()  # cy, after the merge, waited for it
    handling.finish("updated.cy")
    await in_flight.drain()


async def test_what_follows_a_failed_handling_of_the_same_contact_is_not_handled() -> None:
    handling = Handling()
    handling.failing.add("updated.ana")
    in_flight = InFlight(handling, limit=100)
    in_flight.start(
        [
            a_message("crm.contacts.updated.ana"),
            a_message("crm.contacts.became_active.ana"),
            a_message("crm.contacts.updated.bo"),
        ]
    )
    for name in ("updated.ana", "updated.bo", "became_active.ana"):
        handling.finish(name)
    await in_flight.drain()

    assert isinstance(in_flight.failure, ConnectionError)
    assert "became_active.ana" not in handling.started()  # comes back after the ack wait
    assert "end updated.bo" in handling.log  # other contacts are not held up
    assert in_flight.waiting == {}


async def test_room_is_what_the_limit_leaves_and_frees_as_messages_finish() -> None:
    handling = Handling()
    in_flight = InFlight(handling, limit=2)
    in_flight.start([a_message("crm.contacts.updated.ana"), a_message("crm.contacts.updated.bo")])
    assert in_flight.room == 0
    freed = asyncio.ensure_future(in_flight.freed())
    await settle()
    assert not freed.done()

    handling.finish("updated.bo")
    await asyncio.wait_for(freed, 5)
    assert in_flight.room == 1
    handling.finish("updated.ana")
    await in_flight.drain()
    assert in_flight.room == 2


@pytest.mark.parametrize("limit", [1, 3, 100])
async def test_each_contacts_events_are_handled_in_the_order_fetched(limit: int) -> None:
    handled: list[tuple[str, int]] = []

    async def handle(msg: Msg) -> None:
        await asyncio.sleep(0.001 * (int(msg.data) % 4))  # commits that take their time
        handled.append((msg.subject, int(msg.data)))

    in_flight = InFlight(handle, limit=limit)
    for n in range(30):
        await in_flight.freed()
        subject = f"crm.contacts.updated.c{n % 3}"
        in_flight.start([Msg(_client=None, subject=subject, data=str(n).encode())])  # type: ignore[arg-type]
    await in_flight.drain()

    assert len(handled) == 30
    for contact in ("c0", "c1", "c2"):
        seen = [n for subject, n in handled if subject.endswith(contact)]
        assert seen == sorted(seen)
