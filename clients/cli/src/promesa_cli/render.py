"""Output: JSON for scripts (proto field names, enum value names, RFC 3339 times, every field
present) and Rich renderables for people (short enum names, times in the agent's zone)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from crm.interactions.v1 import interaction_pb2
from promesa_cli.when import local, relative

OPEN_STATUSES = (promise_pb2.PROMISE_STATUS_OPEN, promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER)


def as_dict(message: Message) -> dict[str, Any]:
    """A message as scripts read it: the proto's field names, every field present."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(console: Console, value: Any) -> None:
    # Plain print: Rich would wrap long lines and colour the output of a pipe.
    console.file.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def enum_prefix(enum: EnumDescriptor) -> str:
    """`PromiseStatus` → `PROMISE_STATUS_`."""
    out = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(enum.name))
    return out.upper() + "_"


def short(enum: EnumDescriptor, number: int) -> str:
    """`PRIORITY_URGENT` → "urgent", "in person" for IN_PERSON; "-" when unset."""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    if number == 0:
        return "-"
    return str(value.name).removeprefix(enum_prefix(enum)).lower().replace("_", " ")


def choices(enum: EnumDescriptor) -> list[str]:
    """What a flag accepts: the short names, joined by dashes ("in-person")."""
    prefix = enum_prefix(enum)
    return [
        str(v.name).removeprefix(prefix).lower().replace("_", "-")
        for v in enum.values
        if v.number != 0
    ]


def completer(values: list[str]) -> Callable[[str], list[str]]:
    """Shell completion of a flag's values (Typer's autocompletion)."""

    def complete(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete.lower())]

    return complete


def instant(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def when(stamp: timestamp_pb2.Timestamp, zone: ZoneInfo, with_relative: bool = True) -> str:
    moment = instant(stamp)
    if moment is None:
        return "-"
    text = local(moment, zone)
    return f"{text} ({relative(moment)})" if with_relative else text


def contact_zone(contact: contact_pb2.Contact) -> ZoneInfo | None:
    try:
        return ZoneInfo(contact.time_zone) if contact.time_zone else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def their_time(contact: contact_pb2.Contact | None, now: datetime | None = None) -> str:
    """The customer's clock now ("18:05 Europe/Madrid"), so an agent knows if it is a fit
    hour to call."""
    zone = contact_zone(contact) if contact else None
    if zone is None:
        return "-"
    return (now or datetime.now(UTC)).astimezone(zone).strftime("%a %H:%M")


def name_of(contact: contact_pb2.Contact | None) -> str:
    if contact is None:
        return "?"
    return contact.preferred_name or contact.display_name or "(erased)"


def contact_panel(contact: contact_pb2.Contact, zone: ZoneInfo) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    preferred = f"  (call them {contact.preferred_name})" if contact.preferred_name else ""
    grid.add_row("Name", contact.display_name + preferred)
    grid.add_row("Id", contact.id)
    rows = [
        ("Kind", short(contact_pb2.ContactKind.DESCRIPTOR, contact.kind)),
        ("Emails", ", ".join(contact.emails)),
        ("Phones", ", ".join(contact.phones)),
        ("Team", contact.team),
        ("Owner", contact.owner_id),
        (
            "Time zone",
            f"{contact.time_zone}  (their time {their_time(contact)})" if contact.time_zone else "",
        ),
        ("Prefers", short(contact_pb2.Channel.DESCRIPTOR, contact.preferred_channel)),
        ("Relationship", short(contact_pb2.Relationship.DESCRIPTOR, contact.relationship)),
        ("Status", short(contact_pb2.LifecycleStatus.DESCRIPTOR, contact.status)),
        ("Tags", ", ".join(contact.tags)),
        ("Discreet", "yes" if contact.discreet else ""),
        ("Last touch", when(contact.last_interaction_at, zone)),
        ("Merged into", contact.merged_into_id),
        ("Erased", when(contact.erased_at, zone, with_relative=False)),
        ("Etag", contact.etag),
    ]
    for label, value in rows:
        if value and value not in ("-",):
            grid.add_row(label, value)
    return grid


def contacts_table(contacts: Iterable[contact_pb2.Contact]) -> Table:
    """Each contact's full id under its name: the id is what the other commands take."""
    table = Table(title="Contacts", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Name (preferred) / id", min_width=36)
    table.add_column("Email / phone", overflow="fold")
    table.add_column("Team", no_wrap=True)
    for c in contacts:
        name = Text(c.display_name)
        if c.preferred_name and c.preferred_name != c.display_name:
            name.append(f" ({c.preferred_name})")
        name.append("\n" + c.id, style="dim")
        reach = "\n".join(x for x in (next(iter(c.emails), ""), next(iter(c.phones), "")) if x)
        table.add_row(name, reach, c.team)
    return table


def timeline_table(interactions: Iterable[interaction_pb2.Interaction], zone: ZoneInfo) -> Table:
    """Newest first, each interaction's full id under its summary (for `promesa rate`)."""
    table = Table(title="Timeline", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("When", no_wrap=True)
    table.add_column("What", no_wrap=True)
    table.add_column("Summary / id", ratio=1, min_width=36)
    table.add_column("Sat.", no_wrap=True)
    for i in interactions:
        what = Text(short(interaction_pb2.InteractionType.DESCRIPTOR, i.type))
        what.append("\n" + short(interaction_pb2.Channel.DESCRIPTOR, i.channel), style="dim")
        summary = Text(i.summary)
        summary.append("\n" + i.id, style="dim")
        table.add_row(
            when(i.occurred_at, zone, with_relative=False),
            what,
            summary,
            f"{i.satisfaction}/5" if i.satisfaction else "",
        )
    return table


def interaction_panel(interaction: interaction_pb2.Interaction, zone: ZoneInfo) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Interaction", interaction.id)
    grid.add_row("Contact", interaction.contact_id)
    grid.add_row(
        "What",
        f"{short(interaction_pb2.InteractionType.DESCRIPTOR, interaction.type)} by "
        f"{short(interaction_pb2.Channel.DESCRIPTOR, interaction.channel)}",
    )
    grid.add_row("When", when(interaction.occurred_at, zone))
    grid.add_row("Summary", interaction.summary)
    if interaction.satisfaction:
        grid.add_row("Satisfaction", f"{interaction.satisfaction}/5")
    parts: list[RenderableType] = [grid]
    if interaction.promises:
        promises = Table(title="Promises made", title_justify="left")
        for column in ("Promise", "Due", "Owner", "Id"):
            promises.add_column(column, overflow="fold")
        for p in interaction.promises:
            promises.add_row(p.text, when(p.due_at, zone), p.owner_id, p.id)
        parts.append(promises)
    return Group(*parts)


def promises_table(
    promises: Iterable[promise_pb2.Promise],
    zone: ZoneInfo,
    contacts: Mapping[str, contact_pb2.Contact | None],
    title: str,
) -> Table:
    """Due soon first as the service orders them: the countdown, then the due time in the
    agent's zone; the customer by preferred name with their clock now. Fits 80 columns."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Due", no_wrap=True, min_width=11)
    table.add_column("Customer", min_width=10, max_width=18)
    table.add_column("Promise", ratio=1, min_width=16)
    table.add_column("Pri.", no_wrap=True)
    table.add_column("Id", no_wrap=True)
    now = datetime.now(UTC)
    for p in promises:
        moment = instant(p.due_at)
        due = Text()
        if moment is not None:
            due.append(relative(moment, now), style="bold red" if p.overdue else "bold")
            due.append("\n" + local(moment, zone, now), style="dim")
        status = ""
        if p.status == promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER:
            status = " [waiting]"
        elif p.status not in OPEN_STATUSES:
            status = f" [{short(promise_pb2.PromiseStatus.DESCRIPTOR, p.status)}]"
        contact = contacts.get(p.contact_id)
        customer = Text(name_of(contact))
        there = their_time(contact, now)
        if there != "-":
            customer.append(f"\n{there} there", style="dim")
        table.add_row(
            due,
            customer,
            Text(p.text + status),
            short(promise_pb2.Priority.DESCRIPTOR, p.priority),
            p.id[:8],
        )
    return table


def promise_detail(
    promise: promise_pb2.Promise, contact: contact_pb2.Contact | None, zone: ZoneInfo
) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    status = short(promise_pb2.PromiseStatus.DESCRIPTOR, promise.status)
    if promise.overdue:
        status += " (overdue)"
    rows = [
        ("Promise", promise.text),
        ("Id", promise.id),
        (
            "Customer",
            f"{name_of(contact)}  ({promise.contact_id}, their time {their_time(contact)})",
        ),
        ("Status", status),
        ("Due", when(promise.due_at, zone)),
        ("Owner", f"{promise.owner_id}  (team {promise.team or '-'})"),
        ("Kind", short(promise_pb2.PromiseKind.DESCRIPTOR, promise.kind)),
        ("Channel", short(promise_pb2.Channel.DESCRIPTOR, promise.channel)),
        ("Priority", short(promise_pb2.Priority.DESCRIPTOR, promise.priority)),
        (
            "Kept",
            when(promise.kept_at, zone) + (" on time" if promise.kept_on_time else "")
            if instant(promise.kept_at)
            else "",
        ),
        ("Evidence", promise.evidence.note),
        ("Cancelled", promise.cancel_reason),
        ("Interaction", promise.source_interaction_id),
        ("Etag", promise.etag),
    ]
    for label, value in rows:
        if value and value != "-":
            grid.add_row(label, value)
    return grid


def promise_panel(promise: promise_pb2.Promise, zone: ZoneInfo, verb: str) -> Text:
    status = short(promise_pb2.PromiseStatus.DESCRIPTOR, promise.status)
    return Text.assemble(
        (f"{verb} ", "bold green"),
        (promise.id, "bold"),
        f"  {promise.text!r}\n",
        f"  status {status}, owner {promise.owner_id}, due {when(promise.due_at, zone)}",
    )


def stats_table(rows: Iterable[followup_pb.PromiseStats], by: str) -> Table:
    """Every measure of a row, narrow enough for 80 columns."""
    table = Table(
        title=f"Promise keeping by {by}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column(by.capitalize(), min_width=8, overflow="fold")
    for column in (
        "Made",
        "Kept",
        "On time",
        "Overdue",
        "Canc.",
        "Reneg.",
        "Median",
        "Sat.",
        "Esc.",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            stats_key(row.key, by),
            str(row.made),
            str(row.kept),
            f"{row.kept_on_time_percent:.0f}%" if row.kept else "-",
            str(row.overdue_now),
            str(row.cancelled),
            str(row.renegotiated),
            _span(row.median_time_to_keep.ToTimedelta().total_seconds()) if row.kept else "-",
            f"{row.mean_satisfaction:.1f}" if row.mean_satisfaction else "-",
            str(row.escalated),
        )
    table.caption = "Median: time from made to kept, pauses excluded. Sat.: 1 to 5."
    table.caption_justify = "left"
    return table


def stats_key(key: str, by: str) -> str:
    """ "CHANNEL_PHONE" → "phone"; owners and teams as they are."""
    if by == "channel":
        return key.removeprefix("CHANNEL_").lower().replace("_", " ")
    if by == "priority":
        return key.removeprefix("PRIORITY_").lower()
    return key or "(none)"


def _span(seconds: float) -> str:
    if seconds < 60:
        return "<1m"
    if seconds < 3_600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3_600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def stats_chart(rows: Iterable[followup_pb.PromiseStats], by: str, width: int = 40) -> Table:
    """Per group, a bar of the promises made split into kept on time, kept late, still open
    or cancelled: where promises are kept and where they slip, at a glance."""
    listed = list(rows)
    chart = Table.grid(padding=(0, 1))
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True)
    chart.add_column(justify="right", no_wrap=True)
    most = max((r.made for r in listed), default=0) or 1
    for row in listed:
        on_time = round(row.kept * row.kept_on_time_percent / 100)
        late = row.kept - on_time
        other = max(row.made - row.kept - row.cancelled, 0)
        cells = [(on_time, "green"), (late, "yellow"), (other, "blue"), (row.cancelled, "red")]
        bar = Text()
        for count, colour in cells:
            bar.append("█" * round(count / most * width), style=colour)
        kept = f"{100 * row.kept / row.made:.0f}% kept" if row.made else "-"
        chart.add_row(stats_key(row.key, by)[:18], bar, kept)
    legend = Text.assemble(
        ("█", "green"),
        " kept on time  ",
        ("█", "yellow"),
        " kept late  ",
        ("█", "blue"),
        " open  ",
        ("█", "red"),
        " cancelled",
    )
    chart.add_row("", legend, "")
    return chart
