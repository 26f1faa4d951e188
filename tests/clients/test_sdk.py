"""The SDK against the three real services: what an app developer writes, and what comes back."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import promise_pb2
from crm.interactions.v1 import interaction_pb2
from promesa_client import Client, PromiseMade, errors, short_name, short_names
from tests.front_office import (
    AGENT,
    AGENT_B,
    AGENT_B_TOKEN,
    LEAD_TOKEN,
    FrontOffice,
    front_office,
    unique,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples" / "complaint.py"
__all__ = ["front_office"]  # the module's shared system (tests/front_office.py)


@pytest.fixture
async def client(front_office: FrontOffice) -> AsyncIterator[Client]:
    """agent-1 (team-a)."""
    async with front_office.client() as opened:
        yield opened


async def test_a_contact_is_created_read_and_changed_by_keyword_arguments(client: Client) -> None:
    name = unique("María García")
    created = await client.contacts.create(
        name,
        preferred_name="María",
        emails=[f"{name.split()[-1]}@example.com"],
        time_zone="Europe/Madrid",
        relationship="external_customer",
        quiet_hours={"start_minute": 22 * 60, "end_minute": 7 * 60},
    )

    read = await client.contacts.get(created.id)
    changed = await client.contacts.update(read, preferred_name="Mari", tags=["vip"])

    assert read.display_name == name and read.quiet_hours.start_minute == 1320
    assert short_name(contact_pb2.Relationship.DESCRIPTOR, read.relationship) == "external_customer"
    assert changed.preferred_name == "Mari" and list(changed.tags) == ["vip"]
    assert changed.time_zone == "Europe/Madrid"  # not in the mask: left as it was
    assert changed.etag != read.etag


async def test_a_change_on_a_stale_copy_is_a_conflict_not_an_overwrite(client: Client) -> None:
    contact = await client.contacts.create(unique("Oliver Smith"))
    await client.contacts.update(contact, preferred_name="Olly")

    with pytest.raises(errors.Conflict) as raised:
        await client.contacts.update(contact, preferred_name="Ollie")  # carries the old etag

    assert raised.value.code.name == "ABORTED"
    assert (await client.contacts.get(contact.id)).preferred_name == "Olly"


async def test_bad_input_names_every_field_at_fault(client: Client) -> None:
    with pytest.raises(errors.InvalidArgument) as raised:
        await client.contacts.create("", emails=["ok@example.com", "not-an-email"])

    fields = {v.field for v in raised.value.field_violations}
    assert {"contact.display_name", "contact.emails[1]"} <= fields
    assert "contact.emails[1]" in str(raised.value)


async def test_arguments_the_sdk_cannot_send_are_refused_before_any_call(client: Client) -> None:
    with pytest.raises(errors.InvalidArgument) as bad_enum:
        await client.interactions.record("any", channel="pigeon", type="complaint")
    with pytest.raises(errors.InvalidArgument) as naive:
        await client.promises.create("any", text="x", due_at=datetime(2030, 1, 1), owner_id="a")
    with pytest.raises(errors.InvalidArgument) as unknown:
        await client.contacts.create("Ana", language="es")

    assert bad_enum.value.field_violations[0].field == "interaction.channel"
    assert "phone" in bad_enum.value.field_violations[0].description
    assert naive.value.field_violations[0].field == "promise.due_at"
    assert unknown.value.field_violations[0].field == "contact.language"
    assert short_names(promise_pb2.Priority.DESCRIPTOR) == ["low", "normal", "high", "urgent"]


async def test_each_status_raises_its_own_error(front_office: FrontOffice, client: Client) -> None:
    contact = await client.contacts.create(unique("Lucía Fernández"))

    with pytest.raises(errors.NotFound) as missing:
        await client.contacts.get("00000000-0000-4000-8000-000000000000")
    with pytest.raises(errors.PermissionDenied):
        await client.contacts.erase(contact.id, "an agent may not erase")
    async with front_office.client(token="no-such-token") as stranger:
        with pytest.raises(errors.Unauthenticated):
            await stranger.contacts.get(contact.id)

    assert missing.value.resource_name == "00000000-0000-4000-8000-000000000000"


async def test_a_second_email_holder_is_a_conflict_naming_the_first(client: Client) -> None:
    email = f"{unique('dup').split()[-1]}@example.com"
    first = await client.contacts.create(unique("Carmen Ruiz"), emails=[email])

    with pytest.raises(errors.Conflict) as raised:
        await client.contacts.create(unique("Carmen Ruiz"), emails=[email])

    assert raised.value.code.name == "ALREADY_EXISTS"
    assert raised.value.resource_name == first.id


async def test_lists_follow_every_page_and_one_page_can_be_read(client: Client) -> None:
    tag = unique("page").replace(" ", "-")
    made = [(await client.contacts.create(unique(f"Page {i}"), tags=[tag])).id for i in range(5)]

    every = [c.id async for c in client.contacts.list(tag=tag, page_size=2)]
    first = await client.contacts.list(tag=tag, page_size=2).page()
    second = await client.contacts.list(tag=tag, page_size=2).page(first.next_page_token)
    pages = [p async for p in client.contacts.list(tag=tag, page_size=2).pages()]
    three = await client.contacts.list(tag=tag, page_size=2).collect(limit=3)

    assert sorted(every) == sorted(made)
    assert len(first.items) == 2 and first.next_page_token
    assert not {c.id for c in first.items} & {c.id for c in second.items}
    assert [len(p.items) for p in pages] == [2, 2, 1] and not pages[-1].next_page_token
    assert [c.id for c in three] == every[:3]


async def test_search_finds_by_name_prefix_email_and_phone(client: Client) -> None:
    name = unique("Søren Kierkegaard")
    email = f"{name.split()[-1]}@example.dk"
    contact = await client.contacts.create(name, emails=[email], phones=["+45 32 12 34 56"])

    by_name = await client.contacts.search(name_prefix=name).collect()
    by_email = await client.contacts.search(email=email.upper()).collect()
    by_phone = await client.contacts.search(phone="+4532123456").collect()

    assert [c.id for c in by_name] == [contact.id] == [c.id for c in by_email]
    assert contact.id in [c.id for c in by_phone]


async def test_a_complaint_with_a_promise_reaches_the_ledger(client: Client) -> None:
    contact = await client.contacts.create(unique("José Martín"), time_zone="Europe/Madrid")

    complaint = await client.interactions.record(
        contact.id,
        channel="phone",
        type="complaint",
        direction="inbound",
        summary="The parcel arrived broken",
        wait_for_contact=10,
        promises=[PromiseMade("Send a replacement", timedelta(days=2), kind="deliver")],
    )
    promise_id = complaint.promises[0].id

    promise = await client.promises.get(promise_id, wait=10)
    timeline = await client.interactions.list(contact.id, type="complaint").collect()

    assert complaint.type == interaction_pb2.INTERACTION_TYPE_COMPLAINT
    assert promise.owner_id == AGENT and promise.text == "Send a replacement"
    assert promise.source_interaction_id == complaint.id
    assert [i.id for i in timeline] == [complaint.id]


async def test_an_interaction_is_rated_and_amended_with_its_etag(client: Client) -> None:
    contact = await client.contacts.create(unique("Emma Jones"))
    touch = await client.interactions.record(
        contact.id, channel="email", type="inquiry", summary="Opening hours?", wait_for_contact=10
    )

    rated = await client.interactions.rate(touch.id, 5)
    amended = await client.interactions.amend(rated, reason="typo", summary="Opening hours")
    with pytest.raises(errors.Conflict):
        await client.interactions.amend(rated, reason="again", summary="stale")

    assert rated.satisfaction == 5
    assert amended.summary == "Opening hours" and amended.amendments[-1].reason == "typo"


async def test_a_promise_goes_through_its_lifecycle_carrying_etags(
    front_office: FrontOffice, client: Client
) -> None:
    contact = await client.contacts.create(unique("Pablo Díaz"))
    due = datetime.now(UTC) + timedelta(days=1)
    made = await client.promises.create(
        contact.id,
        text="Call back",
        due_at=due,
        owner_id=AGENT,
        kind="call_back",
        channel="phone",
        priority="urgent",
    )

    paused = await client.promises.pause(made, "waiting for the invoice number")
    resumed = await client.promises.resume(paused, "invoice number received")
    moved = await client.promises.renegotiate(
        resumed, due + timedelta(days=1), "customer asked", customer_agreed=True
    )
    with pytest.raises(errors.Conflict):
        await client.promises.keep(resumed, evidence="called")  # a stale copy
    kept = await client.promises.keep(moved, evidence="called, refund confirmed")
    with pytest.raises(errors.FailedPrecondition):
        await client.promises.cancel(kept, "too late")
    confirmed = await client.promises.confirm(kept.id, 4)
    mine = await client.promises.list(contact_id=contact.id, status="kept").collect()

    assert made.priority == promise_pb2.PRIORITY_URGENT
    assert paused.status == promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER
    assert moved.renegotiation_count == 1
    assert kept.status == promise_pb2.PROMISE_STATUS_KEPT and kept.evidence.note.startswith("call")
    assert confirmed.satisfaction == 4
    assert [p.id for p in mine] == [made.id]


async def test_a_promise_is_reassigned_and_cancelled(
    front_office: FrontOffice, client: Client
) -> None:
    contact = await client.contacts.create(unique("Ana Torres"))
    made = await client.promises.create(
        contact.id,
        text="Visit",
        due_at=datetime.now(UTC) + timedelta(days=3),
        owner_id=AGENT,
        kind="visit",
    )

    handed = await client.promises.reassign(made, "agent-3", "holiday", new_team="team-a")
    async with front_office.client(token=LEAD_TOKEN) as lead:
        cancelled = await lead.promises.cancel(handed.id, "customer moved away")

    assert handed.owner_id == "agent-3" and handed.handoff_count == 1
    assert cancelled.status == promise_pb2.PROMISE_STATUS_CANCELLED


async def test_stats_come_per_priority(front_office: FrontOffice) -> None:
    async with front_office.client(token=AGENT_B_TOKEN) as agent_b:
        contact = await agent_b.contacts.create(unique("Grace Hopper"))
        for priority in ("low", "urgent", "urgent"):
            await agent_b.promises.create(
                contact.id,
                text=f"{priority} promise",
                due_at=datetime.now(UTC) + timedelta(days=1),
                owner_id=AGENT_B,
                priority=priority,
            )
    async with front_office.client(token=LEAD_TOKEN) as lead:
        rows = await lead.promises.stats("priority", since=datetime.now(UTC) - timedelta(hours=1))

    made = {r.key: r.made for r in rows}
    assert made["PRIORITY_URGENT"] >= 2 and made["PRIORITY_LOW"] >= 1
    assert [r.key for r in rows] == sorted(made)


async def test_a_token_may_come_from_a_callable_sync_or_async(front_office: FrontOffice) -> None:
    asked: list[str] = []

    async def fresh_token() -> str:
        asked.append("async")
        await asyncio.sleep(0)
        return "dev-agent-token"

    def static_token() -> str:
        asked.append("sync")
        return "dev-agent-token"

    async with front_office.client(token=fresh_token) as by_coroutine:
        contact = await by_coroutine.contacts.create(unique("Token Async"))
    async with front_office.client(token=static_token) as by_function:
        await by_function.contacts.get(contact.id)

    assert asked == ["async", "sync"]


def test_the_sync_client_makes_the_same_calls_blocking(front_office: FrontOffice) -> None:
    with front_office.sync_client() as client:
        contact = client.contacts.create(unique("Sync Sánchez"), tags=["sync"])
        read = client.contacts.get(contact.id)
        promise = client.promises.create(
            contact.id,
            text="Write back",
            due_at=datetime.now(UTC) + timedelta(hours=5),
            owner_id=AGENT,
        )
        listed = [p.id for p in client.promises.list(contact_id=contact.id)]
        page = client.promises.list(contact_id=contact.id).page()
        with pytest.raises(errors.NotFound):
            client.promises.get("00000000-0000-4000-8000-000000000000")
        kept = client.promises.keep(promise, evidence="done")

    assert read.id == contact.id
    assert listed == [promise.id] and [p.id for p in page.items] == listed
    assert kept.status == promise_pb2.PROMISE_STATUS_KEPT


async def test_the_readme_example_records_a_complaint_and_sees_its_promise_tracked(
    front_office: FrontOffice,
) -> None:
    # The example of clients/python/README.md and the repo README, run as a user runs it.
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    env = {**os.environ, **front_office.env(), "EXAMPLE_EMAIL": email}
    outputs = []
    for _ in range(2):  # the second run finds María instead of creating her again
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(run.communicate(), timeout=30)
        assert run.returncode == 0, output.decode()
        outputs.append(output.decode())

    assert all("María: 'Send a technician to replace the door' by" in o for o in outputs)
    assert "owner agent-1" in outputs[0]
    async with front_office.client() as client:
        assert len(await client.contacts.search(email=email).collect()) == 1


async def test_recording_for_an_unknown_contact_waits_as_asked_then_fails(client: Client) -> None:
    with pytest.raises(errors.FailedPrecondition) as raised:
        await client.interactions.record(
            "00000000-0000-4000-8000-000000000000",
            channel="chat",
            type="inquiry",
            wait_for_contact=0.3,
        )

    assert "not known" in raised.value.message
