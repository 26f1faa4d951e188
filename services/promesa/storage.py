"""Port-level facts every service's storage adapter reports the same way, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdempotencyKey:
    """A create's request id, what it was for, and the resource it produced."""

    request_id: str
    operation: str
    fingerprint: str
    resource_id: str


@dataclass(frozen=True)
class InboxKey:
    """The inbox row of an event a consumer handled: written with the effect, so a redelivered
    event is recognised and changes nothing."""

    consumer: str
    event_id: str


class VersionConflictError(Exception):
    """The resource changed since it was read (or, for a new one, its id exists already)."""

    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id
        super().__init__(resource_id)


class DuplicateRequestError(Exception):
    """The request id was committed before (a concurrent retry won the race)."""


class AlreadyHandledError(Exception):
    """The inbox already holds this event id: the effect was applied before."""
