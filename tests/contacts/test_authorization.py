"""The contacts authorization table, row by row, allowed and refused (authorization.py).

The rules are checked through the use cases, over a real SQLite store; the last tests show
them over gRPC, with tokens that carry teams: PERMISSION_DENIED naming the rule."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from contacts import authorization
from contacts.domain.model import Contact, ContactDetails, ContactDraft, ContactKind
from contacts.ports import ContactFilter
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from promesa.auth import Identity, Role
from promesa.errors import PermissionDeniedError
from tests.contacts.conftest import (
    LISBON_AGENT_TOKEN,
    MADRID_SUPERVISOR_TOKEN,
    TEAMLESS_AGENT_TOKEN,
    ContactsDesk,
    RunningContacts,
)
from tests.contacts.test_contacts_api import a_person, create
from tests.support import AGENT_TOKEN, SERVICE_TOKEN, SUPERVISOR_TOKEN, bearer

ANA = Identity("agent-ana", Role.AGENT, "madrid")
LEO = Identity("agent-leo", Role.AGENT, "lisbon")
NAT = Identity("agent-nat", Role.AGENT)  # an agent with no team
MIA = Identity("sup-mia", Role.SUPERVISOR, "madrid")
SAM = Identity("sup-sam", Role.SUPERVISOR)  # a supervisor with no team: of every team
SVC = Identity("svc-followup", Role.SERVICE)
CALLERS = {c.subject: c for c in (ANA, LEO, NAT, MIA, SAM, SVC)}
TEAMS = ("madrid", "lisbon", "")  # "" is an unassigned contact


def draft(name: str, team: str = "") -> ContactDraft:
    details = ContactDetails(kind=ContactKind.PERSON, display_name=name, team=team)
    return ContactDraft(ContactKind.PERSON, details)


async def one_per_team(desk: ContactsDesk) -> dict[str, Contact]:
    """A contact of each team and an unassigned one, all named "Team …", made by a service."""
    return {
        team: await desk.commands.create(draft(f"Team {team or 'none'}", team), "", SVC)
        for team in TEAMS
    }


def refused_by(rule: str) -> pytest.RaisesExc[PermissionDeniedError]:
    """PERMISSION_DENIED whose message starts with the rule's name."""
    name = rule.split(":")[0]
    return pytest.raises(PermissionDeniedError, match=f"^{name}: ")


# --- GetContact: read_contact ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "team", "allowed"),
    [
        ("agent-ana", "madrid", True),
        ("agent-ana", "", True),
        ("agent-ana", "lisbon", False),
        ("agent-nat", "", True),
        ("agent-nat", "madrid", False),
        ("sup-mia", "madrid", True),
        ("sup-mia", "", True),
        ("sup-mia", "lisbon", False),
        ("sup-sam", "lisbon", True),
        ("svc-followup", "lisbon", True),
    ],
)
async def test_get_contact_is_for_its_team_and_for_unassigned_contacts(
    contacts_desk: ContactsDesk, caller: str, team: str, allowed: bool
) -> None:
    contact = (await one_per_team(contacts_desk))[team]
    who = CALLERS[caller]
    if allowed:
        assert (await contacts_desk.queries.get(contact.id, who)).id == contact.id
    else:
        with refused_by(authorization.READ_CONTACT):
            await contacts_desk.queries.get(contact.id, who)


# --- ListContacts and SearchContacts: visible_teams (a filter, never a refusal) -----------------

VISIBLE = [
    ("agent-ana", {"madrid", ""}),
    ("agent-leo", {"lisbon", ""}),
    ("agent-nat", {""}),
    ("sup-mia", {"madrid", ""}),
    ("sup-sam", {"madrid", "lisbon", ""}),
    ("svc-followup", {"madrid", "lisbon", ""}),
]


@pytest.mark.parametrize(("caller", "teams"), VISIBLE)
async def test_list_contacts_holds_only_the_teams_the_caller_sees(
    contacts_desk: ContactsDesk, caller: str, teams: set[str]
) -> None:
    contacts = await one_per_team(contacts_desk)
    page = await contacts_desk.queries.list(ContactFilter(), 0, "", CALLERS[caller])
    assert {c.id for c in page.items} == {contacts[t].id for t in teams}


@pytest.mark.parametrize(("caller", "teams"), VISIBLE)
async def test_search_contacts_finds_only_in_the_teams_the_caller_sees(
    contacts_desk: ContactsDesk, caller: str, teams: set[str]
) -> None:
    contacts = await one_per_team(contacts_desk)
    page = await contacts_desk.queries.search("team", "", "", 0, "", CALLERS[caller])
    assert {c.id for c in page.items} == {contacts[t].id for t in teams}


async def test_asking_for_another_teams_contacts_gets_an_empty_page_not_a_refusal(
    contacts_desk: ContactsDesk,
) -> None:
    await one_per_team(contacts_desk)
    page = await contacts_desk.queries.list(ContactFilter(team="lisbon"), 0, "", ANA)
    assert list(page.items) == []


async def test_a_page_token_pages_within_the_callers_scope(contacts_desk: ContactsDesk) -> None:
    for i in range(3):
        for team in TEAMS:
            await contacts_desk.commands.create(draft(f"Page {team} {i}", team), "", SVC)
    seen: list[Contact] = []
    token = ""
    while True:
        page = await contacts_desk.queries.list(ContactFilter(), 2, token, ANA)
        seen.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 6 and {c.details.team for c in seen} == {"madrid", ""}


# --- CreateContact: create_contact -------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "named", "lands_in"),
    [
        ("agent-ana", "", "madrid"),
        ("agent-ana", "madrid", "madrid"),
        ("agent-ana", "lisbon", None),
        ("agent-nat", "", ""),
        ("agent-nat", "madrid", None),
        ("sup-mia", "", "madrid"),
        ("sup-mia", "lisbon", None),
        ("sup-sam", "lisbon", "lisbon"),
        ("sup-sam", "", ""),
        ("svc-followup", "lisbon", "lisbon"),
        ("svc-followup", "", ""),
    ],
)
async def test_a_new_contact_lands_in_the_team_named_or_the_creators_own(
    contacts_desk: ContactsDesk, caller: str, named: str, lands_in: str | None
) -> None:
    who = CALLERS[caller]
    if lands_in is None:
        with refused_by(authorization.CREATE_CONTACT):
            await contacts_desk.commands.create(draft("New", named), "", who)
        assert await contacts_desk.store.list(ContactFilter(), None, 10) == []
    else:
        created = await contacts_desk.commands.create(draft("New", named), "", who)
        assert created.details.team == lands_in


async def test_a_retried_create_is_answered_only_to_whom_may_read_its_contact(
    contacts_desk: ContactsDesk,
) -> None:
    first = await contacts_desk.commands.create(draft("Once"), "req-once", ANA)
    again = await contacts_desk.commands.create(draft("Once"), "req-once", MIA)
    assert again.id == first.id
    with refused_by(authorization.READ_CONTACT):
        await contacts_desk.commands.create(draft("Once"), "req-once", LEO)


# --- UpdateContact: update_contact -------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "team", "moved_to", "allowed"),
    [
        ("agent-ana", "madrid", None, True),
        ("agent-ana", "", None, True),
        ("agent-ana", "lisbon", None, False),
        ("agent-ana", "madrid", "lisbon", False),
        ("agent-ana", "madrid", "", True),
        ("agent-ana", "", "madrid", True),
        ("agent-nat", "madrid", None, False),
        ("sup-mia", "madrid", None, True),
        ("sup-mia", "lisbon", None, False),
        ("sup-mia", "madrid", "lisbon", False),
        ("sup-sam", "lisbon", "madrid", True),
        ("svc-followup", "lisbon", None, True),
    ],
)
async def test_update_contact_is_for_its_team_and_only_into_the_callers_team(
    contacts_desk: ContactsDesk, caller: str, team: str, moved_to: str | None, allowed: bool
) -> None:
    contact = (await one_per_team(contacts_desk))[team]
    sent = ContactDetails(preferred_name="Pat", team=moved_to or "")
    paths = ["preferred_name", "team"] if moved_to is not None else ["preferred_name"]

    async def update() -> Contact:
        return await contacts_desk.commands.update(
            contact.id, "", ContactDraft(None, sent), paths, CALLERS[caller]
        )

    if allowed:
        updated = await update()
        assert updated.details.preferred_name == "Pat"
        assert updated.details.team == (team if moved_to is None else moved_to)
    else:
        with refused_by(authorization.UPDATE_CONTACT):
            await update()
        assert await contacts_desk.store.get(contact.id) == contact


# --- MergeContacts: merge_contacts (both contacts) ---------------------------------------------


@pytest.mark.parametrize(
    ("caller", "survivor_team", "duplicate_team", "allowed"),
    [
        ("agent-ana", "madrid", "madrid", True),
        ("agent-ana", "madrid", "", True),
        ("agent-ana", "madrid", "lisbon", False),
        ("agent-ana", "lisbon", "madrid", False),
        ("agent-nat", "", "madrid", False),
        ("sup-mia", "", "madrid", True),
        ("sup-mia", "madrid", "lisbon", False),
        ("sup-sam", "madrid", "lisbon", True),
        ("svc-followup", "lisbon", "madrid", True),
    ],
)
async def test_merge_contacts_needs_both_contacts_in_the_callers_reach(
    contacts_desk: ContactsDesk,
    caller: str,
    survivor_team: str,
    duplicate_team: str,
    allowed: bool,
) -> None:
    c = contacts_desk.commands
    survivor = await c.create(draft("Survivor", survivor_team), "", SVC)
    duplicate = await c.create(draft("Duplicate", duplicate_team), "", SVC)
    if allowed:
        merged = await c.merge(survivor.id, duplicate.id, "", CALLERS[caller])
        assert merged.id == survivor.id
    else:
        with refused_by(authorization.MERGE_CONTACTS):
            await c.merge(survivor.id, duplicate.id, "", CALLERS[caller])
        assert await contacts_desk.store.get(duplicate.id) == duplicate


# --- EraseContact: erase_contact ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "team", "allowed"),
    [
        ("agent-ana", "madrid", False),
        ("agent-ana", "", False),
        ("agent-nat", "", False),
        ("sup-mia", "madrid", True),
        ("sup-mia", "", True),
        ("sup-mia", "lisbon", False),
        ("sup-sam", "lisbon", True),
        ("svc-followup", "lisbon", True),
    ],
)
async def test_erase_contact_needs_a_supervisor_of_its_team_or_a_service(
    contacts_desk: ContactsDesk, caller: str, team: str, allowed: bool
) -> None:
    contact = (await one_per_team(contacts_desk))[team]
    if allowed:
        await contacts_desk.commands.erase(contact.id, "ticket 42", CALLERS[caller])
        erased = await contacts_desk.store.get(contact.id)
        assert erased is not None and erased.erased_at is not None
    else:
        with refused_by(authorization.ERASE_CONTACT):
            await contacts_desk.commands.erase(contact.id, "ticket 42", CALLERS[caller])
        assert await contacts_desk.store.get(contact.id) == contact
        assert await contacts_desk.store.erasure(contact.id) is None


async def test_an_agent_asking_to_erase_learns_nothing_not_even_whether_the_id_exists(
    contacts_desk: ContactsDesk,
) -> None:
    with refused_by(authorization.ERASE_CONTACT):
        await contacts_desk.commands.erase("no-such-contact", "", ANA)


# --- ListErasures: list_erasures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "allowed"),
    [
        ("agent-ana", False),
        ("agent-nat", False),
        ("sup-mia", True),
        ("sup-sam", True),
        ("svc-followup", True),
    ],
)
async def test_list_erasures_is_for_supervisors_and_services(
    contacts_desk: ContactsDesk, caller: str, allowed: bool
) -> None:
    contact = (await one_per_team(contacts_desk))["lisbon"]
    await contacts_desk.commands.erase(contact.id, "ticket 7", SAM)
    if allowed:
        page = await contacts_desk.queries.erasures(0, "", CALLERS[caller])
        assert [r.contact_id for r in page.items] == [contact.id]
    else:
        with refused_by(authorization.LIST_ERASURES):
            await contacts_desk.queries.erasures(0, "", CALLERS[caller])


# --- over gRPC: tokens carry teams; a refusal is PERMISSION_DENIED naming the rule -------------


async def denied(call: Awaitable[object]) -> str:
    """The details of the PERMISSION_DENIED a call ends in."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return caught.value.details() or ""


async def test_over_grpc_each_rpc_refuses_outside_the_callers_team_naming_the_rule(
    contacts_service: RunningContacts,
) -> None:
    stub = contacts_service.stub
    # Given a contact of madrid, made by agent Ana (token team madrid),
    mine = await create(contacts_service, a_person(emails=["mine@example.com"], team=""))
    assert mine.team == "madrid"
    other = await create(contacts_service, a_person(emails=["other@example.com"]))
    lisbon = bearer(LISBON_AGENT_TOKEN)
    # then a lisbon agent may not read, change, merge or erase it, nor create in madrid,
    calls: dict[str, Awaitable[object]] = {
        "read_contact": stub.GetContact(contacts_pb.GetContactRequest(id=mine.id), metadata=lisbon),
        "update_contact": stub.UpdateContact(
            contacts_pb.UpdateContactRequest(
                contact=contact_pb2.Contact(id=mine.id, preferred_name="X"),
                update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"]),
            ),
            metadata=lisbon,
        ),
        "merge_contacts": stub.MergeContacts(
            contacts_pb.MergeContactsRequest(survivor_id=mine.id, duplicate_id=other.id),
            metadata=lisbon,
        ),
        "erase_contact": stub.EraseContact(
            contacts_pb.EraseContactRequest(id=mine.id), metadata=lisbon
        ),
        "create_contact": stub.CreateContact(
            contacts_pb.CreateContactRequest(
                contact=a_person(emails=["new@example.com"], team="madrid")
            ),
            metadata=lisbon,
        ),
        "list_erasures": stub.ListErasures(contacts_pb.ListErasuresRequest(), metadata=lisbon),
    }
    for rule, call in calls.items():
        assert (await denied(call)).startswith(f"{rule}: "), rule
    # and lists it nowhere.
    listed = await stub.ListContacts(contacts_pb.ListContactsRequest(), metadata=lisbon)
    found = await stub.SearchContacts(
        contacts_pb.SearchContactsRequest(email="mine@example.com"), metadata=lisbon
    )
    assert list(listed.contacts) == [] and list(found.contacts) == []


async def test_over_grpc_tokens_with_teams_see_their_own_and_unassigned_contacts(
    contacts_service: RunningContacts,
) -> None:
    stub = contacts_service.stub
    madrid = await create(contacts_service, a_person(emails=["m@example.com"]))
    lisbon = await create(
        contacts_service, a_person(emails=["l@example.com"], team="lisbon"), token=SERVICE_TOKEN
    )
    unassigned = await create(
        contacts_service, a_person(emails=["u@example.com"], team=""), token=SERVICE_TOKEN
    )
    expected = {
        AGENT_TOKEN: {madrid.id, unassigned.id},
        LISBON_AGENT_TOKEN: {lisbon.id, unassigned.id},
        TEAMLESS_AGENT_TOKEN: {unassigned.id},
        MADRID_SUPERVISOR_TOKEN: {madrid.id, unassigned.id},
        SUPERVISOR_TOKEN: {madrid.id, lisbon.id, unassigned.id},
        SERVICE_TOKEN: {madrid.id, lisbon.id, unassigned.id},
    }
    for token, ids in expected.items():
        page = await stub.ListContacts(contacts_pb.ListContactsRequest(), metadata=bearer(token))
        assert {c.id for c in page.contacts} == ids, token


async def test_over_grpc_a_team_supervisor_erases_in_their_team_only(
    contacts_service: RunningContacts,
) -> None:
    stub = contacts_service.stub
    madrid = await create(contacts_service, a_person(emails=["m@example.com"]))
    lisbon = await create(
        contacts_service, a_person(emails=["l@example.com"], team="lisbon"), token=SERVICE_TOKEN
    )
    mia = bearer(MADRID_SUPERVISOR_TOKEN)
    details = await denied(
        stub.EraseContact(contacts_pb.EraseContactRequest(id=lisbon.id), metadata=mia)
    )
    assert details.startswith("erase_contact: ")
    erased = await stub.EraseContact(
        contacts_pb.EraseContactRequest(id=madrid.id, reason="ticket 9"), metadata=mia
    )
    assert erased.HasField("erased_at")
