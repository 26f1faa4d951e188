"""`promesa promises`: mine, overdue, show, and the lifecycle (keep, reassign, renegotiate,
pause, resume, cancel). A promise is named by its id or by the start of it, as the tables show
it, when that start is one of your promises only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.table import Table

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import promise_pb2
from promesa_cli import render
from promesa_cli.config import Profile
from promesa_cli.exitcodes import ExitCode
from promesa_cli.session import Session, fail, run, usage, wants_json
from promesa_cli.when import HELP as WHEN_HELP
from promesa_cli.when import local, parse_span, parse_when
from promesa_client import Client, errors

app = typer.Typer(help="Your promises, and moving them along: keep, reassign, renegotiate, ...")

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]
PromiseId = Annotated[str, typer.Argument(help="The promise's id (or its first 8+ characters).")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the history.")]
Etag = Annotated[
    str | None, typer.Option(help="Change only this version (default: the one just read).")
]
FULL_ID = 36
SHORTEST_PREFIX = 4
FLAGS = {
    "reason": "--reason",
    "new_owner_id": "--to",
    "new_team": "--team",
    "new_due_at": "--due",
    "evidence.note": "--note",
    "evidence.interaction_id": "--interaction",
    "etag": "--etag",
    "customer_agreed": "--customer-agreed",
}


def owner(profile: Profile, json_output: bool) -> str:
    """Who "mine" is; a profile without a user cannot say."""
    if not profile.user:
        fail(
            f"profile {profile.name!r} has no user, so 'mine' means nobody: "
            "`promesa config set user <your id>` or PROMESA_USER",
            ExitCode.CONFIG,
            json_output,
        )
    return profile.user


async def customers(
    client: Client, contact_ids: Iterable[str]
) -> dict[str, contact_pb2.Contact | None]:
    """The contacts behind the promises, read at once. One erased, merged away or outside
    the caller's reach is shown as unknown rather than failing the whole list."""

    async def one(contact_id: str) -> contact_pb2.Contact | None:
        try:
            return await client.contacts.get(contact_id)
        except (errors.NotFound, errors.PermissionDenied):
            return None

    ids = sorted(set(contact_ids))
    found = await asyncio.gather(*(one(i) for i in ids))
    return dict(zip(ids, found, strict=True))


def as_json(
    promise: promise_pb2.Promise, contacts: dict[str, contact_pb2.Contact | None]
) -> dict[str, Any]:
    """The promise's fields, and under "customer" who it was made to and their clock."""
    data = render.as_dict(promise)
    contact = contacts.get(promise.contact_id)
    data["customer"] = {
        "id": promise.contact_id,
        "name": render.name_of(contact) if contact else "",
        "time_zone": contact.time_zone if contact else "",
        "local_time": (
            datetime.now(UTC).astimezone(zone).isoformat(timespec="minutes")
            if contact and (zone := render.contact_zone(contact))
            else ""
        ),
    }
    return data


def _show_list(
    state: Session,
    promises: list[promise_pb2.Promise],
    contacts: dict[str, contact_pb2.Contact | None],
    title: str,
    empty: str,
) -> None:
    if state.json_output:
        render.print_json(state.out, [as_json(p, contacts) for p in promises])
    elif not promises:
        state.out.print(empty)
    else:
        state.out.print(render.promises_table(promises, state.profile.zone, contacts, title))


@app.command()
def mine(
    ctx: typer.Context,
    within: Annotated[
        str | None, typer.Option(help='Only those due within this span, e.g. "8h", "2d".')
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_user: Annotated[
        str | None, typer.Option("--owner", help="Another owner's (supervisors).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Your open promises, due soonest first: due time in your time zone, the customer by
    their preferred name with their local time."""
    state = wants_json(ctx, json_output)
    who = as_user or owner(state.profile, state.json_output)
    due_before = None
    if within:
        span = parse_span(within)
        if span is None:
            usage(f'{within!r} is not a span such as "8h" or "2d"', "--within")
        due_before = datetime.now(UTC) + span

    async def fetch(client: Client) -> tuple[list[Any], dict[str, Any]]:
        found: list[promise_pb2.Promise] = []
        for status in ("open", "waiting_on_customer"):
            pager = client.promises.list(owner_id=who, status=status, due_before=due_before)
            found += await pager.collect(limit)
        found.sort(key=lambda p: (p.due_at.seconds, p.due_at.nanos))
        found = found[:limit]
        return found, await customers(client, (p.contact_id for p in found))

    promises, contacts = run(state, fetch)
    _show_list(state, promises, contacts, f"Open promises of {who}", "No open promises. ")


@app.command()
def overdue(
    ctx: typer.Context,
    team: Annotated[str | None, typer.Option(help="A team's instead of yours.")] = None,
    everyone: Annotated[
        bool, typer.Option("--all", help="Every overdue promise you may see.")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    json_output: JsonOpt = False,
) -> None:
    """Promises past their due time and not kept: yours, your team's or all you supervise."""
    state = wants_json(ctx, json_output)
    who = "" if (team or everyone) else owner(state.profile, state.json_output)

    async def fetch(client: Client) -> tuple[list[Any], dict[str, Any]]:
        pager = client.promises.list(owner_id=who, team=team or "", overdue_only=True)
        found = await pager.collect(limit)
        return found, await customers(client, (p.contact_id for p in found))

    promises, contacts = run(state, fetch)
    title = f"Overdue promises of {who or team or 'everyone'}"
    _show_list(state, promises, contacts, title, "Nothing overdue.")


async def find(client: Client, ref: str, user: str) -> promise_pb2.Promise:
    """The promise `ref` names: an id, or the start of the id of one of `user`'s open
    promises (as the tables show it)."""
    if len(ref) >= FULL_ID or not user:
        return await client.promises.get(ref)
    if len(ref) < SHORTEST_PREFIX:
        raise errors.invalid_argument("id", f"{ref!r}: give at least {SHORTEST_PREFIX} characters")
    matches = []
    for status in ("open", "waiting_on_customer"):
        async for p in client.promises.list(owner_id=user, status=status):
            if p.id.startswith(ref):
                matches.append(p)
    if len(matches) > 1:
        ids = ", ".join(p.id for p in matches)
        raise errors.invalid_argument("id", f"{ref!r} is the start of several promises: {ids}")
    if matches:
        return matches[0]
    return await client.promises.get(ref)


@app.command()
def show(
    ctx: typer.Context,
    promise_id: PromiseId,
    json_output: JsonOpt = False,
) -> None:
    """One promise with its history."""
    state = wants_json(ctx, json_output)
    user = state.profile.user

    async def fetch(client: Client) -> tuple[Any, dict[str, Any]]:
        promise = await find(client, promise_id, user)
        if len(promise.history) == 0:  # a prefix match comes from a list: read it whole
            promise = await client.promises.get(promise.id)
        return promise, await customers(client, [promise.contact_id])

    promise, contacts = run(state, fetch)
    if state.json_output:
        render.print_json(state.out, as_json(promise, contacts))
        return
    zone = state.profile.zone
    state.out.print(render.promise_detail(promise, contacts.get(promise.contact_id), zone))
    history = Table(title="History", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    history.add_column("When", no_wrap=True)
    history.add_column("What", no_wrap=True)
    history.add_column("Who", max_width=14)
    history.add_column("Details", ratio=1)
    for entry in promise.history:
        before, after = _value(entry.from_value, zone), _value(entry.to_value, zone)
        change = f"{before} → {after}" if before and after else after
        details = "\n".join(part for part in (change, entry.reason) if part)
        history.add_row(
            render.when(entry.occurred_at, zone, with_relative=False),
            render.short(promise_pb2.HistoryAction.DESCRIPTOR, entry.action),
            entry.actor,
            details,
        )
    state.out.print(history)


def _value(text: str, zone: ZoneInfo) -> str:
    """A history value; a time in it shown in the agent's zone."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return local(moment, zone) if moment.tzinfo else text


def _change(
    ctx: typer.Context,
    promise_id: str,
    json_output: bool,
    verb: str,
    action: Any,
) -> None:
    """Reads the promise (by id or prefix), applies `action(client, promise)` with its etag
    unless one was given, and shows the result."""
    state = wants_json(ctx, json_output)
    user = state.profile.user

    async def work(client: Client) -> promise_pb2.Promise:
        promise = await find(client, promise_id, user)
        result: promise_pb2.Promise = await action(client, promise)
        return result

    promise = run(state, work, flags=FLAGS)
    if state.json_output:
        render.print_json(state.out, render.as_dict(promise))
    else:
        state.out.print(render.promise_panel(promise, state.profile.zone, verb))


@app.command()
def keep(
    ctx: typer.Context,
    promise_id: PromiseId,
    note: Annotated[str | None, typer.Option("--note", "-n", help="What was done.")] = None,
    interaction: Annotated[
        str | None, typer.Option(help="The interaction in which it was kept.")
    ] = None,
    etag: Etag = None,
    json_output: JsonOpt = False,
) -> None:
    """Mark a promise kept, with evidence."""
    _change(
        ctx,
        promise_id,
        json_output,
        "Kept",
        lambda c, p: c.promises.keep(p, evidence=note, interaction_id=interaction or "", etag=etag),
    )


@app.command()
def reassign(
    ctx: typer.Context,
    promise_id: PromiseId,
    to: Annotated[str, typer.Option("--to", help="The user who takes it over.")],
    reason: Reason,
    team: Annotated[str | None, typer.Option(help="Their team, if it changes.")] = None,
    etag: Etag = None,
    json_output: JsonOpt = False,
) -> None:
    """Hand a promise to someone else."""
    _change(
        ctx,
        promise_id,
        json_output,
        "Reassigned",
        lambda c, p: c.promises.reassign(p, to, reason, new_team=team or "", etag=etag),
    )


@app.command()
def renegotiate(
    ctx: typer.Context,
    promise_id: PromiseId,
    due: Annotated[str, typer.Option("--due", help="The new due time: " + WHEN_HELP)],
    reason: Reason,
    customer_agreed: Annotated[
        bool, typer.Option("--customer-agreed", help="The customer agreed to it.")
    ] = False,
    etag: Etag = None,
    json_output: JsonOpt = False,
) -> None:
    """Move a promise's due time."""
    state = wants_json(ctx, json_output)
    try:
        new_due = parse_when(due, state.profile.zone)
    except ValueError as exc:
        usage(str(exc), "--due")
    _change(
        ctx,
        promise_id,
        json_output,
        "Renegotiated",
        lambda c, p: c.promises.renegotiate(
            p, new_due, reason, customer_agreed=customer_agreed, etag=etag
        ),
    )


@app.command()
def pause(
    ctx: typer.Context,
    promise_id: PromiseId,
    reason: Annotated[str, typer.Option("--reason", "-r", help="What the customer must do.")],
    etag: Etag = None,
    json_output: JsonOpt = False,
) -> None:
    """Stop the clock while waiting on the customer."""
    _change(
        ctx, promise_id, json_output, "Paused", lambda c, p: c.promises.pause(p, reason, etag=etag)
    )


@app.command()
def resume(
    ctx: typer.Context,
    promise_id: PromiseId,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why work resumes.")] = "",
    etag: Etag = None,
    json_output: JsonOpt = False,
) -> None:
    """Restart the clock after a pause (the due time moves by the pause)."""
    _change(
        ctx,
        promise_id,
        json_output,
        "Resumed",
        lambda c, p: c.promises.resume(p, reason, etag=etag),
    )


@app.command()
def cancel(
    ctx: typer.Context,
    promise_id: PromiseId,
    reason: Reason,
    etag: Etag = None,
    json_output: JsonOpt = False,
) -> None:
    """Close a promise that will not be kept."""
    _change(
        ctx,
        promise_id,
        json_output,
        "Cancelled",
        lambda c, p: c.promises.cancel(p, reason, etag=etag),
    )
