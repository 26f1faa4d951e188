"""Active or inactive: a customer is active while their last purchase is recent enough."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from contacts.domain.events import ContactBecameActive, ContactBecameInactive, ContactEvent
from contacts.domain.model import Contact, Lifecycle


def status_for(last_purchase_at: datetime | None, now: datetime, window: timedelta) -> Lifecycle:
    if last_purchase_at is None:
        return Lifecycle.NEVER_PURCHASED
    return Lifecycle.ACTIVE if now - last_purchase_at < window else Lifecycle.INACTIVE


def record_touch(
    contact: Contact,
    occurred_at: datetime,
    is_purchase: bool,
    now: datetime,
    window: timedelta,
) -> tuple[Contact, list[ContactEvent]]:
    """An interaction happened: later touches move the dates forward, never back."""
    last_interaction = max(filter(None, (contact.last_interaction_at, occurred_at)))
    last_purchase = contact.last_purchase_at
    if is_purchase:
        last_purchase = max(filter(None, (last_purchase, occurred_at)))
    status = status_for(last_purchase, now, window)
    updated = replace(
        contact,
        last_interaction_at=last_interaction,
        last_purchase_at=last_purchase,
        status=status,
        version=contact.version + 1,
        updated_at=now,
    )
    return updated, transitions(contact, updated, now)


def transitions(before: Contact, after: Contact, now: datetime) -> list[ContactEvent]:
    """What other services hear when a contact's status changes, whatever changed it (a
    touch, a merge that brings a duplicate's purchase to the survivor)."""
    if after.status is Lifecycle.ACTIVE and before.status is not Lifecycle.ACTIVE:
        return [ContactBecameActive(after, now)]
    if after.status is Lifecycle.INACTIVE and before.status is Lifecycle.ACTIVE:
        return [ContactBecameInactive(after, now)]
    return []


def lapse(contact: Contact, now: datetime, window: timedelta) -> tuple[Contact, list[ContactEvent]]:
    """The sweep's rule: an active contact whose window has passed becomes inactive, once."""
    if contact.status is not Lifecycle.ACTIVE or not contact.is_live:
        return contact, []
    if status_for(contact.last_purchase_at, now, window) is not Lifecycle.INACTIVE:
        return contact, []
    updated = replace(
        contact, status=Lifecycle.INACTIVE, version=contact.version + 1, updated_at=now
    )
    return updated, [ContactBecameInactive(updated, now)]
