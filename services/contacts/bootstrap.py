"""The composition root of the contacts service: settings in, a runnable service out."""

from __future__ import annotations

from dataclasses import dataclass

from contacts.adapters import event_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.entrypoints import followup_consumer, interactions_consumer
from contacts.entrypoints.grpc_api import SERVICE_NAME, ContactsServicer
from contacts.ports import ContactStore
from contacts.settings import ContactsSettings
from contacts.usecases import ContactCommands, ContactQueries, ContactReactions
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from promesa import sqlite_store
from promesa.bus import CONTACTS_STREAM
from promesa.clock import Clock, SystemClock
from promesa.runtime import Runtime, ServiceParts, connect_messaging
from promesa.usecases import Writes
from promesa.workers import Periodic


@dataclass(frozen=True)
class ContactsApp:
    """The running service and the parts it was wired from, by name."""

    runtime: Runtime
    store: ContactStore
    commands: ContactCommands
    queries: ContactQueries
    reactions: ContactReactions


async def open_store(settings: ContactsSettings, clock: Clock) -> ContactStore:
    common = settings.common
    if common.store == "mongodb":
        from contacts.adapters.mongo_store import MongoContactStore

        store: ContactStore = await MongoContactStore.open(
            common.mongodb_uri, common.mongodb_database, event_codec.encode, clock
        )
        return store
    return await sqlite_store.opened(SqliteContactStore, common, event_codec.encode, clock)


async def build(settings: ContactsSettings, clock: Clock | None = None) -> ContactsApp:
    """Opens the store and connects to NATS; nothing connects at import."""
    clock = clock or SystemClock()
    common = settings.common
    store = await open_store(settings, clock)
    bus, relay = await connect_messaging(common, store)
    writes = Writes(store, relay.notify)
    queries = ContactQueries(store, default_phone_region=settings.default_phone_region)
    commands = ContactCommands(
        store,
        writes,
        clock,
        active_window=settings.active_window,
        default_phone_region=settings.default_phone_region,
    )
    reactions = ContactReactions(store, writes, clock, active_window=settings.active_window)
    sweep = Periodic(
        common.service, "inactive_sweep", reactions.sweep_inactive, settings.sweep_interval_seconds
    )
    parts = ServiceParts(
        grpc_service_names=[SERVICE_NAME],
        register=lambda server: contacts_grpc.add_ContactsServiceServicer_to_server(
            ContactsServicer(commands, queries), server
        ),
        relay=relay,
        stream=CONTACTS_STREAM,
        dead_letters=store.record_dead_letter,
        store=store,
        clock=clock,
        subscriptions=[
            interactions_consumer.subscription(reactions),
            followup_consumer.subscription(reactions),
        ],
        workers=[sweep],
        close_store=store.close,
    )
    runtime = Runtime(common, bus, parts)
    return ContactsApp(runtime, store, commands, queries, reactions)
