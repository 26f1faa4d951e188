"""Errors every service raises from its use cases; the gRPC edge maps each class to one status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One reason a field of a request was refused, named by its path in the request."""

    field: str
    description: str


class PromesaError(Exception):
    """Base of the errors a caller can cause; anything else is a bug."""


class InvalidArgumentError(PromesaError):
    """The request breaks a rule on one or more fields; nothing was written."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class NotFoundError(PromesaError):
    def __init__(self, resource: str, resource_id: str) -> None:
        self.resource = resource
        self.resource_id = resource_id
        super().__init__(f"{resource} {resource_id!r} not found")


class AlreadyExistsError(PromesaError):
    """A unique fact is already held by another resource, which the message names."""

    def __init__(self, message: str, existing_id: str) -> None:
        self.existing_id = existing_id
        super().__init__(message)


class StaleEtagError(PromesaError):
    """The caller updated from an old version; it must re-read and retry."""

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(f"{resource} {resource_id!r} has changed since it was read (stale etag)")


class FailedPreconditionError(PromesaError):
    """The request is well formed but the resource is not in a state that allows it."""


class UnauthenticatedError(PromesaError):
    pass


class PermissionDeniedError(PromesaError):
    pass


class Violations:
    """Collects every field violation of a request so the caller learns all of them at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def text(self, field: str, value: str, limit: int) -> str:
        """The value without surrounding blanks, with a violation when it is over the limit."""
        value = value.strip()
        self.check(len(value) <= limit, field, f"must be at most {limit} characters")
        return value

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgumentError(self._items)
