"""The composition root of the contacts service: settings in, a runnable service out."""

from __future__ import annotations

from contacts.adapters import event_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.entrypoints import interactions_consumer
from contacts.entrypoints.grpc_api import SERVICE_NAME, ContactsServicer
from contacts.ports import ContactStore
from contacts.settings import ContactsSettings
from contacts.usecases import ContactBook
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from promesa.bus import CONTACTS_STREAM, INTERACTIONS_STREAM, DurableConsumer, EventBus
from promesa.clock import Clock, SystemClock
from promesa.outbox import OutboxRelay
from promesa.runtime import Runtime, ServiceParts
from promesa.workers import Periodic


async def open_store(settings: ContactsSettings, clock: Clock) -> ContactStore:
    common = settings.common
    if common.store == "mongodb":
        from contacts.adapters.mongo_store import MongoContactStore

        store: ContactStore = await MongoContactStore.open(
            common.mongodb_uri, common.mongodb_database, event_codec.encode, clock
        )
        return store
    return SqliteContactStore(
        common.sqlite_path, event_codec.encode, clock, synchronous=common.sqlite_synchronous
    )


async def build(settings: ContactsSettings, clock: Clock | None = None) -> Runtime:
    """Connects to NATS and the store; nothing connects at import."""
    clock = clock or SystemClock()
    common = settings.common
    bus = EventBus(common.nats_url, name="contacts")
    await bus.connect()
    store = await open_store(settings, clock)
    relay = OutboxRelay(store, bus, service="contacts", batch_size=common.relay_batch_size)
    book = ContactBook(
        store,
        clock,
        active_window=settings.active_window,
        default_phone_region=settings.default_phone_region,
        on_commit=relay.notify,
    )
    consumer = DurableConsumer(
        bus,
        service="contacts",
        stream=INTERACTIONS_STREAM,
        durable=interactions_consumer.CONSUMER,
        filter_subjects=interactions_consumer.SUBJECTS,
        handler=interactions_consumer.InteractionsHandler(book),
        dead_letters=store.record_dead_letter,
        ack_wait=common.consumer_ack_wait_seconds,
        max_deliver=common.consumer_max_deliver,
    )
    sweep = Periodic("inactive_sweep", book.sweep_inactive, settings.sweep_interval_seconds)
    parts = ServiceParts(
        grpc_service_names=[SERVICE_NAME],
        register=lambda server: contacts_grpc.add_ContactsServiceServicer_to_server(
            ContactsServicer(book), server
        ),
        relay=relay,
        stream=CONTACTS_STREAM,
        workers=[consumer, sweep],
        close_store=store.close,
        extra={"book": book, "store": store},
    )
    return Runtime(common, bus, parts)
