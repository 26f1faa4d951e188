"""Service-level policies: which promises a policy covers, what it asks (target, reminders, a
warning, the escalation ladder), and the teams' calendars and people by level.

The policies of one set never overlap (two that could match one promise are refused when the
set is made), so a promise has exactly one: the matching policy, else the default. A team not
named falls back to the "*" team, and a level a team does not fill is the "*" team's.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from followup.domain.calendars import ALWAYS_OPEN, BusinessCalendar
from followup.domain.model import Channel, Priority, PromiseKind

ZERO = timedelta(0)
DEFAULT_TEAM = "*"
DEFAULT_POLICY = "default"
SUPERVISOR = "supervisor"
_T = TypeVar("_T")


class Relationship(enum.StrEnum):
    """Who the contact is to us, from the contacts service's profile (same names)."""

    EXTERNAL_CUSTOMER = "EXTERNAL_CUSTOMER"
    INTERNAL_COLLEAGUE = "INTERNAL_COLLEAGUE"
    INTERNAL_DEPARTMENT = "INTERNAL_DEPARTMENT"


class ServiceLevelError(ValueError):
    """A policy or a set of policies that cannot be used; the message names the policy (and
    its line when it came from a file)."""


@dataclass(frozen=True)
class EscalationStep:
    after: timedelta  # after due (business time when the policy says so)
    level: str  # a level name the team maps to a user: "supervisor", "manager"


def _where(name: str, line: int) -> str:
    return f"policy {name!r}" + (f" (line {line})" if line else "")


@dataclass(frozen=True)
class ServiceLevel:
    """One policy. An empty set matches anything on its dimension; a promise whose value is
    unknown (None) is matched only by "anything"."""

    name: str
    kinds: frozenset[PromiseKind] = frozenset()
    priorities: frozenset[Priority] = frozenset()
    channels: frozenset[Channel] = frozenset()
    relationships: frozenset[Relationship] = frozenset()
    # Time to keep, for promises the service makes by policy (complaint resolution, win-back);
    # None: the environment's default.
    target: timedelta | None = None
    business_time: bool = False  # targets, warnings, escalations count team business time
    reminders: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(hours=1))  # before due
    warn_at: float | None = None  # share (0 < x < 1) of made -> due: a WARNING to the owner
    escalations: tuple[EscalationStep, ...] = (EscalationStep(timedelta(hours=4), SUPERVISOR),)
    escalate_every: timedelta = timedelta(hours=24)  # the last step again, while overdue
    line: int = 0  # where it is in the file (messages)

    def __post_init__(self) -> None:
        where = _where(self.name, self.line)
        if not self.name:
            raise ServiceLevelError(f"a policy needs a name (line {self.line})")
        if self.target is not None and self.target <= ZERO:
            raise ServiceLevelError(f"{where}: target must be positive")
        if any(lead <= ZERO for lead in self.reminders):
            raise ServiceLevelError(f"{where}: reminders come a positive time before due")
        if len(set(self.reminders)) != len(self.reminders):
            raise ServiceLevelError(f"{where}: a reminder is listed twice")
        if self.warn_at is not None and not 0 < self.warn_at < 1:
            raise ServiceLevelError(f"{where}: warn_at must be between 0 and 100%")
        if self.escalate_every <= ZERO:
            raise ServiceLevelError(f"{where}: escalate_every must be positive")
        afters = [step.after for step in self.escalations]
        if any(after < ZERO for after in afters):
            raise ServiceLevelError(f"{where}: an escalation comes at or after due")
        if afters != sorted(set(afters)):
            raise ServiceLevelError(f"{where}: escalation steps must come in rising order")
        if any(not step.level for step in self.escalations):
            raise ServiceLevelError(f"{where}: an escalation step needs a level")

    def matches(
        self,
        kind: PromiseKind | None,
        priority: Priority | None,
        channel: Channel | None,
        relationship: Relationship | None,
    ) -> bool:
        return (
            _covers(self.kinds, kind)
            and _covers(self.priorities, priority)
            and _covers(self.channels, channel)
            and _covers(self.relationships, relationship)
        )

    def overlaps(self, other: ServiceLevel) -> bool:
        """Some promise could match both: the sets meet on every dimension."""
        return (
            _meet(self.kinds, other.kinds)
            and _meet(self.priorities, other.priorities)
            and _meet(self.channels, other.channels)
            and _meet(self.relationships, other.relationships)
        )

    @property
    def levels(self) -> frozenset[str]:
        return frozenset(step.level for step in self.escalations)


def _covers(values: frozenset[_T], value: _T | None) -> bool:
    return not values or value in values


def _meet(a: frozenset[_T], b: frozenset[_T]) -> bool:
    return not a or not b or bool(a & b)


@dataclass(frozen=True)
class TeamSetup:
    name: str
    calendar: BusinessCalendar = ALWAYS_OPEN
    levels: Mapping[str, str] = field(default_factory=dict)  # level name -> user id


@dataclass(frozen=True)
class ServiceLevels:
    """The policies, the default one, and the teams."""

    policies: tuple[ServiceLevel, ...]
    default: ServiceLevel  # when no policy matches (name "default")
    teams: Mapping[str, TeamSetup] = field(default_factory=dict)
    default_team: TeamSetup = TeamSetup(DEFAULT_TEAM)  # "*" in the file

    def __post_init__(self) -> None:
        seen: dict[str, ServiceLevel] = {}
        for policy in (*self.policies, self.default):
            if policy.name in seen:
                raise ServiceLevelError(
                    f"{_where(policy.name, policy.line)}: the name is taken by"
                    f" {_where(policy.name, seen[policy.name].line)}"
                )
            seen[policy.name] = policy
        clash = first_overlap(self.policies)
        if clash is not None:
            first, second = clash
            raise ServiceLevelError(
                f"{_where(first.name, first.line)} and {_where(second.name, second.line)}"
                " overlap: one promise could match both"
            )

    def for_promise(
        self,
        kind: PromiseKind | None,
        priority: Priority | None,
        channel: Channel | None,
        relationship: Relationship | None,
    ) -> ServiceLevel:
        for policy in self.policies:
            if policy.matches(kind, priority, channel, relationship):
                return policy
        return self.default

    def named(self, name: str) -> ServiceLevel:
        """The policy a promise recorded by name; the default when it is no longer in the
        file (a promise made under a policy since removed keeps going under the default)."""
        for policy in self.policies:
            if policy.name == name:
                return policy
        return self.default

    def team(self, name: str) -> TeamSetup:
        return self.teams.get(name, self.default_team)

    def recipient(self, team: str, level: str) -> str:
        """Who holds `level` in `team` ("" when nobody does); the "*" team fills the gaps."""
        return self.team(team).levels.get(level) or self.default_team.levels.get(level, "")

    def undefined_levels(self) -> dict[str, ServiceLevel]:
        """Escalation levels no team (nor "*") fills, with the first policy that uses each."""
        held = set(self.default_team.levels)
        for setup in self.teams.values():
            held.update(setup.levels)
        missing: dict[str, ServiceLevel] = {}
        for policy in (*self.policies, self.default):
            for level in sorted(policy.levels - held):
                missing.setdefault(level, policy)
        return missing

    @classmethod
    def defaults(
        cls,
        *,
        escalate_after: timedelta,
        escalate_every: timedelta,
        supervisors: Mapping[str, str],
    ) -> ServiceLevels:
        """Today's behaviour: one wall-time policy, 24 h / 1 h reminders, the team's supervisor
        (CRM_TEAM_SUPERVISORS, "*" for other teams) after CRM_ESCALATE_AFTER_HOURS, then every
        CRM_ESCALATE_EVERY_HOURS."""
        default = ServiceLevel(
            DEFAULT_POLICY,
            escalations=(EscalationStep(escalate_after, SUPERVISOR),),
            escalate_every=escalate_every,
        )
        teams = {
            team: TeamSetup(team, levels={SUPERVISOR: user})
            for team, user in supervisors.items()
            if team != DEFAULT_TEAM
        }
        fallback = supervisors.get(DEFAULT_TEAM, "")
        return cls(
            policies=(),
            default=default,
            teams=teams,
            default_team=TeamSetup(DEFAULT_TEAM, levels={SUPERVISOR: fallback} if fallback else {}),
        )


def first_overlap(
    policies: Sequence[ServiceLevel],
) -> tuple[ServiceLevel, ServiceLevel] | None:
    for index, first in enumerate(policies):
        for second in policies[index + 1 :]:
            if first.overlaps(second):
                return first, second
    return None
