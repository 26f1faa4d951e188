"""`promesa demo --short` runs to the end against the real services: the seed lands in two
teams, and one promise goes from made to reminded (a real AT_DUE reminder read from
StreamReminders, sent by the follow-up service's own scheduler) to kept."""

from __future__ import annotations

from tests.cli.conftest import Invoke
from tests.front_office import AGENT


def test_the_short_demo_seeds_and_follows_a_promise_to_kept(cli: Invoke) -> None:
    done = cli("demo", "--short", "--json")

    assert done.exit_code == 0, done
    summary = done.json()
    assert summary["user"] == AGENT
    assert summary["contacts"] == 4
    assert summary["teams"] == ["team-a", "team-b"]
    assert summary["interactions"] >= 4
    assert summary["promises"] >= 4
    assert summary["kept_in_seed"] >= 1
    followed = summary["followed"]
    assert followed["reminder_kind"] == "REMINDER_KIND_AT_DUE"
    assert followed["status"] == "PROMISE_STATUS_KEPT"
    assert followed["reminder_id"]
    assert "reminded" in done.stderr  # the progress goes to stderr in JSON mode

    mine = cli("promises", "mine", "--json")
    names = {p["customer"]["name"] for p in mine.json()}
    assert {"Lucía", "Olly"} <= names  # Spanish and English names, by preferred name
    assert followed["promise_id"] not in {p["id"] for p in mine.json()}  # kept: not open

    shown = cli("promises", "show", followed["promise_id"])
    assert "kept" in shown.stdout


def test_the_demo_shows_its_progress_to_a_person(cli: Invoke) -> None:
    done = cli("demo", "--short", "--due-in", "1")

    assert done.exit_code == 0, done
    for stage in ("made", "reminded", "kept", "promesa promises mine"):
        assert stage in done.stdout
    assert "at-due reminder reached agent-1" in done.stdout
