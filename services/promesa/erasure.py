"""Erasure reaches the event streams: a service that applied ContactErased removes that
person's messages from its own stream, so a replay never brings their data back."""

from __future__ import annotations

from promesa.bus import EventBus, StreamSpec
from promesa.event_catalog import EventCatalog
from promesa.outbox import OutboxRelay


class StreamEraser:
    """Purges one contact's messages (`crm.<domain>.*.<contact>` and one token deeper) from the
    service's own stream. The outbox is flushed first: whatever the service committed about
    the person before the erasure is published, then purged with the rest, never after.
    Call it once the erasure is committed (the service records nothing new about the person
    from then on); it is idempotent, so a redelivered ContactErased purges again harmlessly."""

    def __init__(
        self, bus: EventBus, relay: OutboxRelay, stream: StreamSpec, catalog: EventCatalog
    ) -> None:
        self._bus = bus
        self._relay = relay
        self._stream = stream
        self._catalog = catalog

    async def erase(self, contact_id: str) -> None:
        await self._relay.flush()
        await self._bus.purge(self._stream, self._catalog.about(contact_id))
