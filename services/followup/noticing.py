"""Sends one customer notice the scheduler claimed: decide, ask the contacts service, deliver.

The scheduler owns the claim, the lease and the commit (a notice is a delivery row like a
reminder); this turns a claimed notice into its next state and the events to publish. The
decision uses the local read model of the contact's preferences; the address and the name come
from the contacts service at this moment and are used for this message only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from followup.domain import feedback, notices
from followup.domain.contacts import ContactPreferences
from followup.domain.events import CustomerNoticeSent, PromiseEvent
from followup.domain.model import Promise
from followup.domain.reminders import (
    DeliveryAttempt,
    NoticeTemplate,
    ReminderDelivery,
    ReminderPolicy,
)
from followup.ports import ContactDirectory, NoticeChannel, PromiseStore
from promesa.clock import Clock

log = structlog.get_logger(__name__)

CONTACTS = "contacts"  # the name of an attempt that failed at the contacts service


@dataclass(frozen=True)
class FeedbackLinks:
    """Signed links to the satisfaction page (`entrypoints/feedback_page.py`): `base_url` is
    where customers reach it (CRM_FEEDBACK_BASE_URL), valid for `valid_for` once sent."""

    key: bytes = field(repr=False)
    base_url: str
    valid_for: timedelta

    def url(self, request_id: str, promise: Promise, now: datetime) -> str:
        link = feedback.Link(request_id, promise.id, promise.contact_id, now + self.valid_for)
        return f"{self.base_url.rstrip('/')}/feedback/{feedback.sign(link, self.key)}"


class CustomerNotifier:
    def __init__(
        self,
        store: PromiseStore,
        clock: Clock,
        *,
        contacts: ContactDirectory,
        channels: Sequence[NoticeChannel],
        policy: ReminderPolicy,
        links: FeedbackLinks | None = None,
    ) -> None:
        """`links` makes the signed links of satisfaction requests (None: none are sent)."""
        self._links = links
        self._store = store
        self._clock = clock
        self._contacts = contacts
        self._channels = {c.channel: c for c in channels}
        self._policy = policy

    async def handle(
        self, r: ReminderDelivery, promise: Promise | None
    ) -> tuple[ReminderDelivery, list[PromiseEvent]]:
        """The notice's next state (dropped, held, sent, or queued for a retry) and, once
        sent, the CustomerNoticeSent event."""
        prefs: ContactPreferences | None = None
        if promise is not None:
            prefs = await self._store.profile(promise.contact_id)
        decision = notices.decide(r, promise, prefs, self._channels.keys(), self._clock.now())
        if isinstance(decision, notices.Drop):
            return self._drop(r, decision.reason), []
        if isinstance(decision, notices.Hold):
            log.info("customer_notice_held", until=decision.until.isoformat())
            return notices.held(r, decision.until), []
        assert promise is not None and prefs is not None
        return await self._send(r, decision, promise, prefs)

    async def _send(
        self,
        r: ReminderDelivery,
        send: notices.Send,
        promise: Promise,
        prefs: ContactPreferences,
    ) -> tuple[ReminderDelivery, list[PromiseEvent]]:
        try:
            card = await self._contacts.card(promise.contact_id)
        except Exception as exc:
            return self._failed(r, send, CONTACTS, exc), []
        if card is None:
            return self._drop(r, notices.CONTACT_NOT_FOUND), []
        if card.erased:
            return self._drop(r, notices.CONTACT_ERASED), []
        address = card.address(send.channel)
        if not address:
            return self._drop(r, f"the contact has no {send.channel.value} address"), []
        channel = self._channels[send.channel]
        link = ""
        if send.template is NoticeTemplate.SATISFACTION_REQUEST:
            if self._links is None:
                return self._drop(r, "satisfaction requests are not set up"), []
            link = self._links.url(r.id, promise, self._clock.now())
        message = notices.render(send, promise, prefs, card.name, link)
        try:
            await channel.send(r.id, message, address)
        except Exception as exc:  # a channel's errors name no address (see NoticeChannel)
            return self._failed(r, send, channel.name, exc), []
        now = self._clock.now()
        sent = notices.attempted(r, send, DeliveryAttempt(channel.name, now, True), self._policy)
        log.info("customer_notice_sent", channel=send.channel.value, template=send.template.value)
        return sent, [CustomerNoticeSent(sent, promise.contact_id, now)]

    def _drop(self, r: ReminderDelivery, reason: str) -> ReminderDelivery:
        log.info("customer_notice_dropped", reason=reason)
        return notices.dropped(r, reason)

    def _failed(
        self, r: ReminderDelivery, send: notices.Send, name: str, exc: Exception
    ) -> ReminderDelivery:
        attempt = DeliveryAttempt(name, self._clock.now(), False, repr(exc)[:500])
        updated = notices.attempted(r, send, attempt, self._policy)
        if updated.next_attempt_at is None:
            log.error("customer_notice_failed", attempts=len(updated.attempts), error=repr(exc))
        else:
            log.warning("customer_notice_attempt_failed", notifier=name, error=repr(exc))
        return updated
