"""`promesa demo`: a realistic small data set in a running system (Spanish and English names,
two teams, every usual channel), then one promise followed from made to reminded (a real
AT_DUE reminder from StreamReminders) to kept, with a progress display.

Contacts are created with fixed request ids, so a second run finds the same people instead of
making duplicates; their interactions and promises are new each run (due times are relative to
now), as another day at the desk would add."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import promise_pb2, reminder_pb2
from promesa_cli import render
from promesa_cli.config import Profile
from promesa_cli.session import run, usage, wants_json
from promesa_cli.waiting import record_interaction, wait_for_promise
from promesa_cli.when import local
from promesa_client import Client, errors
from promesa_client.interactions import PromiseMade

T = TypeVar("T")
# Development identities (devtools/run.py): a colleague in the other team seeds its share.
DEV_COLLEAGUE = {"dev-agent-b-token": "dev-agent-token"}
DEFAULT_COLLEAGUE_TOKEN = "dev-agent-b-token"
DEV_TOKENS = ("dev-agent-token", "dev-agent-b-token", "dev-supervisor-token", "dev-lead-token")
NAMESPACE = uuid.UUID("1f6f2f0e-5d6e-4c1a-9a53-70726f6d6573")  # fixed: the seed's request ids


@dataclass(frozen=True)
class Person:
    display_name: str
    preferred_name: str
    email: str
    phone: str
    time_zone: str
    prefers: str


@dataclass(frozen=True)
class Touch:
    """An interaction with one of the people, and the promises made in it (text, due in)."""

    person: int
    channel: str
    type: str
    summary: str
    promises: tuple[tuple[str, timedelta], ...] = ()
    keep: bool = False  # keep its promises once they appear: the stats then show kept ones
    purchase: tuple[int, str] | None = None  # amount in minor units, currency


MINE = (
    Person(
        "Lucía Fernández García",
        "Lucía",
        "lucia.fernandez@example.es",
        "+34612345678",
        "Europe/Madrid",
        "phone",
    ),
    Person(
        "Oliver Bennett",
        "Olly",
        "oliver.bennett@example.co.uk",
        "+447911123456",
        "Europe/London",
        "email",
    ),
    Person(
        "Javier Moreno Ruiz",
        "Javi",
        "javier.moreno@example.es",
        "+34622334455",
        "Atlantic/Canary",
        "chat",
    ),
    Person(
        "Amelia Clarke",
        "Amelia",
        "amelia.clarke@example.com",
        "+12125550147",
        "America/New_York",
        "email",
    ),
)
COLLEAGUES = (
    Person(
        "María José Ortega",
        "Majo",
        "mj.ortega@example.mx",
        "+525512345678",
        "America/Mexico_City",
        "social",
    ),
    Person(
        "Harry Whitfield",
        "Harry",
        "harry.whitfield@example.com.au",
        "+61491570156",
        "Australia/Sydney",
        "phone",
    ),
    Person(
        "Carmen Núñez Vidal",
        "Carmen",
        "carmen.nunez@example.es",
        "+34633445566",
        "Europe/Madrid",
        "in_person",
    ),
    Person(
        "Grace O'Connor",
        "Grace",
        "grace.oconnor@example.ie",
        "+353851234567",
        "Europe/Dublin",
        "web",
    ),
)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
MY_TOUCHES = (
    Touch(
        0, "phone", "complaint", "Parcel arrived damaged", (("Send a replacement kettle", 2 * DAY),)
    ),
    Touch(
        1,
        "phone",
        "inquiry",
        "Asked how long the warranty lasts",
        (("Send Olly the warranty terms", 30 * HOUR),),
    ),
    Touch(
        1,
        "email",
        "request",
        "Wants the invoice in his company's name",
        (("Email the corrected invoice", 5 * HOUR),),
        keep=True,
    ),
    Touch(
        2,
        "chat",
        "inquiry",
        "Asked whether the blue model is back in stock",
        (("Tell Javi when the blue model arrives", 3 * DAY),),
    ),
    Touch(
        3,
        "phone",
        "dispute",
        "Charged twice for one order",
        (("Refund the duplicate charge", 1 * DAY), ("Call back to confirm the refund", 26 * HOUR)),
    ),
    Touch(0, "web", "purchase", "Bought the garden set", purchase=(34_900, "EUR")),
    Touch(1, "in_person", "praise", "Thanked the shop for the quick exchange"),
)
COLLEAGUE_TOUCHES = (
    Touch(
        0,
        "social",
        "complaint",
        "Post about a late delivery",
        (("Call Majo with the new delivery date", 4 * HOUR),),
        keep=True,
    ),
    Touch(
        1,
        "phone",
        "request",
        "Needs an installer on site",
        (("Book the installer visit", 2 * DAY),),
    ),
    Touch(
        2,
        "in_person",
        "offer",
        "Offered the loyalty card",
        (("Post the loyalty card", 3 * DAY),),
        keep=True,
    ),
    Touch(3, "web", "inquiry", "Asked about opening hours at Christmas"),
)
SHORT_FIRST = 2  # people per side in --short


@dataclass
class Seeded:
    contacts: list[contact_pb2.Contact] = field(default_factory=list)
    interactions: int = 0
    promises: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    teams: set[str] = field(default_factory=set)


def _request_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


async def _seed_side(
    client: Client,
    people: tuple[Person, ...],
    touches: tuple[Touch, ...],
    side: str,
    seeded: Seeded,
    step: Callable[[str], None],
) -> None:
    """Contacts in the caller's team, their interactions with the promises made in them."""
    made: list[contact_pb2.Contact] = []
    for person in people:
        step(f"contact {person.display_name}")
        contact = await client.contacts.create(
            person.display_name,
            preferred_name=person.preferred_name,
            emails=[person.email],
            phones=[person.phone],
            time_zone=person.time_zone,
            preferred_channel=person.prefers,
            relationship="external_customer",
            request_id=_request_id(side, "contact", person.email),
        )
        made.append(contact)
        seeded.teams.add(contact.team)
    seeded.contacts += made
    to_keep: list[str] = []
    for touch in (t for t in touches if t.person < len(people)):
        contact = made[touch.person]
        step(f"{touch.type} by {touch.channel} with {contact.preferred_name}")
        now = datetime.now(UTC)
        extra: dict[str, Any] = {}
        if touch.purchase:
            amount, currency = touch.purchase
            extra["purchase"] = {"amount_minor": amount, "currency_code": currency}
        interaction = await record_interaction(
            client,
            contact.id,
            channel=touch.channel,
            type=touch.type,
            summary=touch.summary,
            direction="inbound",
            promises=[PromiseMade(text, now + due, kind="other") for text, due in touch.promises],
            **extra,
        )
        seeded.interactions += 1
        ids = [p.id for p in interaction.promises]
        seeded.promises += ids
        if touch.keep:
            to_keep += ids
    for promise_id in to_keep:
        step("keeping a promise already done")
        promise = await wait_for_promise(client, promise_id, timeout=20.0)
        if promise.status == promise_pb2.PROMISE_STATUS_OPEN:
            await client.promises.keep(promise, evidence="Done the same day")
        seeded.kept.append(promise_id)


def _colleague_token(profile: Profile, given: str | None) -> str:
    """Whose token seeds the other team: the one given, else, on the development tokens, the
    agent of the other team; "" (one team only) otherwise."""
    if given is not None:
        return given
    if profile.token not in DEV_TOKENS:
        return ""
    return DEV_COLLEAGUE.get(profile.token, DEFAULT_COLLEAGUE_TOKEN)


async def _reminder(
    arrived: asyncio.Queue[reminder_pb2.Reminder],
    pumping: asyncio.Task[None],
    promise_id: str,
    kind: int,
) -> reminder_pb2.Reminder:
    """The first reminder of this kind for this promise; the stream's failure if it fails."""
    while True:
        getting = asyncio.ensure_future(arrived.get())
        await asyncio.wait({getting, pumping}, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
            pumping.result()  # raises what broke the stream
            raise RuntimeError("the reminder stream ended")
        reminder = getting.result()
        if reminder.promise_id == promise_id and reminder.kind == kind:
            return reminder


async def _bounded(work: Awaitable[T], seconds: float, what: str) -> T:
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        raise errors.DeadlineExceeded(
            grpc.StatusCode.DEADLINE_EXCEEDED, f"{what} did not happen within {seconds:g}s"
        ) from None


def demo(
    ctx: typer.Context,
    short: Annotated[
        bool, typer.Option("--short", help="Fewer records, the promise due in 2 s (tests).")
    ] = False,
    due_in: Annotated[
        float | None, typer.Option(help="Seconds until the followed promise is due.")
    ] = None,
    colleague_token: Annotated[
        str | None,
        typer.Option(
            help="Token of an agent of another team, who seeds that team's share "
            "(default on the development tokens: dev-agent-b-token; '' for one team only).",
            envvar="PROMESA_DEMO_COLLEAGUE_TOKEN",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="A JSON summary.")] = False,
) -> None:
    """Seed a small realistic data set, then follow one promise from made to reminded to kept."""
    state = wants_json(ctx, json_output)
    profile = state.profile
    if not profile.user:
        usage("the profile has no user: the demo makes promises for you", "--user")
    seconds = due_in if due_in is not None else (2.0 if short else 10.0)
    if seconds <= 0:
        usage("must be more than 0", "--due-in")
    colleague = _colleague_token(profile, colleague_token)
    n = SHORT_FIRST if short else len(MINE)
    mine, theirs = MINE[:n], COLLEAGUES[:n]
    steps = len(mine) * 2 + len(theirs) * 2 + 8
    console = Console(stderr=True) if state.json_output else state.out

    async def work(client: Client) -> dict[str, Any]:
        seeded = Seeded()
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("Seeding", total=steps)

            def step(what: str) -> None:
                progress.update(task, advance=1, description=f"Seeding: {what}")

            await _seed_side(client, mine, MY_TOUCHES, profile.user, seeded, step)
            if colleague:
                other = Client(
                    contacts=profile.contacts,
                    interactions=profile.interactions,
                    followup=profile.followup,
                    token=colleague,
                    tls=profile.tls,
                    deadline=profile.deadline,
                )
                async with other:
                    await _seed_side(other, theirs, COLLEAGUE_TOUCHES, "colleague", seeded, step)
            progress.update(task, completed=steps - 4, description="Seeded")
            followed = await _follow(client, profile, seeded, seconds, progress, task, console)
        return {
            "user": profile.user,
            "contacts": len(seeded.contacts),
            "teams": sorted(seeded.teams),
            "interactions": seeded.interactions,
            "promises": len(seeded.promises),
            "kept_in_seed": len(seeded.kept),
            **followed,
        }

    summary = run(state, work)
    if state.json_output:
        render.print_json(state.out, summary)
        return
    state.out.print(
        f"\nSeeded {summary['contacts']} contacts in {len(summary['teams'])} teams, "
        f"{summary['interactions']} interactions, {summary['promises']} promises."
    )
    state.out.print(
        "Next: [bold]promesa promises mine[/], [bold]promesa stats --by channel[/],"
        " [bold]promesa desk[/]"
    )


async def _follow(
    client: Client,
    profile: Profile,
    seeded: Seeded,
    seconds: float,
    progress: Progress,
    task: Any,
    console: Console,
) -> dict[str, Any]:
    """One promise made → reminded (AT_DUE, read from StreamReminders) → kept."""
    lucia = seeded.contacts[0]
    # The stream opens before the promise is made (its reminder is seconds away), and its
    # reminders are read from then on, so the one awaited cannot pass unseen.
    arrived: asyncio.Queue[reminder_pb2.Reminder] = asyncio.Queue()

    async def pump() -> None:
        async for item in client.promises.reminders(profile.user):
            arrived.put_nowait(item.reminder)

    pumping = asyncio.create_task(pump())
    try:
        return await _made_reminded_kept(
            client, profile, lucia, seconds, progress, task, console, arrived, pumping
        )
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


async def _made_reminded_kept(
    client: Client,
    profile: Profile,
    lucia: contact_pb2.Contact,
    seconds: float,
    progress: Progress,
    task: Any,
    console: Console,
    arrived: asyncio.Queue[reminder_pb2.Reminder],
    pumping: asyncio.Task[None],
) -> dict[str, Any]:
    zone = profile.zone
    progress.update(task, advance=1, description="Made: logging a call with a promise")
    due = datetime.now(UTC) + timedelta(seconds=seconds)
    text = f"Call {lucia.preferred_name} back with the courier's tracking number"
    interaction = await record_interaction(
        client,
        lucia.id,
        channel="phone",
        type="complaint",
        direction="inbound",
        summary="Replacement kettle has not arrived",
        promises=[PromiseMade(text, due, kind="call_back")],
    )
    promise_id = interaction.promises[0].id
    console.print(
        Text.assemble(
            ("  made      ", "green"),
            text,
            f"\n            due {local(due, zone)} (in {seconds:g}s)",
        )
    )
    progress.update(task, advance=1, description="Made: waiting for the follow-up service")
    promise = await wait_for_promise(client, promise_id, timeout=30.0)
    progress.update(
        task, advance=1, description=f"Reminded: waiting for the reminder ({seconds:g}s)"
    )
    started = time.monotonic()
    reminder = await _bounded(
        _reminder(arrived, pumping, promise_id, reminder_pb2.REMINDER_KIND_AT_DUE),
        seconds + 60.0,
        "the AT_DUE reminder",
    )
    kind = render.short(reminder_pb2.ReminderKind.DESCRIPTOR, reminder.kind).replace(" ", "-")
    console.print(
        Text.assemble(
            ("  reminded  ", "yellow"),
            f"the {kind} reminder reached {reminder.recipient_id} after"
            f" {time.monotonic() - started:.1f}s (StreamReminders)",
        )
    )
    progress.update(task, advance=1, description="Kept: marking it kept")
    promise = await client.promises.get(promise_id)
    kept = await client.promises.keep(
        promise, evidence="Called back with the tracking number", interaction_id=interaction.id
    )
    late = (datetime.now(UTC) - due).total_seconds()
    timing = "on time" if kept.kept_on_time else f"{late:.1f}s after it fell due"
    console.print(Text.assemble(("  kept      ", "bold green"), timing))
    progress.update(task, completed=progress.tasks[0].total, description="Done")
    return {
        "followed": {
            "promise_id": promise_id,
            "contact_id": lucia.id,
            "interaction_id": interaction.id,
            "reminder_id": reminder.id,
            "reminder_kind": reminder_pb2.ReminderKind.Name(reminder.kind),
            "status": promise_pb2.PromiseStatus.Name(kept.status),
            "kept_on_time": kept.kept_on_time,
        }
    }
