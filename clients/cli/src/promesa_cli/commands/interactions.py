"""`promesa log` (an interaction, with the promises made in it) and `promesa rate`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from crm.interactions.v1 import interaction_pb2
from promesa_cli import render
from promesa_cli.session import run, usage, wants_json
from promesa_cli.waiting import record_interaction
from promesa_cli.when import HELP as WHEN_HELP
from promesa_cli.when import parse_when
from promesa_client.interactions import PromiseMade

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]
TYPES = render.choices(interaction_pb2.InteractionType.DESCRIPTOR)
CHANNELS = render.choices(interaction_pb2.Channel.DESCRIPTOR)
DIRECTIONS = render.choices(interaction_pb2.Direction.DESCRIPTOR)
PROMISE_KINDS = render.choices(interaction_pb2.PromiseKind.DESCRIPTOR)
FLAGS = {
    "interaction.contact_id": "CONTACT_ID",
    "interaction.type": "--type",
    "interaction.channel": "--channel",
    "interaction.direction": "--direction",
    "interaction.summary": "--summary",
    "interaction.notes": "--notes",
    "interaction.outcome": "--outcome",
    "interaction.occurred_at": "--at",
    "interaction.promises.text": "--promise",
    "interaction.promises.due_at": "--due",
    "interaction.promises.due_within": "--due",
    "interaction.promises.owner_id": "--promise-owner",
    "interaction.promises.kind": "--promise-kind",
    "satisfaction": "SCORE",
}


def _choice(value: str, allowed: list[str], flag: str) -> str:
    if value.lower() not in allowed:
        usage(f"{value!r} is not one of: {', '.join(allowed)}", flag)
    return value.lower()


def log(
    ctx: typer.Context,
    contact_id: Annotated[str, typer.Argument(help="The contact the touch was with.")],
    type_: Annotated[
        str,
        typer.Option(
            "--type", "-t", help=" | ".join(TYPES), autocompletion=render.completer(TYPES)
        ),
    ],
    channel: Annotated[
        str,
        typer.Option(
            "--channel", "-c", help=" | ".join(CHANNELS), autocompletion=render.completer(CHANNELS)
        ),
    ],
    summary: Annotated[str, typer.Option("--summary", "-s", help="What it was about.")],
    direction: Annotated[
        str | None,
        typer.Option(
            "--direction", help=" | ".join(DIRECTIONS), autocompletion=render.completer(DIRECTIONS)
        ),
    ] = None,
    notes: Annotated[str | None, typer.Option(help="Longer notes.")] = None,
    outcome: Annotated[str | None, typer.Option(help='e.g. "refund agreed".')] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened (default now); " + WHEN_HELP)
    ] = None,
    promise: Annotated[
        list[str] | None,
        typer.Option("--promise", "-p", help="A promise made, in the words used; repeat."),
    ] = None,
    due: Annotated[
        list[str] | None,
        typer.Option("--due", "-d", help="When each --promise is due, in order; " + WHEN_HELP),
    ] = None,
    promise_owner: Annotated[
        str | None, typer.Option(help="Who keeps the promises (default: you).")
    ] = None,
    promise_kind: Annotated[
        str,
        typer.Option(
            help=" | ".join(PROMISE_KINDS), autocompletion=render.completer(PROMISE_KINDS)
        ),
    ] = "other",
    json_output: JsonOpt = False,
) -> None:
    """Log an interaction, with the promises made in it:

    promesa log CONTACT -t complaint -c phone -s "Parcel late" -p "Call back with tracking" -d 2h
    """
    state = wants_json(ctx, json_output)
    zone = state.profile.zone
    promises, dues = promise or [], due or []
    if len(dues) != len(promises):
        usage(f"give one --due per --promise ({len(promises)} promises, {len(dues)} dues)", "--due")
    kind = _choice(promise_kind, PROMISE_KINDS, "--promise-kind").replace("-", "_")
    made = []
    for text, when in zip(promises, dues, strict=True):
        try:
            due_at = parse_when(when, zone)
        except ValueError as exc:
            usage(str(exc), "--due")
        made.append(PromiseMade(text, due_at, owner_id=promise_owner or "", kind=kind))
    fields: dict[str, Any] = {
        "channel": _choice(channel, CHANNELS, "--channel").replace("-", "_"),
        "type": _choice(type_, TYPES, "--type").replace("-", "_"),
        "summary": summary,
        "promises": made,
    }
    if direction:
        fields["direction"] = _choice(direction, DIRECTIONS, "--direction")
    if at:
        try:
            fields["occurred_at"] = parse_when(at, zone)
        except ValueError as exc:
            usage(str(exc), "--at")
    extra = {"notes": notes, "outcome": outcome}
    fields.update({k: v for k, v in extra.items() if v is not None})
    # A contact added a moment ago may not have reached the interactions service yet.
    interaction = run(state, lambda c: record_interaction(c, contact_id, **fields), flags=FLAGS)
    if state.json_output:
        render.print_json(state.out, render.as_dict(interaction))
        return
    state.out.print(f"[bold green]Logged[/] {interaction.id}")
    state.out.print(render.interaction_panel(interaction, zone))


def rate(
    ctx: typer.Context,
    interaction_id: Annotated[str, typer.Argument(help="The interaction's id.")],
    score: Annotated[int, typer.Argument(help="Satisfaction, 1 (poor) to 5 (excellent).")],
    json_output: JsonOpt = False,
) -> None:
    """Record the customer's satisfaction with an interaction (a new rating replaces the old)."""
    state = wants_json(ctx, json_output)
    interaction = run(state, lambda c: c.interactions.rate(interaction_id, score), flags=FLAGS)
    if state.json_output:
        render.print_json(state.out, render.as_dict(interaction))
    else:
        state.out.print(f"[bold green]Rated[/] {interaction.id}: {interaction.satisfaction}/5")
