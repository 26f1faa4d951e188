"""Bearer-token identities: who is calling, with which role, bound for the duration of a call."""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from promesa.errors import PermissionDeniedError, UnauthenticatedError


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    SERVICE = "service"


@dataclass(frozen=True)
class Identity:
    """The caller of an RPC; its subject is recorded on every write it makes."""

    subject: str
    role: Role
    team: str = ""  # the team whose work this caller does, a default for what they record

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise PermissionDeniedError(
                f"{self.subject} ({self.role.value}) may not do this; allowed roles: {allowed}"
            )


# No default: a path that binds nobody (a call that skipped the interceptor, a task started
# outside any worker) has no identity and is refused, rather than acting as someone powerful.
_current: contextvars.ContextVar[Identity] = contextvars.ContextVar("identity")


def current_identity() -> Identity:
    """The caller bound for this call or this background job; fails closed when none is."""
    try:
        return _current.get()
    except LookupError:
        raise UnauthenticatedError("no caller identity is bound: access refused") from None


@contextmanager
def acting_as(identity: Identity) -> Iterator[Identity]:
    """Binds an identity for the duration of a call (the interceptor) or of one unit of
    background work (a consumer's event, a sweep, a scheduler tick)."""
    token = _current.set(identity)
    try:
        yield identity
    finally:
        _current.reset(token)


def worker_identity(service: str, worker: str) -> Identity:
    """The named identity of a service's own background work, recorded on what it writes."""
    return Identity(f"{service}/{worker}", Role.SERVICE)


def parse_tokens(spec: str) -> Mapping[str, Identity]:
    """Parses `token=subject:role[:team],…`; raises ValueError naming the bad entry."""
    tokens: dict[str, Identity] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        token, sep, who = entry.partition("=")
        subject, sep2, rest = who.partition(":")
        role, _, team = rest.partition(":")
        if not (sep and sep2 and token and subject):
            raise ValueError(f"entry {_redact(entry)!r} is not token=subject:role[:team]")
        try:
            tokens[token] = Identity(subject, Role(role), team)
        except ValueError:
            raise ValueError(
                f"role {role!r} of {subject!r} is not one of agent, supervisor, service"
            ) from None
    return tokens


def _redact(entry: str) -> str:
    token, _, rest = entry.partition("=")
    return f"{token[:3]}…={rest}" if rest else f"{token[:3]}…"
