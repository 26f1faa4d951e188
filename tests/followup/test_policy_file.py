"""The service-level policy file: the example reads into the model, what a file leaves out is
today's behaviour, and every mistake refuses to boot naming the file and the line."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from followup.adapters.policy_file import load_service_levels, service_levels_from_setting
from followup.domain.calendars import ALWAYS_OPEN, EARLIEST, LATEST
from followup.domain.model import Channel, Priority, PromiseKind
from followup.domain.service_levels import EscalationStep, Relationship, ServiceLevel
from promesa.settings import ConfigError

EXAMPLE = Path(__file__).parents[2] / "services" / "followup" / "service-levels.example.yaml"
H = timedelta(hours=1)
TEAMS = """\
teams:
  "*":
    levels: {supervisor: lead-1, manager: boss-1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service-levels.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_example_file_reads_into_policies_teams_and_calendars() -> None:
    levels = load_service_levels(EXAMPLE)
    urgent = levels.for_promise(
        PromiseKind.RESOLVE_COMPLAINT,
        Priority.URGENT,
        Channel.EMAIL,
        Relationship.EXTERNAL_CUSTOMER,
    )
    assert urgent.name == "urgent-complaints" and urgent.line == 16
    assert urgent.target == 4 * H and urgent.business_time and urgent.warn_at == 0.75
    assert urgent.reminders == (2 * H, H / 2)
    assert urgent.escalations == (
        EscalationStep(4 * H, "supervisor"),
        EscalationStep(24 * H, "manager"),
    )
    assert urgent.escalate_every == 24 * H
    low = levels.for_promise(
        PromiseKind.RESOLVE_COMPLAINT, Priority.LOW, Channel.EMAIL, Relationship.EXTERNAL_CUSTOMER
    )
    assert low.name == "default" and low.reminders == (24 * H, H)
    assert levels.recipient("team-a", "manager") == "lead-1"
    assert levels.recipient("team-b", "supervisor") == "lead-1"
    calendar = levels.team("team-a").calendar
    # Thursday 24 December 2026 is closed by the file, Friday the 25th is Christmas
    wednesday = datetime(2026, 12, 23, 17, tzinfo=UTC)  # 18:00 in Madrid: closed
    assert calendar.next_open(wednesday) == datetime(2026, 12, 28, 8, tzinfo=UTC)
    assert levels.team("team-b").calendar.between(wednesday, wednesday + H) == H
    # Holidays of any year, to the calendar's ends, without failing
    assert calendar.add(LATEST, -H) < LATEST and calendar.add(EARLIEST, H) > EARLIEST
    assert calendar.between(wednesday, LATEST) > timedelta(days=700_000)


def test_no_file_is_todays_behaviour() -> None:
    levels = service_levels_from_setting(
        "", escalate_after=3 * H, escalate_every=6 * H, supervisors={"*": "lead"}
    )
    assert levels.policies == () and levels.default.escalations == (
        EscalationStep(3 * H, "supervisor"),
    )
    assert levels.recipient("any", "supervisor") == "lead"


def test_what_the_file_leaves_out_is_the_default_policys_then_todays(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TEAMS
        + textwrap.dedent(
            """\
        policies:
          - name: vip
            match: {priority: urgent}
            reminders: [4h]
        default:
          business_time: yes
          warn_at: 0.5
        """
        ),
    )
    levels = service_levels_from_setting(
        str(path), escalate_after=2 * H, escalate_every=8 * H, supervisors={}
    )
    vip = levels.for_promise(None, Priority.URGENT, None, None)
    assert vip.reminders == (4 * H,) and vip.business_time and vip.warn_at == 0.5
    assert vip.escalations == (EscalationStep(2 * H, "supervisor"),)
    assert vip.escalate_every == 8 * H
    assert levels.default.reminders == (24 * H, H)
    assert levels.team("x").calendar is ALWAYS_OPEN


def test_a_team_without_hours_of_its_own_works_the_default_teams(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        teams:
          "*":
            time_zone: Europe/Madrid
            hours: {sat: "10:00-14:00", sun: "00:00-24:00"}
            levels: {supervisor: lead}
          team-a:
            levels: {supervisor: sup-a}
          team-b:
            time_zone: America/New_York
        """,
    )
    levels = load_service_levels(path)
    assert levels.team("team-a").calendar is levels.default_team.calendar
    assert levels.team("team-b").calendar.zone.key == "America/New_York"
    assert (
        levels.team("team-b").calendar.between(
            datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
        )
        == 24 * H
    )  # a zone alone: open around the clock there
    sunday = datetime(2026, 12, 6, 12, tzinfo=UTC)
    assert levels.team("team-a").calendar.is_open(sunday)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("teamz: {}\n", 1, "unknown key 'teamz'"),
        (TEAMS + "policies:\n  - name: x\n    match: {kind: [teleport]}\n", 6, "unknown kind"),
        (TEAMS + "policies:\n  - name: x\n    match: {priority: [meh]}\n", 6, "unknown priority"),
        (TEAMS + "policies:\n  - name: x\n    match: {channel: fax}\n", 6, "unknown channel"),
        (
            TEAMS + "policies:\n  - name: x\n    match:\n      relationship: [friend]\n",
            7,
            "unknown relationship",
        ),
        (
            TEAMS + "policies:\n  - name: x\n    match: {kind: call_back}\n    colour: red\n",
            7,
            "unknown key 'colour'",
        ),
        (TEAMS + "policies:\n  - match: {kind: call_back}\n", 5, "needs a name"),
        (TEAMS + "policies:\n  - name: x\n", 5, "needs a match"),
        (TEAMS + "default:\n  target: soon\n", 5, "not a duration"),
        (TEAMS + "default:\n  reminders: [2h, 30]\n", 5, "not a duration"),
        (TEAMS + "default:\n  target: 0h\n", 5, "longer than zero"),
        (TEAMS + "default:\n  warn_at: 100%\n", 5, "between 0 and 100%"),
        (TEAMS + "default:\n  warn_at: 0\n", 5, "between 0 and 100%"),
        (TEAMS + "default:\n  warn_at: lots\n", 5, "not a share"),
        (TEAMS + "default:\n  business_time: maybe\n", 5, "not true or false"),
        (
            TEAMS + "default:\n  escalate:\n    - {after: 1h, to: director}\n",
            6,
            "no team defines the escalation level 'director'",
        ),
        (
            TEAMS
            + "default:\n  escalate:\n    - {after: 4h, to: manager}\n    - {after: 1h, to: x}\n",
            7,
            "rising order",
        ),
        (TEAMS + "default:\n  escalate:\n    - {after: 4h}\n", 6, "needs 'to'"),
        (TEAMS + "default:\n  name: x\n", 5, "unknown key 'name'"),
        (
            "teams:\n  a:\n    hours: {mon: '09:00-18:00', sunday: '10:00-11:00', funday: x}\n",
            3,
            "unknown weekday 'funday'",
        ),
        ("teams:\n  a:\n    hours:\n      mon: '09:00-25:00'\n", 4, "out of range"),
        ("teams:\n  a:\n    hours:\n      mon: '18:00-09:00'\n", 4, "ends before it starts"),
        ("teams:\n  a:\n    hours:\n      mon: '9-18'\n", 4, "not a time of day"),
        ("teams:\n  a:\n    hours:\n      mon: '09:00 to 18:00'\n", 4, "not a span"),
        ("teams:\n  a:\n    hours:\n      tue: '09:00-13:00, 12:00-19:00'\n", 4, "overlap"),
        ("teams:\n  a:\n    hours: {}\n", 3, "never open"),
        ("teams:\n  a:\n    time_zone: Europe/Atlantis\n", 3, "unknown time zone"),
        ("teams:\n  a:\n    holidays: {country: XX}\n", 3, "unknown holiday country 'XX'"),
        (
            "teams:\n  a:\n    holidays:\n      country: ES\n      subdivision: ZZ\n",
            5,
            "no subdivision 'ZZ'",
        ),
        ("teams:\n  a:\n    holidays: {subdivision: MD}\n", 3, "country is required"),
        ("teams:\n  a:\n    closed: [2026-02-30]\n", 3, "not a date"),
        ("teams:\n  a:\n    levels: [supervisor]\n", 3, "must be a mapping"),
        ("teams:\n  a: {}\n  a: {}\n", 3, "given twice"),
        ("teams:\n  a:\n    hours: {mon: '09:00-18:00'\n", 4, "not valid YAML"),
        # the built-in default escalates to "supervisor": some team must hold it
        ("teams:\n  a:\n    levels: {manager: m}\n", 1, "escalation level 'supervisor'"),
    ],
)
def test_every_mistake_is_refused_naming_the_file_and_the_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_service_levels(path, fallback=ServiceLevel("default"))
    message = str(refused.value)
    assert f"CRM_SERVICE_LEVELS={path}, line {line}:" in message
    assert says in message


def test_overlapping_policies_are_refused_naming_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TEAMS
        + textwrap.dedent(
            """\
        policies:
          - name: complaints
            match: {kind: [resolve_complaint]}
          - name: phone
            match: {channel: [phone], relationship: [external_customer]}
        """
        ),
    )
    with pytest.raises(ConfigError) as refused:
        load_service_levels(path)
    message = str(refused.value)
    assert str(path) in message
    assert "'complaints' (line 5) and policy 'phone' (line 7) overlap" in message


def test_policies_that_cannot_meet_boot(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TEAMS
        + textwrap.dedent(
            """\
        policies:
          - name: complaints
            match: {kind: [resolve_complaint], priority: [urgent]}
          - name: phone
            match: {kind: [resolve_complaint], priority: [low, normal]}
          - name: colleagues
            match: {kind: call_back, relationship: [internal_colleague, internal_department]}
        """
        ),
    )
    assert [p.name for p in load_service_levels(path).policies] == [
        "complaints",
        "phone",
        "colleagues",
    ]


def test_an_unreadable_or_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"CRM_SERVICE_LEVELS=.*cannot be read"):
        load_service_levels(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="empty"):
        load_service_levels(write(tmp_path, "# nothing\n"))
