"""Who may do what to contacts: the contacts service's authorization table, one function per
rule, each named for the rule it checks (promesa.authorization has the relations).

| RPC            | rule (function)   | who may                                                    |
|----------------|-------------------|------------------------------------------------------------|
| CreateContact  | create_contact    | anyone, in a team they work in; an unnamed team is theirs  |
| GetContact     | read_contact      | agents: their team's and unassigned contacts; supervisors: |
|                |                   | their team's and unassigned (no team: every team's);       |
|                |                   | services: all                                              |
| ListContacts   | visible_teams     | the same scope, applied as a filter (never refused)        |
| SearchContacts | visible_teams     | the same scope, applied as a filter (never refused)        |
| UpdateContact  | update_contact    | the contact's team now, and the one it is moved to         |
| MergeContacts  | merge_contacts    | both contacts' teams                                       |
| EraseContact   | erase_contact     | a supervisor of the contact's team (no team: any), service |
| ListErasures   | list_erasures     | a supervisor (any) or a service                            |

A refusal is PERMISSION_DENIED whose message starts with the rule's name.
"""

from __future__ import annotations

from contacts.domain.model import Contact
from promesa.auth import Identity, Role
from promesa.authorization import in_team, is_supervisor, require

CREATE_CONTACT = (
    "create_contact: a contact is created in a team its creator works in (left unnamed, in "
    "the creator's own team)"
)
READ_CONTACT = (
    "read_contact: agents read their team's contacts and unassigned ones, supervisors their "
    "team's (every team's when they have none)"
)
UPDATE_CONTACT = (
    "update_contact: agents change their team's contacts and unassigned ones, supervisors "
    "their team's, and only into a team they work in"
)
MERGE_CONTACTS = (
    "merge_contacts: both contacts must be the caller's team's (or unassigned); supervisors "
    "with no team merge any"
)
ERASE_CONTACT = (
    "erase_contact: erasing a contact needs a supervisor of its team (a supervisor with no "
    "team: any) or the service role"
)
LIST_ERASURES = "list_erasures: the erasure records are for supervisors and services"


def create_contact(who: Identity, team: str) -> str:
    """The team a new contact lands in: the one named, which must be one the caller works in,
    or else the caller's own (Identity.team, which services do not have)."""
    landing = team or who.team
    require(in_team(who, landing), CREATE_CONTACT)
    return landing


def read_contact(who: Identity, contact: Contact) -> None:
    require(in_team(who, contact.details.team), READ_CONTACT)


def visible_teams(who: Identity) -> tuple[str, ...] | None:
    """The teams whose contacts `who` sees in a list or a search ("" is unassigned); None is
    every team. The same relation as read_contact, as a filter: a list is narrowed, never
    refused."""
    if who.role is Role.SERVICE or (who.role is Role.SUPERVISOR and not who.team):
        return None
    return (who.team, "") if who.team else ("",)


def update_contact(who: Identity, current: Contact, team: str) -> None:
    """`team` is the team the contact has after the update (its own when unchanged)."""
    require(in_team(who, current.details.team) and in_team(who, team), UPDATE_CONTACT)


def merge_contacts(who: Identity, survivor: Contact, duplicate: Contact) -> None:
    allowed = in_team(who, survivor.details.team) and in_team(who, duplicate.details.team)
    require(allowed, MERGE_CONTACTS)


def erase_contact(who: Identity, contact: Contact | None = None) -> None:
    """Checked twice: on the role before anything is read (an agent learns nothing, not even
    whether the id exists), then on the contact's team once it is read."""
    team_ok = contact is None or in_team(who, contact.details.team)
    require(is_supervisor(who) and team_ok, ERASE_CONTACT)


def list_erasures(who: Identity) -> None:
    require(is_supervisor(who), LIST_ERASURES)
