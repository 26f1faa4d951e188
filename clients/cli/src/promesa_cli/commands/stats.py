"""`promesa stats`: how well promises are kept, per owner, team, channel or priority, as a
table and as a bar chart in the terminal."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from promesa_cli import render
from promesa_cli.session import run, usage, wants_json
from promesa_cli.when import parse_span, parse_when


class By(StrEnum):
    owner = "owner"
    team = "team"
    channel = "channel"
    priority = "priority"
    all = "all"


def _moment(text: str | None, zone: ZoneInfo, flag: str) -> datetime | None:
    """A window bound: a span counts back from now ("30d" = 30 days ago), else a time."""
    if not text:
        return None
    span = parse_span(text)
    if span is not None:
        return datetime.now(UTC) - span
    try:
        return parse_when(text, zone)
    except ValueError as exc:
        usage(str(exc), flag)


def stats(
    ctx: typer.Context,
    by: Annotated[By, typer.Option("--by", "-b", help="How to group the rows.")] = By.owner,
    since: Annotated[
        str | None, typer.Option(help='Promises made since: "30d" (ago) or a date.')
    ] = None,
    until: Annotated[str | None, typer.Option(help="Promises made before this time.")] = None,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="The bar chart.")] = True,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")] = False,
) -> None:
    """Promise keeping: made, kept, on time, overdue, cancelled, renegotiated, time to keep,
    satisfaction, escalations (supervisors see their teams, agents their own)."""
    state = wants_json(ctx, json_output)
    zone = state.profile.zone
    start = _moment(since, zone, "--since")
    end = _moment(until, zone, "--until")
    rows = run(
        state,
        lambda c: c.promises.stats(by.value, since=start, until=end),
        flags={"window_start_at": "--since", "window_end_at": "--until", "grouping": "--by"},
    )
    if state.json_output:
        render.print_json(state.out, [render.as_dict(r) for r in rows])
        return
    if not rows:
        state.out.print("No promises in that window.")
        return
    state.out.print(render.stats_table(rows, by.value))
    if chart:
        state.out.print(render.stats_chart(rows, by.value))
