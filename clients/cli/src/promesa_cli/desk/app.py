"""The desk: an agent's open promises, soonest due first with live countdowns, the reminders the
follow-up service streams as they fall due, and the selected customer's profile and timeline,
with modal forms to keep, reassign, renegotiate and log. Laid out for 80x24, keyboard only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Label, Static

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import promise_pb2, reminder_pb2
from crm.interactions.v1 import interaction_pb2
from promesa_cli.desk import view
from promesa_cli.desk.forms import Field, FieldProblem, FormScreen, Values
from promesa_client import Client, errors
from promesa_client.interactions import PromiseMade

Promise = promise_pb2.Promise
Contact = contact_pb2.Contact
Reminder = reminder_pb2.Reminder
# Sends a form for one promise; returns what to tell the agent.
SendFn = Callable[[Promise, Values], Awaitable[str]]

TIMELINE_LINES = 4
REMINDER_LINES = 3
PROMISE_WIDTH = 30
NAME_WIDTH = 14
# Errors a reconnect cannot cure: the feed stops and says why instead of retrying for ever.
FINAL_FEED_ERRORS = (errors.Unauthenticated, errors.PermissionDenied)


def wall_clock() -> datetime:
    return datetime.now(UTC)


def _choices(
    enum: type[interaction_pb2.Channel] | type[interaction_pb2.InteractionType], prefix: str
) -> tuple[tuple[str, str], ...]:
    return tuple(
        (view.enum_label(name, prefix), view.enum_label(name, prefix))
        for name in enum.keys()  # noqa: SIM118 (a proto enum wrapper, not a dict)
        if not name.endswith("UNSPECIFIED")
    )


CHANNELS = _choices(interaction_pb2.Channel, "CHANNEL_")
TYPES = _choices(interaction_pb2.InteractionType, "INTERACTION_TYPE_")


class DeskApp(App[None]):
    """One screen: status line, promises, the selected customer, reminders, key bar."""

    TITLE = "Promesa desk"
    CSS = """
    Screen { layout: vertical; }
    #status { height: 1; background: $primary; color: $text; padding: 0 1; }
    #status.-problem { background: $error; }
    #promises { height: 1fr; min-height: 5; }
    .section { height: 1; width: 100%; background: $boost; color: $text-muted; padding: 0 1; }
    #contact { height: 6; padding: 0 1; }
    #reminders { height: 3; padding: 0 1; }
    """

    BINDINGS = [
        Binding("k", "keep", "Keep"),
        Binding("a", "reassign", "Reassign"),
        Binding("r", "renegotiate", "Renegotiate"),
        Binding("l", "log", "Log"),
        Binding("f5", "refresh", "Refresh"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        client: Client,
        *,
        user: str,
        zone: ZoneInfo,
        now: Callable[[], datetime] = wall_clock,
        refresh_seconds: float = 30.0,
        feed_retry_seconds: float = 2.0,
    ) -> None:
        """`now` is the clock countdowns are read against (a test passes the services'
        clock); `refresh_seconds` how often the list is read again, for promises made or
        changed elsewhere (a colleague's reassignment, an interaction logged by the CLI)."""
        super().__init__()
        self.client = client
        self.user = user
        self.zone = zone
        self.now = now
        self.refresh_seconds = refresh_seconds
        self.feed_retry_seconds = feed_retry_seconds
        self.promises: dict[str, Promise] = {}
        self.contacts: dict[str, Contact] = {}
        self.contact_problems: dict[str, str] = {}
        self.timeline: list[interaction_pb2.Interaction] = []
        self.timeline_of = ""  # the contact whose timeline `timeline` holds
        self.selected_id: str | None = None
        self.reminders: list[Reminder] = []  # newest first
        self.reminder_ids_read: list[str] = []  # every id the stream sent, duplicates included
        self.resume_token = ""
        self.feed_state = "connecting"
        self.list_problem = ""

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="status", markup=False)
        yield DataTable(id="promises", cursor_type="row", zebra_stripes=True)
        yield Label("Customer", id="contact-title", classes="section")
        yield Static("Select a promise to see its customer.", id="contact", markup=False)
        yield Label("Reminders", id="reminders-title", classes="section")
        yield Static("None yet: they appear here as they fall due.", id="reminders")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#promises", DataTable)
        table.add_column(" ", key="flag", width=1)
        table.add_column("Due in", key="due_in", width=10)
        table.add_column("Due", key="due", width=12)
        table.add_column("Customer", key="customer", width=NAME_WIDTH)
        table.add_column("Promise", key="text", width=PROMISE_WIDTH)
        table.focus()
        self.refresh_promises()
        self.follow_reminders()
        self.set_interval(1.0, self.tick)
        self.set_interval(self.refresh_seconds, self.refresh_promises)
        self.tick()

    # -- the promise list -----------------------------------------------------------------

    @work(exclusive=True, group="list")
    async def refresh_promises(self) -> None:
        """Reads the agent's open and waiting promises again and the customers they name."""
        try:
            found: list[Promise] = []
            for status in ("open", "waiting_on_customer"):
                async for promise in self.client.promises.list(owner_id=self.user, status=status):
                    found.append(promise)
            await self._load_contacts({p.contact_id for p in found})
        except errors.PromesaError as exc:
            self.list_problem = f"list: {type(exc).__name__}: {exc.message}"
            self.tick()
            return
        self.list_problem = ""
        self.promises = {p.id: p for p in found}
        self._fill_table()
        self.tick()

    async def _load_contacts(self, ids: set[str]) -> None:
        """Fetches the customers not yet known, at once; one the agent may not read (or one
        erased) is shown by its id with the reason, not left out."""
        missing = [i for i in ids if i and i not in self.contacts]
        results = await asyncio.gather(
            *(self.client.contacts.get(i) for i in missing), return_exceptions=True
        )
        for contact_id, result in zip(missing, results, strict=True):
            if isinstance(result, errors.PromesaError):
                self.contact_problems[contact_id] = f"{type(result).__name__}: {result.message}"
            elif isinstance(result, BaseException):
                raise result
            else:
                self.contacts[contact_id] = result

    def ordered(self) -> list[Promise]:
        return sorted(self.promises.values(), key=lambda p: (p.due_at.ToNanoseconds(), p.id))

    def _fill_table(self) -> None:
        table = self.query_one("#promises", DataTable)
        keep = self.selected_id
        table.clear()
        now = self.now()
        for promise in self.ordered():
            table.add_row(*self._cells(promise, now), key=promise.id)
        rows = [p.id for p in self.ordered()]
        if not rows:
            self.selected_id = None
            self._show_contact()
            return
        row = rows.index(keep) if keep in rows else 0
        table.move_cursor(row=row)
        self._select(rows[row])

    def _cells(self, promise: Promise, now: datetime) -> tuple[Text, Text, str, str, str]:
        return (
            self._flag(promise),
            self._countdown(promise, now),
            view.short_time(view.from_timestamp(promise.due_at), self.zone, now),
            view.clip(self.customer_name(promise.contact_id), NAME_WIDTH),
            view.clip(promise.text, PROMISE_WIDTH),
        )

    def _flag(self, promise: Promise) -> Text:
        if any(r.promise_id == promise.id for r in self.reminders):
            return Text("●", style="bold yellow")
        if promise.status == promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER:
            return Text("w", style="dim")
        if promise.priority in (promise_pb2.PRIORITY_HIGH, promise_pb2.PRIORITY_URGENT):
            return Text("!", style="bold red")
        return Text(" ")

    def _countdown(self, promise: Promise, now: datetime) -> Text:
        due = view.from_timestamp(promise.due_at)
        text = view.countdown(due, now)
        if promise.status == promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER:
            return Text(text, style="dim")
        if due <= now:
            return Text(text, style="bold red")
        if (due - now).total_seconds() < 3600:
            return Text(text, style="yellow")
        return Text(text)

    def customer_name(self, contact_id: str) -> str:
        contact = self.contacts.get(contact_id)
        if contact is None:
            return contact_id[:8] or "?"
        return contact.preferred_name or contact.display_name or contact_id[:8]

    def tick(self) -> None:
        """Every second: countdowns, the status line and the customer's clock."""
        now = self.now()
        table = self.query_one("#promises", DataTable)
        for promise in self.promises.values():
            if promise.id in table.rows:
                table.update_cell(promise.id, "due_in", self._countdown(promise, now))
                table.update_cell(promise.id, "flag", self._flag(promise))
        late = sum(1 for p in self.promises.values() if view.from_timestamp(p.due_at) <= now)
        if self.list_problem:
            # What went wrong comes first: the rest of the line may not fit in 80 columns.
            parts = [self.user, self.list_problem, f"reminders {self.feed_state}"]
        else:
            parts = [
                self.user,
                now.astimezone(self.zone).strftime("%a %H:%M ") + str(self.zone),
                f"{len(self.promises)} open" + (f", {late} late" if late else ""),
                f"reminders {self.feed_state}",
            ]
        status = self.query_one("#status", Static)
        status.update(view.clip(" · ".join(parts), 78))
        status.set_class(bool(self.list_problem), "-problem")
        self._show_contact()

    # -- the selected customer ------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#promises")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._select(event.row_key.value)

    def _select(self, promise_id: str) -> None:
        """Shows the promise's customer; read from the services only when it changes."""
        promise = self.promises.get(promise_id)
        if promise is None or promise_id == self.selected_id:
            return
        self.selected_id = promise_id
        self._show_contact()
        self.load_timeline(promise.contact_id)

    def selected(self) -> Promise | None:
        return self.promises.get(self.selected_id or "")

    @work(exclusive=True, group="contact")
    async def load_timeline(self, contact_id: str) -> None:
        """The customer read again (a name or zone may have changed) and the newest touches."""
        try:
            self.contacts[contact_id] = await self.client.contacts.get(contact_id)
            self.contact_problems.pop(contact_id, None)
            timeline = await self.client.interactions.list(
                contact_id, page_size=TIMELINE_LINES
            ).collect(TIMELINE_LINES)
        except errors.PromesaError as exc:
            self.contact_problems[contact_id] = f"{type(exc).__name__}: {exc.message}"
            timeline = []
        selected = self.selected()
        if selected is not None and selected.contact_id == contact_id:
            self.timeline, self.timeline_of = timeline, contact_id
            self._show_contact()

    def _show_contact(self) -> None:
        self.query_one("#contact", Static).update(self.contact_text())

    def contact_text(self) -> Text:
        promise = self.selected()
        if promise is None:
            return Text("Select a promise to see its customer.", style="dim")
        now = self.now()
        contact = self.contacts.get(promise.contact_id)
        problem = self.contact_problems.get(promise.contact_id, "")
        out = Text()
        if contact is None:
            out.append(f"{promise.contact_id}: {problem or 'reading…'}\n", style="dim")
        else:
            out.append(contact.preferred_name or contact.display_name, style="bold")
            if contact.preferred_name and contact.display_name != contact.preferred_name:
                out.append(f" ({contact.display_name})")
            out.append(" · " + view.local_clock(contact.time_zone, now))
            if contact.discreet:
                out.append(" · discreet", style="bold magenta")
            reach = [*contact.phones[:1], *contact.emails[:1]]
            out.append("\n" + view.clip(" · ".join(reach) or "no phone or email", 76) + "\n")
            if problem:
                out.append(view.clip(problem, 76) + "\n", style="red")
        timeline = self.timeline if self.timeline_of == promise.contact_id else []
        if self.timeline_of != promise.contact_id:
            out.append("Reading the timeline…", style="dim")
        elif not timeline and not problem:
            out.append("No interactions yet.", style="dim")
        for interaction in timeline:
            when = view.short_time(view.from_timestamp(interaction.occurred_at), self.zone, now)
            kind = view.enum_label(
                interaction_pb2.InteractionType.Name(interaction.type), "INTERACTION_TYPE_"
            )
            channel = view.enum_label(interaction_pb2.Channel.Name(interaction.channel), "CHANNEL_")
            stars = f" ★{interaction.satisfaction}" if interaction.satisfaction else ""
            head = f"{when:>12} {channel[:6]:<6} {kind[:10]:<10} "
            out.append(head, style="cyan")
            out.append(view.clip(interaction.summary, 76 - len(head) - len(stars)) + stars + "\n")
        out.rstrip()
        return out

    # -- reminders ------------------------------------------------------------------------

    @work(exclusive=True, group="reminders")
    async def follow_reminders(self) -> None:
        """Reads the agent's reminders for as long as the desk is open. The SDK reconnects on
        UNAVAILABLE by itself; if the stream still ends in an error, the desk says so and
        starts again after the last reminder it read, so nothing is missed or shown twice."""
        while True:
            try:
                self.feed_state = "live"
                async for item in self.client.promises.reminders(
                    self.user, resume_after=self.resume_token, on_disconnect=self._feed_broke
                ):
                    self.resume_token = item.resume_token
                    self.feed_state = "live"
                    await self._read_again(item.reminder.promise_id)
                    self.reminder_arrived(item.reminder)
                self.feed_state = "ended, reconnecting"
            except FINAL_FEED_ERRORS as exc:
                self.feed_state = f"stopped ({type(exc).__name__})"
                self.notify(exc.message, title="Reminders stopped", severity="error", timeout=30)
                self.tick()
                return
            except errors.InvalidArgument as exc:
                # A resume token the service no longer knows: start from now, and say so.
                self.feed_state = f"restarted, some may be missed ({exc.message})"
                self.resume_token = ""
            except errors.PromesaError as exc:
                self.feed_state = f"offline ({type(exc).__name__}), retrying"
            self.tick()
            await asyncio.sleep(self.feed_retry_seconds)

    async def _read_again(self, promise_id: str) -> None:
        """A promise falling due changes it (it turns overdue, with a new etag): the desk reads
        it again before showing the reminder, so that a key pressed on it at once applies."""
        if promise_id not in self.promises:
            return  # not on this desk (an escalation about a colleague's): the list is read
        try:
            fresh = await self.client.promises.get(promise_id)
        except errors.PromesaError as exc:
            self.list_problem = f"reading {promise_id[:8]}: {type(exc).__name__}: {exc.message}"
            return
        self.promises[promise_id] = fresh

    def _feed_broke(self, error: errors.PromesaError) -> None:
        """The SDK lost the stream and is resuming it after the last reminder read."""
        lost = self.now().astimezone(self.zone).strftime("%H:%M:%S")
        self.feed_state = f"lost at {lost} ({error.code.name}), resuming"
        self.tick()

    def reminder_arrived(self, reminder: Reminder) -> None:
        self.reminder_ids_read.append(reminder.id)
        if any(r.id == reminder.id for r in self.reminders):
            return  # the stream promises once per id; a duplicate is shown only once anyway
        self.reminders.insert(0, reminder)
        kind = view.enum_label(reminder_pb2.ReminderKind.Name(reminder.kind), "REMINDER_KIND_")
        name = self.customer_name(reminder.contact_id)
        due = view.short_time(view.from_timestamp(reminder.due_at), self.zone, self.now())
        self.notify(
            f"{name}: {view.clip(reminder.text or '(discreet)', 50)} (due {due})",
            title=f"Reminder: {kind}",
            severity="warning"
            if reminder.kind == reminder_pb2.REMINDER_KIND_ESCALATION
            else "information",
            timeout=8,
        )
        self._show_reminders()
        if reminder.promise_id not in self.promises or reminder.contact_id not in self.contacts:
            self.refresh_promises()
        self.tick()

    def reminders_text(self) -> Text:
        out = Text()
        now = self.now()
        for reminder in self.reminders[:REMINDER_LINES]:
            kind = view.enum_label(reminder_pb2.ReminderKind.Name(reminder.kind), "REMINDER_KIND_")
            when = view.short_time(view.from_timestamp(reminder.scheduled_at), self.zone, now)
            head = (
                f"{when:>9} {kind:<13} {view.clip(self.customer_name(reminder.contact_id), 12)}: "
            )
            out.append(head, style="yellow")
            out.append(view.clip(reminder.text or "(discreet)", 76 - len(head)) + "\n")
        out.rstrip()
        return out

    def _show_reminders(self) -> None:
        self.query_one("#reminders", Static).update(self.reminders_text())

    # -- actions --------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_promises()
        promise = self.selected()
        if promise is not None:
            self.load_timeline(promise.contact_id)

    def _subject(self, promise: Promise) -> str:
        due = view.short_time(view.from_timestamp(promise.due_at), self.zone, self.now())
        return view.clip(
            f"{self.customer_name(promise.contact_id)} · due {due} · {promise.text}", 72
        )

    def _form(
        self, title: str, fields: list[Field], paths: dict[str, str] | None = None, *, send: SendFn
    ) -> None:
        promise = self.selected()
        if promise is None:
            self.notify("No promise selected.", severity="warning")
            return
        promise_id = promise.id

        async def submit(values: Values) -> str:
            current = self.promises.get(promise_id, promise)
            try:
                done = await send(current, values)
            except errors.Conflict:
                # Changed since the desk read it: show the new version and let the agent decide.
                fresh = await self.client.promises.get(promise_id)
                self.promises[promise_id] = fresh
                raise FieldProblem(
                    "", "the promise changed meanwhile and was read again; send again to apply"
                ) from None
            self.refresh_promises()
            return done

        self.push_screen(
            FormScreen(title, self._subject(promise), fields, submit, paths), self._form_closed
        )

    def _form_closed(self, result: str | None) -> None:
        if result:
            self.notify(result)

    def action_keep(self) -> None:
        async def send(promise: Promise, values: Values) -> str:
            await self.client.promises.keep(promise, evidence=str(values["note"]) or None)
            return f"Kept: {view.clip(promise.text, 50)}"

        self._form(
            "Keep promise",
            [Field("note", "Evidence", placeholder="what was done (optional)")],
            {"evidence.note": "note"},
            send=send,
        )

    def action_reassign(self) -> None:
        async def send(promise: Promise, values: Values) -> str:
            owner = str(values["owner"])
            await self.client.promises.reassign(promise, owner, str(values["reason"]))
            return f"Handed to {owner}: {view.clip(promise.text, 40)}"

        self._form(
            "Reassign promise",
            [
                Field("owner", "New owner", placeholder="user id, e.g. agent-2", required=True),
                Field("reason", "Reason", placeholder="why it changes hands", required=True),
            ],
            {"new_owner_id": "owner", "reason": "reason"},
            send=send,
        )

    def action_renegotiate(self) -> None:
        async def send(promise: Promise, values: Values) -> str:
            try:
                due = view.parse_due(str(values["due"]), self.zone, self.now())
            except view.DueTimeError as exc:
                raise FieldProblem("due", str(exc)) from None
            await self.client.promises.renegotiate(
                promise, due, str(values["reason"]), customer_agreed=bool(values["agreed"])
            )
            return f"Now due {view.short_time(due, self.zone, self.now())}"

        self._form(
            "Renegotiate due time",
            [
                Field("due", "New due", placeholder=view.DUE_HINT, required=True),
                Field("reason", "Reason", placeholder="why the date moves", required=True),
                Field("agreed", "Customer", placeholder="agreed to the new date", checkbox=True),
            ],
            {"new_due_at": "due", "reason": "reason", "customer_agreed": "agreed"},
            send=send,
        )

    def action_log(self) -> None:
        async def send(promise: Promise, values: Values) -> str:
            made: list[PromiseMade] = []
            if values["promise"]:
                if not values["due"]:
                    raise FieldProblem("due", "a promise needs a due time")
                try:
                    due = view.parse_due(str(values["due"]), self.zone, self.now())
                except view.DueTimeError as exc:
                    raise FieldProblem("due", str(exc)) from None
                made.append(PromiseMade(str(values["promise"]), due, owner_id=self.user))
            recorded = await self.client.interactions.record(
                contact_id=promise.contact_id,
                channel=str(values["channel"]),
                type=str(values["type"]),
                summary=str(values["summary"]),
                promises=made,
            )
            self.load_timeline(promise.contact_id)
            if recorded.promises:
                self.await_promises([p.id for p in recorded.promises])
            return f"Logged {values['type']} on {values['channel']}"

        self._form(
            "Log an interaction",
            [
                Field("channel", "Channel", value="phone", choices=CHANNELS),
                Field("type", "Type", value="follow up", choices=TYPES),
                Field("summary", "Summary", placeholder="what happened", required=True),
                Field("promise", "Promise made", placeholder="optional: what you promised"),
                Field("due", "Due", placeholder=view.DUE_HINT),
            ],
            {
                "interaction.summary": "summary",
                "interaction.channel": "channel",
                "interaction.type": "type",
                "interaction.promises[0].text": "promise",
                "interaction.promises[0].due_at": "due",
            },
            send=send,
        )

    @work(group="await-promises")
    async def await_promises(self, promise_ids: list[str]) -> None:
        """Promises made in an interaction reach the follow-up service through an event; the
        list is read again as soon as they are there, rather than at the next refresh."""
        deadline = asyncio.get_running_loop().time() + 30
        pending = set(promise_ids)
        while pending and asyncio.get_running_loop().time() < deadline:
            for promise_id in list(pending):
                try:
                    await self.client.promises.get(promise_id)
                except errors.NotFound:
                    continue
                pending.discard(promise_id)
            if pending:
                await asyncio.sleep(0.25)
        self.refresh_promises()
