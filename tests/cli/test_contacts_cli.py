"""`promesa contacts` and `promesa log`/`rate` against the real services: JSON checked field by
field, human output read as an agent reads it, errors named by the flag with their exit code."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Invoke
from tests.front_office import AGENT_B_TOKEN, SUPERVISOR_TOKEN, unique


def add_lucia(cli: Invoke, *extra: str) -> dict[str, Any]:
    name = unique("Lucía Fernández")
    done = cli(
        "contacts",
        "add",
        name,
        "--preferred",
        "Lucía",
        "--email",
        f"{name[-6:]}@example.es",
        "--phone",
        "+34612345678",
        "--time-zone",
        "Europe/Madrid",
        "--tag",
        "vip",
        "--prefers",
        "phone",
        *extra,
        "--json",
    )
    assert done.exit_code == 0, done
    contact: dict[str, Any] = done.json()
    return contact


def test_contacts_add_returns_the_stored_contact_field_by_field(cli: Invoke) -> None:
    contact = add_lucia(cli)

    assert contact["display_name"].startswith("Lucía Fernández")
    assert contact["preferred_name"] == "Lucía"
    assert contact["emails"] == [f"{contact['display_name'][-6:]}@example.es"]
    assert contact["phones"] == ["+34612345678"]
    assert contact["time_zone"] == "Europe/Madrid"
    assert contact["tags"] == ["vip"]
    assert contact["preferred_channel"] == "CHANNEL_PHONE"
    assert contact["kind"] == "CONTACT_KIND_PERSON"
    assert contact["team"] == "team-a"  # the agent's own team
    assert contact["created_by"] == "agent-1"
    assert len(str(contact["id"])) == 36
    assert contact["etag"]


def test_contacts_show_find_and_edit(cli: Invoke) -> None:
    contact = add_lucia(cli)
    contact_id = str(contact["id"])

    found = cli("contacts", "find", str(contact["display_name"]), "--json")
    assert found.exit_code == 0, found
    assert [c["id"] for c in found.json()] == [contact_id]

    by_email = cli("contacts", "find", str(contact["emails"][0]), "--json")
    assert [c["id"] for c in by_email.json()] == [contact_id]

    edited = cli("contacts", "edit", contact_id, "--preferred", "Lucy", "--json")
    assert edited.exit_code == 0, edited
    assert edited.json()["preferred_name"] == "Lucy"
    assert edited.json()["emails"] == contact["emails"]  # only the flag given changes
    assert edited.json()["etag"] != contact["etag"]

    shown = cli("contacts", "show", contact_id)
    assert shown.exit_code == 0, shown
    assert "call them Lucy" in shown.stdout
    assert "Europe/Madrid" in shown.stdout


def test_a_stale_etag_is_a_conflict_with_exit_code_5(cli: Invoke) -> None:
    contact = add_lucia(cli)
    cli("contacts", "edit", str(contact["id"]), "--preferred", "Lu")

    stale = cli(
        "contacts",
        "edit",
        str(contact["id"]),
        "--preferred",
        "Lucía",
        "--etag",
        str(contact["etag"]),
        "--json",
    )

    assert stale.exit_code == 5, stale
    assert stale.error()["code"] == "CONFLICT"


def test_log_with_promises_then_rate_and_show_the_timeline(cli: Invoke) -> None:
    contact = add_lucia(cli)
    contact_id = str(contact["id"])

    logged = cli(
        "log",
        contact_id,
        "--type",
        "complaint",
        "--channel",
        "phone",
        "--summary",
        "Parcel arrived damaged",
        "--promise",
        "Send a replacement",
        "--due",
        "2d",
        "--promise",
        "Call back with the tracking number",
        "--due",
        "tomorrow 10:00",
        "--json",
    )
    assert logged.exit_code == 0, logged
    interaction = logged.json()
    assert interaction["contact_id"] == contact_id
    assert interaction["type"] == "INTERACTION_TYPE_COMPLAINT"
    assert interaction["channel"] == "CHANNEL_PHONE"
    assert interaction["summary"] == "Parcel arrived damaged"
    assert interaction["agent_id"] == "agent-1"
    assert [p["text"] for p in interaction["promises"]] == [
        "Send a replacement",
        "Call back with the tracking number",
    ]
    assert all(p["id"] and p["due_at"] for p in interaction["promises"])
    assert "T09:00:00Z" in interaction["promises"][1]["due_at"]  # 10:00 in Madrid, in winter

    rated = cli("rate", interaction["id"], "4", "--json")
    assert rated.exit_code == 0, rated
    assert rated.json()["satisfaction"] == 4

    shown = cli("contacts", "show", contact_id, "--json")
    assert shown.exit_code == 0, shown
    assert [i["id"] for i in shown.json()["timeline"]] == [interaction["id"]]


def test_wrong_input_names_the_flag_and_exits_3(cli: Invoke) -> None:
    refused = cli("contacts", "add", unique("Oliver"), "--email", "not-an-email", "--json")

    assert refused.exit_code == 3, refused
    error = refused.error()
    assert error["code"] == "INVALID_ARGUMENT"
    violation = error["field_violations"][0]
    assert violation["field"] == "contact.emails[0]"
    assert violation["flag"] == "--email"
    assert violation["description"]

    human = cli("contacts", "add", unique("Oliver"), "--email", "not-an-email")
    assert human.exit_code == 3
    assert "--email (contact.emails[0])" in human.stderr


def test_a_promise_without_its_due_is_refused_before_any_call(cli: Invoke) -> None:
    done = cli("log", "some-contact", "-t", "request", "-c", "email", "-s", "x", "-p", "Call")

    assert done.exit_code == 2
    assert "--due" in done.stderr


def test_exit_codes_by_error_class(cli: Invoke) -> None:
    contact = add_lucia(cli)

    missing = cli("contacts", "show", "00000000-0000-4000-8000-000000000000", "--json")
    assert missing.exit_code == 4, missing
    assert missing.error()["code"] == "NOT_FOUND"

    other_team = cli("contacts", "show", str(contact["id"]), "--json", token=AGENT_B_TOKEN)
    assert other_team.exit_code == 7, other_team
    assert other_team.error()["code"] == "PERMISSION_DENIED"

    stranger = cli("contacts", "show", str(contact["id"]), "--json", token="no-such-token")
    assert stranger.exit_code == 8, stranger
    assert stranger.error()["code"] == "UNAUTHENTICATED"
    assert "no-such-token" not in stranger.stderr + stranger.stdout

    nobody = cli(
        "--deadline",
        "1",
        "contacts",
        "show",
        str(contact["id"]),
        "--json",
        env={"PROMESA_CONTACTS": "127.0.0.1:9"},  # nothing listens there
    )
    assert nobody.exit_code == 9, nobody
    assert nobody.error()["code"] == "UNAVAILABLE"


def test_merge_then_erase_by_a_supervisor(cli: Invoke) -> None:
    survivor, duplicate = add_lucia(cli), add_lucia(cli)

    merged = cli("contacts", "merge", str(survivor["id"]), str(duplicate["id"]), "--json")
    assert merged.exit_code == 0, merged
    assert merged.json()["id"] == survivor["id"]
    gone = cli("contacts", "show", str(duplicate["id"]), "--json")
    assert gone.json()["contact"]["merged_into_id"] == survivor["id"]

    refused = cli("contacts", "erase", str(survivor["id"]), "--reason", "GDPR-1", "--yes")
    assert refused.exit_code == 7, refused  # agents may not erase

    asked = cli(
        "contacts",
        "erase",
        str(survivor["id"]),
        "--reason",
        "GDPR-1",
        token=SUPERVISOR_TOKEN,
        input="n\n",
    )
    assert asked.exit_code != 0  # said no at the prompt: nothing erased

    erased = cli(
        "contacts",
        "erase",
        str(survivor["id"]),
        "--reason",
        "GDPR-1",
        "--yes",
        "--json",
        token=SUPERVISOR_TOKEN,
    )
    assert erased.exit_code == 0, erased
    assert erased.json()["id"] == survivor["id"]
    assert erased.json()["erased_at"]
