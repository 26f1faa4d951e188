"""Who may do what on the timeline: one function per InteractionsService RPC, named for it.

A touch belongs to its team (`Interaction.details.team`) and to the agent who handled it
(`agent_id`); a contact to its team, as the contacts stream last described it. Agents act
on their team's contacts and touches, and on touches they handled; supervisors on those of the
teams they supervise (all of them when they have no team); the service role on all. Work with
no team is unassigned: anyone's. A refusal is PERMISSION_DENIED naming the rule (`RULES`).
"""

from __future__ import annotations

from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Scope
from promesa.auth import Identity, Role
from promesa.authorization import in_team, require

# The table, RPC by RPC; the README shows it.
RULES = {
    "RecordInteraction": (
        "record_interaction: a touch is recorded for a contact of the caller's team or an"
        " unassigned one (supervisors: of a team they supervise; services: any)"
    ),
    "GetInteraction": (
        "get_interaction: a touch is read by its team or the agent who handled it"
        " (supervisors: of a team they supervise; services: any)"
    ),
    "ListInteractions": "list_interactions: a timeline lists only the touches the caller may get",
    "RateInteraction": (
        "rate_interaction: a touch is rated by its team or the agent who handled it"
        " (supervisors: of a team they supervise; services: any)"
    ),
    "AmendInteraction": (
        "amend_interaction: a touch is amended by its team or the agent who handled it"
        " (supervisors: of a team they supervise; services: any)"
    ),
}


def record_interaction(who: Identity, contact: KnownContact) -> None:
    """The contact is the one the touch lands on: the survivor when the caller named a
    merged-away contact."""
    require(in_team(who, contact.team), RULES["RecordInteraction"])


def get_interaction(who: Identity, interaction: Interaction) -> None:
    """Also what a retried RecordInteraction is answered under: its answer is the touch."""
    require(_may_act_on(who, interaction), RULES["GetInteraction"])


def list_interactions(who: Identity) -> Scope | None:
    """A timeline is not refused: it is narrowed to what the caller may get (None: all), so
    an agent sees a contact's touches by their team and their own, and no others."""
    if who.role is Role.SERVICE or (who.role is Role.SUPERVISOR and not who.team):
        return None
    return Scope(team=who.team, agent_id=who.subject)


def rate_interaction(who: Identity, interaction: Interaction) -> None:
    require(_may_act_on(who, interaction), RULES["RateInteraction"])


def amend_interaction(who: Identity, interaction: Interaction) -> None:
    require(_may_act_on(who, interaction), RULES["AmendInteraction"])


def _may_act_on(who: Identity, interaction: Interaction) -> bool:
    """The relation every rule on an existing touch uses, and the one `Scope` queries."""
    details = interaction.details
    return in_team(who, details.team) or details.agent_id == who.subject
