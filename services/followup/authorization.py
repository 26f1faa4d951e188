"""Who may do what to promises: one function per FollowupService RPC, named for it.

A promise belongs to its owner and to its team (`Promise.team`): agents act on the promises
they own and read their team's; supervisors act on and read the promises of the team they
supervise (every team when they have none); the service role acts on all. Work with no team
is unassigned: anyone may read it, its owner and the supervisors act on it. A user's reminders
are theirs alone. A refusal is PERMISSION_DENIED whose message starts with the rule's name
(`RULES`, which the README shows as the follow-up table).
"""

from __future__ import annotations

from dataclasses import replace

from followup.domain.model import Promise
from followup.domain.reminders import ReminderDelivery
from followup.ports import PromiseFilter
from promesa.auth import Identity, Role
from promesa.authorization import in_team, owns_or_supervises, require

_ACT = "by its owner or a supervisor of its team (no team: any supervisor); services: any"

# The table, RPC by RPC.
RULES = {
    "CreatePromise": (
        "create_promise: agents make promises in their own team (owned by themselves or a"
        " teammate) or unassigned ones they own; supervisors in a team they supervise;"
        " services: any. An unnamed team is the caller's own"
    ),
    "GetPromise": (
        "get_promise: a promise is read by its owner and its team (supervisors: a team they"
        " supervise; services: any); an unassigned one by anyone"
    ),
    "ListPromises": (
        "list_promises: agents list their own promises (owner_id=themselves) or their team's;"
        " supervisors their team's (no team: every team's); with no owner or team named, the"
        " list is narrowed to the caller's team (no team: their own)"
    ),
    "KeepPromise": f"keep_promise: a promise is kept {_ACT}",
    "ReassignPromise": f"reassign_promise: a promise is handed over {_ACT}",
    "RenegotiateDueDate": f"renegotiate_due_date: a due time is moved {_ACT}",
    "PausePromise": f"pause_promise: a promise is paused {_ACT}",
    "ResumePromise": f"resume_promise: a promise is resumed {_ACT}",
    "CancelPromise": f"cancel_promise: a promise is cancelled {_ACT}",
    "ConfirmByCustomer": f"confirm_by_customer: a customer's confirmation is recorded {_ACT}",
    "ListReminderDeliveries": (
        "list_reminder_deliveries: deliveries of the promises the caller may read, and those"
        " addressed to or scheduled for the caller; naming a promise needs get_promise"
    ),
    "GetPromiseStats": (
        "get_promise_stats: counted over the promises the caller may read: an agent's team's"
        " (and their own), a supervisor's team's; across teams needs a supervisor with no team"
        " or a service"
    ),
    "ListServiceLevelBreaches": (
        "list_service_level_breaches: judged over the promises the caller may read, as statistics"
        " are (get_promise_stats)"
    ),
    "StreamReminders": (
        "stream_reminders: a user's reminders are streamed to that user only (and to services)"
    ),
}


def create_promise(who: Identity, owner_id: str, team: str) -> str:
    """The team the new promise lands in: the one named, else the caller's own (services have
    none). An agent makes a promise for a teammate only within their team; an unassigned one
    only for themselves (anyone could make work for anyone else otherwise)."""
    landing = team or who.team
    allowed = in_team(who, landing)
    if who.role is Role.AGENT:
        allowed = allowed and (owner_id == who.subject or bool(landing))
    require(allowed, RULES["CreatePromise"])
    return landing


def unscoped(who: Identity) -> bool:
    """Nothing is narrowed for a service or a supervisor of every team: a query skips the
    lookups a narrowing needs."""
    return who.role is Role.SERVICE or (who.role is Role.SUPERVISOR and not who.team)


def may_read(who: Identity, p: Promise) -> bool:
    """The read relation: what get, list, deliveries and statistics are scoped by."""
    return p.owner_id == who.subject or in_team(who, p.team)


def get_promise(who: Identity, p: Promise) -> None:
    """Also what a retried CreatePromise is answered under: its answer is the promise."""
    require(may_read(who, p), RULES["GetPromise"])


def list_promises(who: Identity, f: PromiseFilter) -> PromiseFilter:
    """The filter narrowed to what the caller may read. Never refused for what it leaves out;
    refused when it names a team the caller does not belong to (other than for their own
    promises), or another owner when the caller has no team to read them through."""
    if unscoped(who) or f.owner_id == who.subject:
        return f
    if f.team:
        require(in_team(who, f.team), RULES["ListPromises"])
        return f
    if who.team:
        return replace(f, team=who.team)
    require(not f.owner_id, RULES["ListPromises"])
    return replace(f, owner_id=who.subject)


def _acts_on(who: Identity, p: Promise) -> bool:
    return owns_or_supervises(who, p.owner_id, p.team)


def keep_promise(who: Identity, p: Promise) -> None:
    require(_acts_on(who, p), RULES["KeepPromise"])


def reassign_promise(who: Identity, p: Promise) -> None:
    """Whoever may act on the promise hands it to anyone, in any team: a handoff is how a
    customer reaches the one who can help, and the runaround escalation watches it."""
    require(_acts_on(who, p), RULES["ReassignPromise"])


def renegotiate_due_date(who: Identity, p: Promise) -> None:
    require(_acts_on(who, p), RULES["RenegotiateDueDate"])


def pause_promise(who: Identity, p: Promise) -> None:
    require(_acts_on(who, p), RULES["PausePromise"])


def resume_promise(who: Identity, p: Promise) -> None:
    require(_acts_on(who, p), RULES["ResumePromise"])


def cancel_promise(who: Identity, p: Promise) -> None:
    require(_acts_on(who, p), RULES["CancelPromise"])


def confirm_by_customer(who: Identity, p: Promise) -> None:
    require(_acts_on(who, p), RULES["ConfirmByCustomer"])


def list_reminder_deliveries(who: Identity, promise: Promise | None) -> None:
    """Naming a promise: the caller must be able to read it (a missing one lists nothing)."""
    if promise is not None:
        require(may_read(who, promise), RULES["ListReminderDeliveries"])


def delivery_visible(who: Identity, d: ReminderDelivery, promise: Promise | None) -> bool:
    """A delivery listed to the caller: addressed to them, scheduled while they owned the
    promise, or of a promise they may read now."""
    if unscoped(who) or who.subject in (d.recipient_id, d.owner_id):
        return True
    return promise is not None and may_read(who, promise)


def get_promise_stats(who: Identity, p: Promise) -> bool:
    """Whether the promise counts in the caller's statistics: never refused, narrowed."""
    return may_read(who, p)


def list_service_level_breaches(who: Identity, p: Promise) -> bool:
    """Whether the promise is looked at for the caller's breaches: never refused, narrowed."""
    return may_read(who, p)


def stream_reminders(who: Identity, user_id: str) -> None:
    """Reminders are addressed to a person (an escalation to a supervisor): nobody streams
    another user's, not even their supervisor, who reads the team's work with ListPromises
    and ListReminderDeliveries instead."""
    require(who.role is Role.SERVICE or user_id == who.subject, RULES["StreamReminders"])
