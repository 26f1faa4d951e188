"""Errors every service raises from its use cases; the gRPC edge maps each class to one status."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from promesa.events import PermanentEventError

# A caller learns every mistake at once, but not a thousand of them: past this many the
# answer says how many more there are. Together with the clipping at the gRPC edge this
# keeps every error trailer far below the 8 KB that some clients (grpc-js) accept.
MAX_VIOLATIONS = 20
MAX_DESCRIPTION = 200
# Ids are ours (UUIDs) or a directory's (user and team names): short, one line.
MAX_ID = 200


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
        found = list(violations)
        kept = [
            FieldViolation(v.field[:MAX_DESCRIPTION], clip(v.description, MAX_DESCRIPTION))
            for v in found[:MAX_VIOLATIONS]
        ]
        if len(found) > MAX_VIOLATIONS:
            more = len(found) - MAX_VIOLATIONS
            kept.append(FieldViolation("", f"and {more} more violations of the same request"))
        self.violations = tuple(kept)
        first = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:3])
        rest = len(self.violations) - 3
        super().__init__(
            first + (f"; and {rest} more (see the field violations)" if rest > 0 else "")
        )


class NotFoundError(PromesaError):
    def __init__(self, resource: str, resource_id: str) -> None:
        self.resource = resource
        self.resource_id = resource_id
        super().__init__(f"{resource} {clip(resource_id, 100)!r} not found")


class AlreadyExistsError(PromesaError):
    """A unique fact is already held by another resource, which the message names."""

    def __init__(self, message: str, existing_id: str) -> None:
        self.existing_id = existing_id
        super().__init__(message)


class StaleEtagError(PromesaError):
    """The caller updated from an old version; it must re-read and retry."""

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(f"{resource} {resource_id!r} has changed since it was read (stale etag)")


class ContentionError(PromesaError):
    """Concurrent writers kept changing the resource while the request was applied; the
    request changed nothing and may simply be sent again (ABORTED, as AIP-193 says)."""

    def __init__(self, resource: str, resource_id: str) -> None:
        super().__init__(f"{resource} {resource_id!r} kept changing; try again")


class FailedPreconditionError(PromesaError):
    """The request is well formed but the resource is not in a state that allows it."""


class UnavailableError(PromesaError):
    """A backing service (the database) cannot be reached right now; the request may be sent
    again once it is back (UNAVAILABLE). The message says whether anything may have been
    written: a create with a request id is safe to resend either way."""


class UnauthenticatedError(PromesaError):
    pass


class PermissionDeniedError(PromesaError):
    pass


def clip(text: str, limit: int) -> str:
    """At most `limit` characters: a message never echoes a caller's megabyte back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Unicode's control characters (category Cc) are exactly these 65 code points, and the
# standard promises never to add any: one regular expression finds them in C.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINE_BREAKS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_characters(text: str, *, line_breaks: bool = False) -> bool:
    """True when the text holds a control character (NUL, escape, …); line breaks and tabs
    are allowed where the text is free prose (notes, summaries)."""
    found = (_CONTROL_BUT_LINE_BREAKS if line_breaks else _CONTROL).search(text)
    return found is not None


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

    def text(self, field: str, value: str, limit: int, *, line_breaks: bool = False) -> str:
        """The value without surrounding blanks; a violation when it is over the limit or holds
        control characters (line breaks only where `line_breaks` says so)."""
        if not value:  # most optional fields are left empty: nothing to check
            return value
        value = value.strip()
        self.check(len(value) <= limit, field, f"must be at most {limit} characters")
        if control_characters(value, line_breaks=line_breaks):
            what = "control characters" + (" other than line breaks" if line_breaks else "")
            self.add(field, f"must not contain {what}")
        return value

    def identifier(self, field: str, value: str, *, required: bool = True) -> str:
        """An id a request names (of a resource, a user, a team): at most MAX_ID characters,
        no control characters, and not empty when `required`."""
        value = self.text(field, value, MAX_ID)
        if required:
            self.check(bool(value), field, "must not be empty")
        return value

    def extend(self, violations: Iterable[FieldViolation]) -> None:
        self._items.extend(violations)

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgumentError(self._items)


# Errors that the same event raises again on every delivery: the payload or the code is wrong,
# and only a fix (then a replay of the dead letter) helps. ValueError covers UnicodeError and
# out-of-range dates; ArithmeticError covers OverflowError (a timestamp past year 9999).
_DETERMINISTIC: tuple[type[BaseException], ...] = (
    PermanentEventError,
    InvalidArgumentError,
    DecodeError,
    ValueError,
    ArithmeticError,
    TypeError,
    LookupError,
    AttributeError,
)


def is_permanent(exc: BaseException) -> bool:
    """True when handling an event failed in a way no retry can fix, so it goes to the dead
    letters at once instead of after max_deliver deliveries (retries only delay the operator
    and hold a slot of the batch). Everything else is transient and retried with back-off:
    the database away (UnavailableError, which the consumer holds without spending a
    delivery), contention, timeouts, lost connections, and errors we do not know, because
    retrying a permanent error costs only time, while dead-lettering a transient one needs
    an operator."""
    return isinstance(exc, _DETERMINISTIC)
