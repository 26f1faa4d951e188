"""Who may act on what: the two relations every service's authorization table is made of.

- A team's work belongs to its members and its supervisor. Work with no team is unassigned,
  anyone's to pick up; a supervisor with no team supervises every team.
- A promise belongs to its owner, and to the supervisor of its team.
- The service role acts for the other services and for tools: it is never scoped.

Each service states its table (RPC → rule) in its own `authorization.py`, built from these,
and the README shows all three; a refusal is PERMISSION_DENIED with a message naming the rule.
"""

from __future__ import annotations

from promesa.auth import Identity, Role
from promesa.errors import PermissionDeniedError


def in_team(who: Identity, team: str) -> bool:
    """True when `who` may act on work of `team`."""
    if who.role is Role.SERVICE or not team:
        return True
    if who.role is Role.SUPERVISOR and not who.team:
        return True
    return who.team == team


def owns_or_supervises(who: Identity, owner_id: str, team: str) -> bool:
    """True when `who` owns the work (agents), supervises its team, or is a service."""
    if who.role is Role.SERVICE:
        return True
    if who.role is Role.SUPERVISOR:
        return in_team(who, team)
    return owner_id == who.subject


def is_supervisor(who: Identity) -> bool:
    """Supervisors (and services) see across what they supervise: statistics, erasures."""
    return who.role in (Role.SUPERVISOR, Role.SERVICE)


def require(allowed: bool, rule: str) -> None:
    """PERMISSION_DENIED naming the rule the caller did not meet."""
    if not allowed:
        raise PermissionDeniedError(rule)


def supervises_every_team(who: Identity) -> bool:
    """A supervisor with no team: the one reach that spans every team's work (operations such
    as dead letters touch events of all teams at once). Services are not included: an
    operation is a person's decision."""
    return who.role is Role.SUPERVISOR and not who.team
