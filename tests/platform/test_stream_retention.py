"""Each producer states how long its stream keeps events: contacts' fact-only events for ever,
events that carry promise texts for a bounded time (CRM_STREAM_MAX_AGE_DAYS)."""

from __future__ import annotations

from datetime import timedelta

from nats.js.api import DiscardPolicy

from contacts.settings import ContactsSettings
from devtools.natsserver import NatsServer
from followup.settings import FollowupSettings
from interactions.settings import InteractionsSettings
from promesa.bus import INTERACTIONS_STREAM, EventBus
from promesa.settings import Env
from tests.support import TOKENS

ENV = {"CRM_API_TOKENS": TOKENS}


def test_contacts_keep_their_events_for_ever_and_the_others_for_ninety_days() -> None:
    env = Env(ENV)
    assert ContactsSettings.from_env(env).common.stream_max_age == timedelta(0)
    assert InteractionsSettings.from_env(env).common.stream_max_age == timedelta(days=90)
    assert FollowupSettings.from_env(env).common.stream_max_age == timedelta(days=90)


def test_an_operator_sets_the_retention_of_a_service() -> None:
    env = Env({**ENV, "CRM_STREAM_MAX_AGE_DAYS": "30"})
    assert InteractionsSettings.from_env(env).common.stream_max_age == timedelta(days=30)


async def test_the_declared_stream_keeps_events_as_long_as_configured_and_can_change(
    nats_server: NatsServer,
) -> None:
    bus = EventBus(nats_server.url, name="retention-test")
    await bus.connect()
    try:
        await bus.declare_stream(INTERACTIONS_STREAM, max_age=timedelta(days=90))
        info = await bus.js.stream_info(INTERACTIONS_STREAM.name)
        assert info.config.max_age == timedelta(days=90).total_seconds()

        await bus.declare_stream(INTERACTIONS_STREAM, max_age=timedelta(0))
        info = await bus.js.stream_info(INTERACTIONS_STREAM.name)
        assert not info.config.max_age  # unlimited
    finally:
        await bus.close()


async def test_a_full_stream_drops_its_oldest_events_and_keeps_taking_new_ones(
    nats_server: NatsServer,
) -> None:
    """CRM_STREAM_MAX_BYTES with discard-old: a producer never stalls on a full stream; what
    goes is the oldest history."""
    bus = EventBus(nats_server.url, name="retention-test")
    await bus.connect()
    try:
        await bus.declare_stream(INTERACTIONS_STREAM, max_bytes=4096)
        info = await bus.js.stream_info(INTERACTIONS_STREAM.name)
        assert (info.config.max_bytes, info.config.discard) == (4096, DiscardPolicy.OLD)
        for i in range(40):
            await bus.js.publish(f"crm.interactions.recorded.c{i}", b"x" * 200)
        info = await bus.js.stream_info(INTERACTIONS_STREAM.name)
        assert info.state.bytes <= 4096
        assert info.state.last_seq == 40 and info.state.first_seq > 1

        await bus.declare_stream(INTERACTIONS_STREAM)  # 0: no limit again
        info = await bus.js.stream_info(INTERACTIONS_STREAM.name)
        assert info.config.max_bytes == -1
    finally:
        await bus.close()
