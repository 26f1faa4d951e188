"""A user's reminders as they are published on their NATS subjects, for StreamReminders.

An ordered push consumer that starts at new messages: whichever replica sends a reminder, every
replica serving a stream for that user sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from crm.followup.v1 import reminder_pb2
from followup.adapters.event_codec import reminders_of
from promesa.bus import FOLLOWUP_STREAM, EventBus


class NatsReminderSubscription:
    """An ordered push consumer on one user's subjects, listening from the moment it exists;
    iterate for reminders, close when done (a `ports.ReminderSubscription`)."""

    def __init__(self, sub: JetStreamContext.PushSubscription, user_id: str) -> None:
        self._sub = sub
        self._user_id = user_id

    async def __aiter__(self) -> AsyncIterator[reminder_pb2.Reminder]:
        async for msg in self._sub.messages:
            reminder = reminder_pb2.Reminder.FromString(msg.data)
            if reminder.recipient_id == self._user_id:  # subjects are sanitised; ids are exact
                yield reminder

    async def close(self) -> None:
        await self._sub.unsubscribe()


class NatsReminderFeed:
    """The `ports.ReminderFeed` on JetStream."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    async def subscribe(self, user_id: str) -> NatsReminderSubscription:
        sub = await self._bus.js.subscribe(
            reminders_of(user_id),
            stream=FOLLOWUP_STREAM.name,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        return NatsReminderSubscription(sub, user_id)
