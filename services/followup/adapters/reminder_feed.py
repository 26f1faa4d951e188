"""A user's reminders as they are stored in the follow-up stream, for StreamReminders.

An ordered push consumer on the user's subjects: whichever replica sends a reminder, every
replica serving a stream for that user sees it, once (the stream keeps one copy of an event,
however often relays publish it). A reminder's position is its stream sequence, so a caller
that reconnects resumes just after the last reminder it read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from crm.followup.v1 import reminder_pb2
from followup.adapters.event_codec import reminders_of
from followup.ports import FedReminder
from promesa.bus import FOLLOWUP_STREAM, EventBus


class NatsReminderSubscription:
    """An ordered push consumer on one user's subjects; iterate for reminders, close when done
    (a `ports.ReminderSubscription`)."""

    def __init__(
        self, sub: JetStreamContext.PushSubscription, user_id: str, started_after: int
    ) -> None:
        self._sub = sub
        self._user_id = user_id
        self.started_after = started_after

    async def __aiter__(self) -> AsyncIterator[FedReminder]:
        async for msg in self._sub.messages:
            reminder = reminder_pb2.Reminder.FromString(msg.data)
            if reminder.recipient_id == self._user_id:  # subjects are sanitised; ids are exact
                yield FedReminder(reminder, msg.metadata.sequence.stream)

    async def close(self) -> None:
        await self._sub.unsubscribe()


class NatsReminderFeed:
    """The `ports.ReminderFeed` on JetStream."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    async def subscribe(self, user_id: str, after: int | None = None) -> NatsReminderSubscription:
        """From now on (just after the stream's last message, whose sequence the caller can
        resume after before reading anything), or from the stream sequence after `after`.
        JetStream itself starts a sequence that retention discarded at the oldest message
        kept; a sequence past the stream's end (a token from a stream since deleted and
        declared again) starts at new messages, as the stream numbers them now."""
        js = self._bus.js
        last = (await js.stream_info(FOLLOWUP_STREAM.name)).state.last_seq
        start = min(after, last) if after is not None else last
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start + 1
        )
        sub = await js.subscribe(
            reminders_of(user_id), stream=FOLLOWUP_STREAM.name, ordered_consumer=True, config=config
        )
        return NatsReminderSubscription(sub, user_id, start)
