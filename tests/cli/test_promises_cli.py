"""`promesa promises` and `promesa stats` against the real services: mine (due soon first, the
customer's preferred name and local time), overdue, and every lifecycle command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.cli.conftest import TIME_ZONE, Invoke
from tests.front_office import AGENT, LEAD_TOKEN, unique
from tests.support import eventually


def a_contact(cli: Invoke, preferred: str, time_zone: str) -> str:
    added = cli(
        "contacts",
        "add",
        unique(preferred + " Doe"),
        "--preferred",
        preferred,
        "--time-zone",
        time_zone,
        "--json",
    )
    assert added.exit_code == 0, added
    return str(added.json()["id"])


def promise_to(cli: Invoke, contact_id: str, text: str, due: str, **log: str) -> str:
    """Logs a call in which `text` was promised; the promise's id once the follow-up service
    has it."""
    logged = cli(
        "log",
        contact_id,
        "-t",
        log.get("type", "request"),
        "-c",
        log.get("channel", "phone"),
        "-s",
        "Called",
        "-p",
        text,
        "-d",
        due,
        "--json",
    )
    assert logged.exit_code == 0, logged
    return str(logged.json()["promises"][0]["id"])


async def arrived(cli: Invoke, promise_id: str) -> dict[str, Any]:
    async def shown() -> dict[str, Any] | None:
        done = cli("promises", "show", promise_id, "--json")
        return done.json() if done.exit_code == 0 else None

    return await eventually(shown, timeout=15)


async def test_mine_lists_open_promises_due_soon_first_with_the_customer(cli: Invoke) -> None:
    amelia = a_contact(cli, "Amelia", "America/New_York")
    javi = a_contact(cli, "Javi", "Atlantic/Canary")
    later = promise_to(cli, amelia, "Email the invoice", "3d")
    sooner = promise_to(cli, javi, "Tell Javi about the stock", "2h")
    await arrived(cli, later)
    await arrived(cli, sooner)

    mine = cli("promises", "mine", "--json")

    assert mine.exit_code == 0, mine
    listed = [p for p in mine.json() if p["id"] in (later, sooner)]
    assert [p["id"] for p in listed] == [sooner, later]  # due soon first
    first = listed[0]
    assert first["owner_id"] == "agent-1"
    assert first["status"] == "PROMISE_STATUS_OPEN"
    assert first["text"] == "Tell Javi about the stock"
    assert first["customer"]["id"] == javi
    assert first["customer"]["name"] == "Javi"  # the preferred name
    assert first["customer"]["time_zone"] == "Atlantic/Canary"
    local = datetime.fromisoformat(first["customer"]["local_time"])
    canary = datetime.now(UTC).astimezone(ZoneInfo("Atlantic/Canary"))
    assert local.utcoffset() == canary.utcoffset()
    assert abs(local - canary) < timedelta(minutes=2)
    due = datetime.fromisoformat(first["due_at"].replace("Z", "+00:00"))
    assert timedelta(hours=1, minutes=55) < due - datetime.now(UTC) <= timedelta(hours=2)

    human = cli("promises", "mine")
    assert human.exit_code == 0, human
    assert "Javi" in human.stdout and "Amelia" in human.stdout
    assert "in 1h 5" in human.stdout  # the countdown, e.g. "in 1h 59m"
    assert sooner[:8] in human.stdout

    within = cli("promises", "mine", "--within", "1d", "--json")
    assert sooner in [p["id"] for p in within.json()]
    assert later not in [p["id"] for p in within.json()]


async def test_the_lifecycle_commands_by_id_and_by_prefix(cli: Invoke) -> None:
    contact = a_contact(cli, "Olly", "Europe/London")
    promise_id = promise_to(cli, contact, "Send the loyalty card", "1d")
    before = await arrived(cli, promise_id)
    due_before = datetime.fromisoformat(before["due_at"].replace("Z", "+00:00"))

    moved = cli(
        "promises",
        "renegotiate",
        promise_id[:8],
        "--due",
        "2026-12-24 12:00",
        "--reason",
        "Customer is away",
        "--customer-agreed",
        "--json",
    )
    assert moved.exit_code == 0, moved
    assert moved.json()["id"] == promise_id
    assert moved.json()["due_at"] == "2026-12-24T11:00:00Z"  # noon in Madrid
    assert moved.json()["renegotiation_count"] == 1
    assert moved.json()["due_at"] != due_before.isoformat()

    paused = cli("promises", "pause", promise_id, "-r", "Waiting for the address", "--json")
    assert paused.exit_code == 0, paused
    assert paused.json()["status"] == "PROMISE_STATUS_WAITING_ON_CUSTOMER"

    resumed = cli("promises", "resume", promise_id, "-r", "Address received", "--json")
    assert resumed.exit_code == 0, resumed
    assert resumed.json()["status"] == "PROMISE_STATUS_OPEN"

    kept = cli("promises", "keep", promise_id, "--note", "Posted today", "--json")
    assert kept.exit_code == 0, kept
    assert kept.json()["status"] == "PROMISE_STATUS_KEPT"
    assert kept.json()["evidence"]["note"] == "Posted today"
    assert kept.json()["kept_at"]

    again = cli("promises", "cancel", promise_id, "-r", "Too late", "--json")
    assert again.exit_code == 6, again  # a kept promise cannot be cancelled
    assert again.error()["code"] == "FAILED_PRECONDITION"

    history = cli("promises", "show", promise_id)
    assert history.exit_code == 0, history
    for action in ("created", "renegotiated", "paused", "resumed", "kept"):
        assert action in history.stdout


async def test_reassign_and_cancel(cli: Invoke) -> None:
    contact = a_contact(cli, "Grace", "Europe/Dublin")
    handed = promise_to(cli, contact, "Book the installer", "2d")
    dropped = promise_to(cli, contact, "Send a catalogue", "2d")
    await arrived(cli, handed)
    await arrived(cli, dropped)

    reassigned = cli(
        "promises",
        "reassign",
        handed,
        "--to",
        "supervisor-1",
        "--reason",
        "Needs approval",
        "--json",
    )
    assert reassigned.exit_code == 0, reassigned
    assert reassigned.json()["owner_id"] == "supervisor-1"
    assert reassigned.json()["handoff_count"] == 1

    cancelled = cli("promises", "cancel", dropped, "--reason", "Out of print", "--json")
    assert cancelled.exit_code == 0, cancelled
    assert cancelled.json()["status"] == "PROMISE_STATUS_CANCELLED"
    assert cancelled.json()["cancel_reason"] == "Out of print"

    mine = [p["id"] for p in cli("promises", "mine", "--json").json()]
    assert handed not in mine and dropped not in mine

    missing_reason = cli("promises", "cancel", dropped)
    assert missing_reason.exit_code == 2
    assert "--reason" in missing_reason.stderr


async def test_overdue_shows_a_promise_once_its_due_time_passed(cli: Invoke) -> None:
    contact = a_contact(cli, "Carmen", TIME_ZONE)
    promise_id = promise_to(cli, contact, "Ring back before lunch", "2s")
    await arrived(cli, promise_id)

    async def listed() -> dict[str, Any] | None:
        done = cli("promises", "overdue", "--json")
        assert done.exit_code == 0, done
        return next((p for p in done.json() if p["id"] == promise_id), None)

    overdue = await eventually(listed, timeout=15)

    assert overdue["overdue"] is True
    assert overdue["customer"]["name"] == "Carmen"


async def test_stats_as_a_table_a_chart_and_json(cli: Invoke) -> None:
    contact = a_contact(cli, "Harry", "Australia/Sydney")
    promise_id = promise_to(cli, contact, "Send the manual", "1d", channel="email")
    await arrived(cli, promise_id)
    cli("promises", "keep", promise_id, "--note", "Sent")

    rows = cli("stats", "--by", "channel", "--json")
    assert rows.exit_code == 0, rows
    email = next(r for r in rows.json() if r["key"] == "CHANNEL_EMAIL")
    assert email["made"] >= 1 and email["kept"] >= 1
    assert 0 <= email["kept_on_time_percent"] <= 100

    table = cli("stats", "--by", "channel")
    assert table.exit_code == 0, table
    assert "Promise keeping by channel" in table.stdout
    assert "email" in table.stdout
    assert "█" in table.stdout and "kept on time" in table.stdout  # the bar chart

    by_owner = cli("stats", "--by", "owner", "--json", token=LEAD_TOKEN)
    assert by_owner.exit_code == 0, by_owner
    assert AGENT in [r["key"] for r in by_owner.json()]

    by_priority = cli("stats", "--by", "priority", "--json")
    assert by_priority.exit_code == 0, by_priority
    assert all(r["key"].startswith("PRIORITY_") for r in by_priority.json())
    assert sum(r["made"] for r in by_priority.json()) >= 1

    wrong = cli("stats", "--by", "colour")
    assert wrong.exit_code == 2
    assert "--by" in wrong.stderr
