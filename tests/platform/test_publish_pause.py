"""A publisher stopped for a while (SIGSTOP, a paused VM) reads the acknowledgements that came
meanwhile before it gives a batch up: giving up would publish it again, and a core-NATS
subscriber would see every event of the batch twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from promesa.bus import awake_within


async def test_a_pause_longer_than_the_timeout_does_not_count_against_it() -> None:
    loop = asyncio.get_running_loop()
    acks: asyncio.Future[list[object]] = loop.create_future()

    def parsed() -> None:
        acks.set_result(["ack"])

    def acknowledged() -> None:  # the ack is read from the socket, then parsed a turn later
        loop.call_soon(loop.call_soon, parsed)

    loop.call_later(0.1, acknowledged)
    # The whole process stops for longer than the timeout just before the ack arrives.
    loop.call_later(0.05, time.sleep, 1.5)

    await awake_within(acks, 1.0)

    assert acks.result() == ["ack"]


async def test_acknowledgements_that_never_come_time_out() -> None:
    acks: asyncio.Future[list[object]] = asyncio.get_running_loop().create_future()
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        await awake_within(acks, 1.0)

    assert 0.9 < time.monotonic() - started < 3.0
    assert acks.cancelled()
