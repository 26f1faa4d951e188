"""The composition root of the interactions service: settings in, a runnable service out."""

from __future__ import annotations

from dataclasses import dataclass

from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from interactions.adapters import event_codec
from interactions.adapters.sqlite_store import SqliteInteractionStore
from interactions.entrypoints import contacts_consumer, followup_consumer
from interactions.entrypoints.grpc_api import SERVICE_NAME, InteractionsServicer
from interactions.ports import InteractionStore
from interactions.settings import InteractionsSettings
from interactions.usecases import InteractionCommands, InteractionQueries, InteractionReactions
from promesa import sqlite_store
from promesa.bus import INTERACTIONS_STREAM
from promesa.clock import Clock, SystemClock
from promesa.erasure import StreamEraser
from promesa.event_catalog import INTERACTIONS
from promesa.runtime import Runtime, ServiceParts, connect_messaging
from promesa.usecases import Writes


@dataclass(frozen=True)
class InteractionsApp:
    """The wired service: its runtime, and the parts tests and tools reach by name."""

    runtime: Runtime
    store: InteractionStore
    commands: InteractionCommands
    queries: InteractionQueries
    reactions: InteractionReactions


async def open_store(settings: InteractionsSettings, clock: Clock) -> InteractionStore:
    """The adapter CRM_STORE names; each one implements the same port."""
    common = settings.common
    if common.store == "mongodb":
        from interactions.adapters.mongo_store import MongoInteractionStore

        store: InteractionStore = await MongoInteractionStore.open(
            common.mongodb_uri, common.mongodb_database, event_codec.encode, clock
        )
        return store
    return await sqlite_store.opened(SqliteInteractionStore, common, event_codec.encode, clock)


async def build(settings: InteractionsSettings, clock: Clock | None = None) -> InteractionsApp:
    """Opens the store and connects to NATS; nothing connects at import."""
    clock = clock or SystemClock()
    common = settings.common
    store = await open_store(settings, clock)
    bus, relay = await connect_messaging(common, store)
    writes = Writes(store, relay.notify)
    queries = InteractionQueries(store)
    commands = InteractionCommands(store, writes, clock, promise_horizon=common.promise_horizon)
    streams = StreamEraser(bus, relay, INTERACTIONS_STREAM, INTERACTIONS)
    reactions = InteractionReactions(store, writes, clock, streams=streams)
    parts = ServiceParts(
        grpc_service_names=[SERVICE_NAME],
        register=lambda server: interactions_grpc.add_InteractionsServiceServicer_to_server(
            InteractionsServicer(commands, queries), server
        ),
        relay=relay,
        stream=INTERACTIONS_STREAM,
        dead_letters=store.record_dead_letter,
        store=store,
        clock=clock,
        subscriptions=[
            contacts_consumer.subscription(reactions),
            followup_consumer.subscription(reactions),
        ],
        close_store=store.close,
    )
    runtime = Runtime(common, bus, parts)
    return InteractionsApp(runtime, store, commands, queries, reactions)
