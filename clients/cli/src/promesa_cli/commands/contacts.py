"""`promesa contacts`: add, show (profile, timeline, open promises), find, edit, merge, erase."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group

from crm.contacts.v1 import contact_pb2
from promesa_cli import render
from promesa_cli.session import Session, run, usage, wants_json
from promesa_client import Client

app = typer.Typer(help="People and organisations: add, show, find, edit, merge, erase.")

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]
KINDS = render.choices(contact_pb2.ContactKind.DESCRIPTOR)
CHANNELS = render.choices(contact_pb2.Channel.DESCRIPTOR)
RELATIONSHIPS = render.choices(contact_pb2.Relationship.DESCRIPTOR)
# The flag that sets each field, so that a field the service refused is named as typed.
FLAGS = {
    "contact.display_name": "--name",
    "contact.preferred_name": "--preferred",
    "contact.emails": "--email",
    "contact.phones": "--phone",
    "contact.time_zone": "--time-zone",
    "contact.kind": "--kind",
    "contact.relationship": "--relationship",
    "contact.team": "--team",
    "contact.owner_id": "--owner",
    "contact.tags": "--tag",
    "contact.preferred_channel": "--prefers",
}


def _choice(value: str | None, allowed: list[str], flag: str) -> str | None:
    if value is not None and value.lower() not in allowed:
        usage(f"{value!r} is not one of: {', '.join(allowed)}", flag)
    return value.lower() if value else None


def _fields(
    *,
    preferred: str | None = None,
    emails: list[str] | None = None,
    phones: list[str] | None = None,
    time_zone: str | None = None,
    kind: str | None = None,
    relationship: str | None = None,
    team: str | None = None,
    owner: str | None = None,
    tags: list[str] | None = None,
    prefers: str | None = None,
    discreet: bool | None = None,
) -> dict[str, Any]:
    """The Contact fields the flags given set (a flag not given is not a field)."""
    fields: dict[str, Any] = {
        "preferred_name": preferred,
        "emails": emails or None,
        "phones": phones or None,
        "time_zone": time_zone,
        "kind": _choice(kind, KINDS, "--kind"),
        "relationship": _choice(relationship, RELATIONSHIPS, "--relationship"),
        "team": team,
        "owner_id": owner,
        "tags": tags or None,
        "preferred_channel": _choice(prefers, CHANNELS, "--prefers"),
        "discreet": discreet,
    }
    return {k: v for k, v in fields.items() if v is not None}


Preferred = Annotated[str | None, typer.Option("--preferred", help="The name they like.")]
Emails = Annotated[list[str] | None, typer.Option("--email", help="Repeat for more.")]
Phones = Annotated[list[str] | None, typer.Option("--phone", help="E.164; repeat for more.")]
TimeZone = Annotated[str | None, typer.Option("--time-zone", help="IANA, e.g. Europe/Madrid.")]
Kind = Annotated[
    str | None,
    typer.Option("--kind", help=" | ".join(KINDS), autocompletion=render.completer(KINDS)),
]
Relation = Annotated[
    str | None,
    typer.Option(
        "--relationship",
        help=" | ".join(RELATIONSHIPS),
        autocompletion=render.completer(RELATIONSHIPS),
    ),
]
Team = Annotated[str | None, typer.Option("--team", help="Default: your team.")]
Owner = Annotated[str | None, typer.Option("--owner", help="Owner's user id.")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="Repeat for more.")]
Prefers = Annotated[
    str | None,
    typer.Option("--prefers", help=" | ".join(CHANNELS), autocompletion=render.completer(CHANNELS)),
]
Discreet = Annotated[
    bool | None, typer.Option("--discreet/--not-discreet", help="No sensitive content.")
]


def _show(state: Session, contact: contact_pb2.Contact, verb: str) -> None:
    if state.json_output:
        render.print_json(state.out, render.as_dict(contact))
        return
    state.out.print(f"[bold green]{verb}[/] {contact.display_name}  [dim]{contact.id}[/]")


@app.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Full name, as it should appear in lists.")],
    preferred: Preferred = None,
    email: Emails = None,
    phone: Phones = None,
    time_zone: TimeZone = None,
    kind: Kind = None,
    relationship: Relation = None,
    team: Team = None,
    owner: Owner = None,
    tag: Tags = None,
    prefers: Prefers = None,
    discreet: Discreet = None,
    json_output: JsonOpt = False,
) -> None:
    """Add a contact (a person unless --kind organisation)."""
    state = wants_json(ctx, json_output)
    fields = _fields(
        preferred=preferred,
        emails=email,
        phones=phone,
        time_zone=time_zone,
        kind=kind,
        relationship=relationship,
        team=team,
        owner=owner,
        tags=tag,
        prefers=prefers,
        discreet=discreet,
    )
    contact = run(state, lambda c: c.contacts.create(name, **fields), flags=FLAGS)
    _show(state, contact, "Added")


@app.command()
def show(
    ctx: typer.Context,
    contact_id: Annotated[str, typer.Argument(help="The contact's id.")],
    limit: Annotated[int, typer.Option(help="Interactions of the timeline to show.")] = 10,
    json_output: JsonOpt = False,
) -> None:
    """A contact's profile, timeline (newest first) and open promises."""
    state = wants_json(ctx, json_output)

    async def fetch(client: Client) -> tuple[Any, list[Any], list[Any]]:
        contact = await client.contacts.get(contact_id)
        timeline = await client.interactions.list(contact_id=contact.id).collect(limit)
        promises = [
            p
            async for p in client.promises.list(contact_id=contact.id)
            if p.status in render.OPEN_STATUSES
        ]
        return contact, timeline, promises

    contact, timeline, promises = run(state, fetch)
    if state.json_output:
        render.print_json(
            state.out,
            {
                "contact": render.as_dict(contact),
                "timeline": [render.as_dict(i) for i in timeline],
                "open_promises": [render.as_dict(p) for p in promises],
            },
        )
        return
    zone = state.profile.zone
    state.out.print(
        Group(
            render.contact_panel(contact, zone),
            render.timeline_table(timeline, zone),
            render.promises_table(promises, zone, {contact.id: contact}, "Open promises"),
        )
    )


@app.command()
def find(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Argument(help="A name prefix, an email (has @) or a phone (+…).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name prefix.")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    phone: Annotated[str | None, typer.Option("--phone")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    json_output: JsonOpt = False,
) -> None:
    """Find contacts by name prefix, email or phone (every criterion given must match)."""
    state = wants_json(ctx, json_output)
    criteria = {"name_prefix": name or "", "email": email or "", "phone": phone or ""}
    if query:
        text = query.strip()
        if "@" in text:
            criteria["email"] = text
        elif text.lstrip("+").replace(" ", "").isdigit():
            criteria["phone"] = text
        else:
            criteria["name_prefix"] = text
    if not any(criteria.values()):
        usage("give a name prefix, an email or a phone", "QUERY")
    found = run(
        state,
        lambda c: c.contacts.search(
            name_prefix=criteria["name_prefix"], email=criteria["email"], phone=criteria["phone"]
        ).collect(limit),
        flags={"name_prefix": "--name", "email": "--email", "phone": "--phone"},
    )
    if state.json_output:
        render.print_json(state.out, [render.as_dict(c) for c in found])
    elif not found:
        state.out.print("No contact matches.")
    else:
        state.out.print(render.contacts_table(found))


@app.command()
def edit(
    ctx: typer.Context,
    contact_id: Annotated[str, typer.Argument(help="The contact's id.")],
    name: Annotated[str | None, typer.Option("--name", help="New full name.")] = None,
    preferred: Preferred = None,
    email: Emails = None,
    phone: Phones = None,
    time_zone: TimeZone = None,
    relationship: Relation = None,
    team: Team = None,
    owner: Owner = None,
    tag: Tags = None,
    prefers: Prefers = None,
    discreet: Discreet = None,
    etag: Annotated[
        str | None, typer.Option(help="Change only this version (else the current one).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Change the fields given, and only those (a list flag replaces the whole list)."""
    state = wants_json(ctx, json_output)
    fields = _fields(
        preferred=preferred,
        emails=email,
        phones=phone,
        time_zone=time_zone,
        relationship=relationship,
        team=team,
        owner=owner,
        tags=tag,
        prefers=prefers,
        discreet=discreet,
    )
    if name is not None:
        fields["display_name"] = name
    if not fields:
        usage("name at least one field to change", "--name/--email/...")
    contact = run(state, lambda c: c.contacts.update(contact_id, etag=etag, **fields), flags=FLAGS)
    _show(state, contact, "Updated")


@app.command()
def merge(
    ctx: typer.Context,
    survivor_id: Annotated[str, typer.Argument(help="The contact that remains.")],
    duplicate_id: Annotated[str, typer.Argument(help="The contact folded into it.")],
    json_output: JsonOpt = False,
) -> None:
    """Fold a duplicate into the survivor (timeline and promises move with it)."""
    state = wants_json(ctx, json_output)
    survivor = run(state, lambda c: c.contacts.merge(survivor_id, duplicate_id))
    _show(state, survivor, f"Merged {duplicate_id} into")


@app.command()
def erase(
    ctx: typer.Context,
    contact_id: Annotated[str, typer.Argument(help="The contact's id.")],
    reason: Annotated[str, typer.Option(help="Why, e.g. the reference of their request.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Erase a person's data in every service, on their request (supervisors)."""
    state = wants_json(ctx, json_output)
    if not yes and not typer.confirm(f"Erase contact {contact_id} everywhere? This is final"):
        raise typer.Abort()
    erased_at = run(state, lambda c: c.contacts.erase(contact_id, reason))
    if state.json_output:
        render.print_json(state.out, {"id": contact_id, "erased_at": erased_at.isoformat()})
    else:
        state.out.print(f"[bold]Erased[/] {contact_id} at {erased_at.isoformat()}")
