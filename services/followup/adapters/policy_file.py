"""The service-level policy file (CRM_SERVICE_LEVELS): YAML read into `ServiceLevels`.

Read from the composed node tree rather than loaded values, so every refusal names the line it
is about and no scalar is guessed at by YAML's resolvers ("09:00" stays a time, not 540). Every
problem is a ConfigError naming the file and the line: the service refuses to boot rather than
keep promises by a policy nobody wrote.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, time, timedelta
from pathlib import Path
from typing import NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml

from followup.domain.calendars import (
    ALWAYS_OPEN,
    END_OF_DAY,
    BusinessCalendar,
    CalendarError,
    always_open,
)
from followup.domain.model import Channel, Priority, PromiseKind
from followup.domain.service_levels import (
    DEFAULT_POLICY,
    DEFAULT_TEAM,
    EscalationStep,
    Relationship,
    ServiceLevel,
    ServiceLevelError,
    ServiceLevels,
    TeamSetup,
)
from promesa.settings import ConfigError

VARIABLE = "CRM_SERVICE_LEVELS"
WEEKDAYS = {
    name: number
    for number, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}
TOP_KEYS = frozenset({"teams", "policies", "default"})
TEAM_KEYS = frozenset({"time_zone", "hours", "holidays", "closed", "levels"})
HOLIDAY_KEYS = frozenset({"country", "subdivision"})
LEVEL_KEYS = frozenset({"target", "business_time", "reminders", "warn_at", "escalate"})
LEVEL_KEYS = LEVEL_KEYS | {"escalate_every"}
POLICY_KEYS = LEVEL_KEYS | {"name", "match"}
MATCH_KEYS = frozenset({"kind", "priority", "channel", "relationship"})
STEP_KEYS = frozenset({"after", "to"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_TRUE = frozenset({"true", "yes", "on"})
_FALSE = frozenset({"false", "no", "off"})
_NULL_TAG = "tag:yaml.org,2002:null"
_E = TypeVar("_E", PromiseKind, Priority, Channel, Relationship)


def service_levels_from_setting(
    path: str,
    *,
    escalate_after: timedelta,
    escalate_every: timedelta,
    supervisors: Mapping[str, str],
) -> ServiceLevels:
    """The file named by CRM_SERVICE_LEVELS, or today's behaviour when it is unset. What the
    file's default policy leaves out is today's (CRM_ESCALATE_AFTER_HOURS and _EVERY_HOURS)."""
    defaults = ServiceLevels.defaults(
        escalate_after=escalate_after, escalate_every=escalate_every, supervisors=supervisors
    )
    if not path:
        return defaults
    return load_service_levels(Path(path), fallback=defaults.default)


def load_service_levels(path: Path, *, fallback: ServiceLevel | None = None) -> ServiceLevels:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{VARIABLE}={path}: cannot be read ({error})") from error
    return parse_service_levels(text, source=str(path), fallback=fallback)


def parse_service_levels(
    text: str, *, source: str, fallback: ServiceLevel | None = None
) -> ServiceLevels:
    """`source` names the file in messages; `fallback` fills what the file's default omits."""
    return _Reader(source).read(text, fallback or ServiceLevel(DEFAULT_POLICY))


class _Reader:
    def __init__(self, source: str) -> None:
        self._source = source
        # Escalation levels as written, with their lines: each must be held by some team.
        self._levels_used: list[tuple[str, int]] = []

    def fail(self, node: yaml.Node | int, message: str) -> NoReturn:
        line = node if isinstance(node, int) else _line(node)
        raise ConfigError(f"{VARIABLE}={self._source}, line {line}: {message}")

    def read(self, text: str, fallback: ServiceLevel) -> ServiceLevels:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            self.fail(mark.line + 1 if mark else 1, f"not valid YAML ({error.problem})")
        except yaml.YAMLError as error:
            raise ConfigError(f"{VARIABLE}={self._source}: not valid YAML ({error})") from error
        if root is None:
            raise ConfigError(f"{VARIABLE}={self._source}: the file is empty")
        top = self.mapping(root, TOP_KEYS, "the file")
        default = fallback
        if "default" in top:
            default = self.level(top["default"], fallback, DEFAULT_POLICY, LEVEL_KEYS)
        policies: list[ServiceLevel] = []
        if "policies" in top:
            for item in self.sequence(top["policies"], "policies"):
                policies.append(self.policy(item, default))
        teams: dict[str, TeamSetup] = {}
        default_team = TeamSetup(DEFAULT_TEAM)
        if "teams" in top:
            named = self.mapping(top["teams"], None, "teams")
            star = named.get(DEFAULT_TEAM)
            if star is not None:
                default_team = self.team(DEFAULT_TEAM, star, ALWAYS_OPEN)
            for name, node in named.items():
                if name != DEFAULT_TEAM:
                    teams[name] = self.team(name, node, default_team.calendar)
        try:
            levels = ServiceLevels(
                policies=tuple(policies), default=default, teams=teams, default_team=default_team
            )
        except ServiceLevelError as error:
            raise ConfigError(f"{VARIABLE}={self._source}: {error}") from error
        held = set(default_team.levels).union(*(team.levels for team in teams.values()))
        for level, line in self._levels_used:
            if level not in held:
                self.fail(line, f"no team defines the escalation level {level!r}")
        for level, policy in levels.undefined_levels().items():
            # A level the file never wrote, inherited from the built-in default policy.
            self.fail(
                policy.line or _line(root),
                f"no team defines the escalation level {level!r} (the built-in default escalates"
                " to it: give a team that level or write `default: {escalate: ...}`)",
            )
        return levels

    # -- teams --------------------------------------------------------------------------------

    def team(self, name: str, node: yaml.Node, inherited: BusinessCalendar) -> TeamSetup:
        fields = self.mapping(node, TEAM_KEYS, f"team {name!r}")
        levels: dict[str, str] = {}
        if "levels" in fields:
            for level, user_node in self.mapping(fields["levels"], None, "levels").items():
                levels[level] = self.text(user_node, f"the user of level {level!r}")
        calendar = inherited
        if fields.keys() & {"time_zone", "hours", "holidays", "closed"}:
            calendar = self.calendar(name, node, fields)
        return TeamSetup(name=name, calendar=calendar, levels=levels)

    def calendar(
        self, name: str, node: yaml.Node, fields: Mapping[str, yaml.Node]
    ) -> BusinessCalendar:
        zone = ZoneInfo("UTC")
        if "time_zone" in fields:
            zone = self.zone(fields["time_zone"])
        hours = always_open(name, zone).hours
        if "hours" in fields:
            hours = self.week(fields["hours"])
        closed: set[date] = set()
        if "closed" in fields:
            for item in self.sequence(fields["closed"], "closed"):
                closed.add(self.closed_day(item))
        holiday: Callable[[date], bool] | None = None
        if "holidays" in fields:
            holiday = self.public_holidays(fields["holidays"])
        try:
            if holiday is None:
                return BusinessCalendar(name, zone, hours, frozenset(closed))
            return BusinessCalendar(name, zone, hours, frozenset(closed), holiday)
        except CalendarError as error:
            self.fail(node, str(error))

    def zone(self, node: yaml.Node) -> ZoneInfo:
        name = self.text(node, "time_zone")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(node, f"unknown time zone {name!r}")

    def week(self, node: yaml.Node) -> dict[int, tuple[tuple[time, time], ...]]:
        found: dict[int, tuple[tuple[time, time], ...]] = {}
        days = self.mapping(node, None, "hours")
        for day, value in days.items():
            weekday = WEEKDAYS.get(day.lower())
            if weekday is None:
                self.fail(value, f"unknown weekday {day!r} (mon, tue, wed, thu, fri, sat, sun)")
            if weekday in found:
                self.fail(value, f"{day!r} is given twice")
            spans = [self.span(value, part) for part in self.text(value, day).split(",")]
            spans.sort()
            for (_, end), (start, _) in itertools.pairwise(spans):
                if end == END_OF_DAY or start < end:
                    self.fail(value, f"{day}: the spans overlap")
            found[weekday] = tuple(spans)
        if not found:
            self.fail(node, "hours: the team is never open (list at least one day)")
        return found

    def span(self, node: yaml.Node, text: str) -> tuple[time, time]:
        start_text, dash, end_text = text.strip().partition("-")
        if not dash:
            self.fail(node, f"{text.strip()!r} is not a span like 09:00-18:00")
        start = self.clock(node, start_text, end=False)
        end = self.clock(node, end_text, end=True)
        if end != END_OF_DAY and end <= start:
            self.fail(node, f"{text.strip()!r} ends before it starts")
        return start, end

    def clock(self, node: yaml.Node, text: str, *, end: bool) -> time:
        matched = _CLOCK.fullmatch(text.strip())
        if matched is None:
            self.fail(node, f"{text.strip()!r} is not a time of day like 09:00")
        hour, minute = int(matched[1]), int(matched[2])
        if end and (hour, minute) == (24, 0):
            return END_OF_DAY
        if hour > 23 or minute > 59:
            self.fail(node, f"{text.strip()!r} is out of range (00:00-24:00)")
        if end and (hour, minute) == (0, 0):
            self.fail(node, "a span ending at midnight ends at 24:00")
        return time(hour, minute)

    def closed_day(self, node: yaml.Node) -> date:
        text = self.text(node, "a closed day")
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.fail(node, f"{text!r} is not a date like 2026-12-24")

    def public_holidays(self, node: yaml.Node) -> Callable[[date], bool]:
        fields = self.mapping(node, HOLIDAY_KEYS, "holidays")
        if "country" not in fields:
            self.fail(node, "holidays: country is required (ES, US, ...)")
        country = self.text(fields["country"], "country").upper()
        subdivision: str | None = None
        if "subdivision" in fields:
            subdivision = self.text(fields["subdivision"], "subdivision").upper()
        if country not in holidays.list_supported_countries():
            self.fail(fields["country"], f"unknown holiday country {country!r}")
        try:
            calendar = holidays.country_holidays(country, subdiv=subdivision)
        except NotImplementedError:
            self.fail(
                fields.get("subdivision", node), f"{country} has no subdivision {subdivision!r}"
            )
        # The library fills a year the first time a date of it is asked: any year is right.
        return calendar.__contains__

    # -- policies -----------------------------------------------------------------------------

    def policy(self, node: yaml.Node, default: ServiceLevel) -> ServiceLevel:
        fields = self.mapping(node, POLICY_KEYS, "a policy")
        if "name" not in fields:
            self.fail(node, "a policy needs a name")
        name = self.text(fields["name"], "name")
        if name == DEFAULT_POLICY:
            self.fail(fields["name"], f"{DEFAULT_POLICY!r} is the name of the default policy")
        if "match" not in fields:
            self.fail(node, f"policy {name!r} needs a match (the default covers everything else)")
        match = self.mapping(fields["match"], MATCH_KEYS, "match")
        if not match:
            self.fail(fields["match"], "match names nothing (the default covers everything)")
        level = self.level(node, default, name, POLICY_KEYS)
        return replace(
            level,
            kinds=self.members(match.get("kind"), PromiseKind, "kind"),
            priorities=self.members(match.get("priority"), Priority, "priority"),
            channels=self.members(match.get("channel"), Channel, "channel"),
            relationships=self.members(match.get("relationship"), Relationship, "relationship"),
        )

    def level(
        self, node: yaml.Node, base: ServiceLevel, name: str, keys: frozenset[str]
    ) -> ServiceLevel:
        """A policy's terms; what it leaves out is `base`'s."""
        fields = self.mapping(node, keys, f"policy {name!r}")
        target = base.target
        if "target" in fields:
            target = None if _is_null(fields["target"]) else self.duration(fields["target"])
        business_time = base.business_time
        if "business_time" in fields:
            business_time = self.flag(fields["business_time"])
        reminders = base.reminders
        if "reminders" in fields:
            leads = [
                self.duration(item) for item in self.sequence(fields["reminders"], "reminders")
            ]
            if len(set(leads)) != len(leads):
                self.fail(fields["reminders"], "a reminder is listed twice")
            reminders = tuple(sorted(leads, reverse=True))
        warn_at = base.warn_at
        if "warn_at" in fields:
            warn_at = None if _is_null(fields["warn_at"]) else self.share(fields["warn_at"])
        escalations = base.escalations
        if "escalate" in fields:
            escalations = self.steps(fields["escalate"])
        escalate_every = base.escalate_every
        if "escalate_every" in fields:
            escalate_every = self.duration(fields["escalate_every"])
        try:
            return ServiceLevel(
                name=name,
                target=target,
                business_time=business_time,
                reminders=reminders,
                warn_at=warn_at,
                escalations=escalations,
                escalate_every=escalate_every,
                line=_line(node),
            )
        except ServiceLevelError as error:
            self.fail(node, str(error))

    def steps(self, node: yaml.Node) -> tuple[EscalationStep, ...]:
        steps: list[EscalationStep] = []
        for item in self.sequence(node, "escalate"):
            fields = self.mapping(item, STEP_KEYS, "an escalation step")
            for key in sorted(STEP_KEYS - fields.keys()):
                self.fail(item, f"an escalation step needs {key!r}")
            after = self.duration(fields["after"], allow_zero=True)
            if steps and after <= steps[-1].after:
                self.fail(item, "escalation steps must come in rising order of `after`")
            level = self.text(fields["to"], "to")
            self._levels_used.append((level, _line(fields["to"])))
            steps.append(EscalationStep(after=after, level=level))
        return tuple(steps)

    def members(self, node: yaml.Node | None, kind: type[_E], what: str) -> frozenset[_E]:
        if node is None:
            return frozenset()
        items = [node] if isinstance(node, yaml.ScalarNode) else self.sequence(node, what)
        if not items:
            self.fail(node, f"{what}: an empty list matches nothing (leave it out for any)")
        found: set[_E] = set()
        for item in items:
            text = self.text(item, what)
            try:
                found.add(kind(text.upper()))
            except ValueError:
                known = ", ".join(member.lower() for member in kind)
                self.fail(item, f"unknown {what} {text!r} ({known})")
        return frozenset(found)

    # -- scalars and shapes -------------------------------------------------------------------

    def duration(self, node: yaml.Node, *, allow_zero: bool = False) -> timedelta:
        text = self.text(node, "a duration").replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            self.fail(node, f"{text!r} is not a duration like 4h, 30m, 1h30m or 2d")
        units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
        total = timedelta(0)
        for number, unit in parts:
            total += timedelta(**{units[unit]: float(number)})
        if total <= timedelta(0) and not (allow_zero and total == timedelta(0)):
            self.fail(node, f"{text!r} must be longer than zero")
        return total

    def share(self, node: yaml.Node) -> float:
        text = self.text(node, "warn_at")
        try:
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(node, f"warn_at {text!r} is not a share like 75%")
        if not 0 < value < 1:
            self.fail(node, f"warn_at {text!r} must be between 0 and 100% (both excluded)")
        return value

    def flag(self, node: yaml.Node) -> bool:
        text = self.text(node, "a flag").lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        self.fail(node, f"{text!r} is not true or false")

    def text(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
            self.fail(node, f"{what} must be a single value")
        value = str(node.value).strip()
        if not value:
            self.fail(node, f"{what} is empty")
        return value

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list")
        return list(node.value)

    def mapping(
        self, node: yaml.Node, keys: frozenset[str] | None, what: str
    ) -> dict[str, yaml.Node]:
        """Keys to value nodes; `keys` None takes any key (names chosen by the file)."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping of keys to values")
        found: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = self.text(key_node, "a key")
            if keys is not None and key not in keys:
                self.fail(key_node, f"unknown key {key!r} in {what} ({', '.join(sorted(keys))})")
            if key in found:
                self.fail(key_node, f"{key!r} is given twice in {what}")
            found[key] = value
        return found


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG
