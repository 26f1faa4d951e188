"""A harness for the any-order property: a history of what happens to contacts, the events it
produces (each encoded by its producer's own codec), and each consuming service built in
process over a real SQLite store, its real handlers fed those events in a given order.

A run is a script: the service's own commands at the step of the history they happened at
(contacts creates, merges and erases; interactions records touches) and deliveries of the
events the service consumes, in any order after they were produced, duplicates included. What
a run leaves is read back as a view: plain facts keyed by what they are about, so that two
runs compare with `==` and a difference reads as a list of facts.
"""

from __future__ import annotations

import enum
import tempfile
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from contacts.adapters import event_codec as contacts_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.domain import events as contact_events
from contacts.domain import merging
from contacts.domain.model import Contact, ContactDetails, Lifecycle
from contacts.entrypoints import interactions_consumer as contacts_interactions
from contacts.ports import Change as ContactChange
from contacts.usecases import ContactCommands, ContactReactions
from followup.adapters import event_codec as followup_codec
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.domain.lifecycle import ERASED_TEXT
from followup.domain.model import PromiseKind
from followup.domain.reminders import ReminderPolicy
from followup.entrypoints import contacts_consumer as followup_contacts
from followup.entrypoints import interactions_consumer as followup_interactions
from followup.usecases import PromiseReactions
from followup.usecases.planning import PromisePlanner
from interactions.adapters import event_codec as interactions_codec
from interactions.adapters.sqlite_store import SqliteInteractionStore
from interactions.domain import events as interaction_events
from interactions.domain import model as touches
from interactions.entrypoints import contacts_consumer as interactions_contacts
from interactions.usecases import InteractionCommands, InteractionReactions
from promesa.auth import Identity, Role, acting_as, worker_identity
from promesa.clock import ManualClock
from promesa.errors import FailedPreconditionError
from promesa.events import IncomingEvent, OutgoingEvent, UndecodableEventError
from promesa.ids import derived_id
from promesa.usecases import Writes

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)
# Every consumer handles its events after the whole history (a consumer that was down, or
# slow): the same instant in every run, so nothing in a view depends on when it ran.
NOW = START + timedelta(days=1)
DUE = NOW + timedelta(days=3)
OWNER = "agent-ana"
TEAM = "madrid"
SUPERVISOR = Identity("sup-sam", Role.SUPERVISOR)
ACTIVE_WINDOW = timedelta(days=90)
# Some contacts have a time zone and some do not: a survivor without one takes its duplicate's
# in a merge, so a profile that arrives late (ContactCreated after that ContactUpdated) shows.
TIME_ZONES = {"c0": "Europe/Madrid", "c2": "America/Lima"}
# Delays are counted in ticks, this many to a step of the history.
TICKS = 10
# A handler that raises is redelivered later (JetStream's nak); this many times at most.
MAX_DELIVERIES = 5


# --- the history ----------------------------------------------------------------------------------


class Touch(enum.StrEnum):
    """The kinds of interaction the follow-up and contacts services tell apart."""

    INQUIRY = "inquiry"
    COMPLAINT = "complaint"
    PURCHASE = "purchase"


@dataclass(frozen=True, repr=False)
class Create:
    contact: str

    def __repr__(self) -> str:
        return f"Create({self.contact})"


@dataclass(frozen=True, repr=False)
class Interact:
    """A touch recorded for a contact, possibly one that is gone already: the interactions
    service records for a merged or erased contact until it hears of that."""

    interaction: str
    contact: str
    touch: Touch
    promises: int

    def __repr__(self) -> str:
        made = f"{self.promises} promises"
        return f"Interact({self.interaction}: {self.touch} with {self.contact}, {made})"


@dataclass(frozen=True, repr=False)
class Merge:
    merged: str
    survivor: str

    def __repr__(self) -> str:
        return f"Merge({self.merged} into {self.survivor})"


@dataclass(frozen=True, repr=False)
class Erase:
    contact: str

    def __repr__(self) -> str:
        return f"Erase({self.contact})"


@dataclass(frozen=True, repr=False)
class Lapse:
    """The contacts sweep found an active customer's window passed: ContactBecameInactive.
    (ContactBecameActive is not an op of its own: a purchase by a customer who was not active
    produces it, as contacts does.)"""

    contact: str

    def __repr__(self) -> str:
        return f"Lapse({self.contact})"


Op = Create | Interact | Merge | Erase | Lapse


@dataclass(frozen=True)
class Produced:
    """One event of the history: the step that produced it, a readable label, the message."""

    step: int
    label: str
    event: OutgoingEvent


@dataclass(frozen=True, repr=False)
class History:
    """What happened, in order, the events it produced in that order, and each contact's fate
    at the end (what every consumer should have applied, whatever the order)."""

    ops: tuple[Op, ...]
    events: tuple[Produced, ...]
    erased: frozenset[str]
    merged_into: Mapping[str, str]
    # promise id -> (label, the contact the promise was made for)
    promise_labels: Mapping[str, tuple[str, str]]

    def at(self, step: int) -> datetime:
        return START + STEP * step

    def fate(self, contact_id: str) -> str:
        """ "live", "erased" or "merged into <id>"."""
        if contact_id in self.erased:
            return "erased"
        if contact_id in self.merged_into:
            return f"merged into {self.merged_into[contact_id]}"
        return "live"

    def contacts(self) -> list[str]:
        return [op.contact for op in self.ops if isinstance(op, Create)]

    def __repr__(self) -> str:
        return f"History({', '.join(repr(op) for op in self.ops)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How Hypothesis prints a drawn history: its ops, not every encoded event."""
        printer.text(repr(self))


def history_of(ops: Sequence[Op]) -> History:
    """Plays the ops as the producing services would and encodes each event with its codec.
    The ops must be valid for the contacts service (the strategy only draws valid ones)."""
    contacts: dict[str, Contact] = {}
    erased: set[str] = set()
    merged_into: dict[str, str] = {}
    produced: list[Produced] = []
    labels: dict[str, tuple[str, str]] = {}

    def contact_event(step: int, label: str, event: contact_events.ContactEvent) -> None:
        # The codec gives contacts' events a random id: a stable one keeps runs comparable.
        encoded = replace(contacts_codec.encode(event), event_id=f"history-{len(produced)}")
        produced.append(Produced(step, label, encoded))

    for step, op in enumerate(ops):
        at = START + STEP * step
        match op:
            case Create(contact=c):
                contacts[c] = new_contact(c, at)
                contact_event(
                    step,
                    f"ContactCreated({c})",
                    contact_events.ContactCreated(contacts[c], SUPERVISOR.subject, at),
                )
            case Interact():
                interaction = touch_of(op, at)
                for k, p in enumerate(interaction.promises):
                    labels[p.id] = (f"{op.interaction}.promise{k}", op.contact)
                if op.touch is Touch.COMPLAINT and not op.promises:
                    resolution = derived_id(op.interaction, "complaint-resolution")
                    labels[resolution] = (f"{op.interaction}.resolution", op.contact)
                encoded = interactions_codec.encode(
                    interaction_events.InteractionRecorded(interaction, OWNER, at)
                )
                produced.append(
                    Produced(
                        step, f"InteractionRecorded({op.interaction} for {op.contact})", encoded
                    )
                )
                # Contacts counts the touch for the survivor of a merged contact, and for
                # nobody once the contact (or its survivor) is erased.
                home = op.contact
                while home in merged_into:
                    home = merged_into[home]
                before = contacts[home]
                if op.touch is Touch.PURCHASE and home not in erased:
                    bought = replace(before, last_purchase_at=at, status=Lifecycle.ACTIVE)
                    contacts[home] = bought
                    if before.status is not Lifecycle.ACTIVE:
                        contact_event(
                            step,
                            f"ContactBecameActive({home})",
                            contact_events.ContactBecameActive(bought, at),
                        )
            case Merge(merged=m, survivor=s):
                before, duplicate = contacts[s], contacts[m]
                survivor = replace(before, details=merging.absorb(before, duplicate))
                if duplicate.status is Lifecycle.ACTIVE:
                    survivor = replace(survivor, status=Lifecycle.ACTIVE)
                contacts[s] = survivor
                merged_into[m] = s
                contact_event(
                    step,
                    f"ContactsMerged({m} into {s})",
                    contact_events.ContactsMerged(s, m, SUPERVISOR.subject, at),
                )
                changed = ("time_zone",) if survivor.details != before.details else ()
                contact_event(
                    step,
                    f"ContactUpdated({s})",
                    contact_events.ContactUpdated(survivor, changed, SUPERVISOR.subject, at),
                )
                if survivor.status is Lifecycle.ACTIVE and before.status is not Lifecycle.ACTIVE:
                    contact_event(
                        step,
                        f"ContactBecameActive({s})",
                        contact_events.ContactBecameActive(survivor, at),
                    )
            case Erase(contact=c):
                erased.add(c)
                contact_event(
                    step,
                    f"ContactErased({c})",
                    contact_events.ContactErased(c, SUPERVISOR.subject, at),
                )
            case Lapse(contact=c):
                lapsed = replace(contacts[c], status=Lifecycle.INACTIVE)
                contacts[c] = lapsed
                contact_event(
                    step,
                    f"ContactBecameInactive({c})",
                    contact_events.ContactBecameInactive(lapsed, at),
                )
    return History(tuple(ops), tuple(produced), frozenset(erased), dict(merged_into), labels)


def new_contact(contact_id: str, at: datetime) -> Contact:
    """The contact as ContactCommands.create saves it, with the history's id."""
    return Contact(
        id=contact_id,
        details=ContactDetails(
            display_name=f"Person {contact_id}",
            owner_id=OWNER,
            team=TEAM,
            time_zone=TIME_ZONES.get(contact_id, ""),
        ),
        status=Lifecycle.NEVER_PURCHASED,
        created_at=at,
        updated_at=at,
        created_by=SUPERVISOR.subject,
        updated_by=SUPERVISOR.subject,
    )


def draft_of(
    op: Interact, at: datetime
) -> tuple[touches.InteractionDraft, list[touches.PromiseDraft]]:
    """The touch as a caller records it (RecordInteraction)."""
    kind = {
        Touch.INQUIRY: touches.InteractionType.INQUIRY,
        Touch.COMPLAINT: touches.InteractionType.COMPLAINT,
        Touch.PURCHASE: touches.InteractionType.PURCHASE,
    }[op.touch]
    draft = touches.InteractionDraft(
        type=kind,
        channel=touches.Channel.PHONE,
        direction=touches.Direction.INBOUND,
        occurred_at=at,
        agent_id=OWNER,
        team=TEAM,
        summary=f"what {op.contact} said in {op.interaction}",
        purchase=touches.Purchase(1999, "EUR") if op.touch is Touch.PURCHASE else None,
    )
    promises = [
        touches.PromiseDraft(
            text=f"promise {k} of {op.interaction}",
            due_at=DUE,
            owner_id=OWNER,
            kind=touches.PromiseKind.CALL_BACK,
        )
        for k in range(op.promises)
    ]
    return draft, promises


def touch_of(op: Interact, at: datetime) -> touches.Interaction:
    """The interaction the interactions service records for the op, with the promise ids its
    command derives (the ids the follow-up service tracks the promises by)."""
    draft, promises = draft_of(op, at)
    assert draft.type is not None and draft.channel is not None
    details = touches.InteractionDetails(
        type=draft.type,
        channel=draft.channel,
        occurred_at=at,
        agent_id=OWNER,
        direction=draft.direction,
        team=TEAM,
        summary=draft.summary,
        purchase=draft.purchase,
    )
    made = tuple(
        touches.PromiseInInteraction(
            id=derived_id(op.interaction, str(k)),
            text=p.text,
            due_at=DUE,
            owner_id=OWNER,
            kind=touches.PromiseKind.CALL_BACK,
        )
        for k, p in enumerate(promises)
    )
    return touches.Interaction(
        id=op.interaction,
        contact_id=op.contact,
        details=details,
        created_at=at,
        updated_at=at,
        created_by=OWNER,
        updated_by=OWNER,
        promises=made,
    )


# --- scripts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Own:
    """The service's own command for the history's op at this step."""

    step: int


@dataclass(frozen=True)
class Deliver:
    """A delivery of the history's event at this index."""

    index: int


Item = Own | Deliver


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, `>` the rest (one token at least)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or token not in ("*", have[i]):
            return False
    return len(want) == len(have)


def script_of(
    history: History, service: Service, delays: Sequence[Sequence[int]] | None = None
) -> list[Item]:
    """The order a service sees things in: its own commands at their steps, and each copy of
    every event it consumes at the step that produced it plus a delay, in ticks (TICKS to a
    step). `delays[i]` has one delay per copy of event i; without delays, every event once
    and at once: the reference run, in the order of the history."""
    timed: list[tuple[int, int, int, Item]] = []
    for step, op in enumerate(history.ops):
        if service.acts_on(op):
            timed.append((step * TICKS, 0, step, Own(step)))
    for index, produced in enumerate(history.events):
        if service.consumes(produced.event.subject):
            for delay in delays[index] if delays is not None else (0,):
                # A command comes before what arrives in the same tick: it produced it.
                timed.append((produced.step * TICKS + delay, 1, index, Deliver(index)))
    return [item for *_, item in sorted(timed, key=lambda t: t[:3])]


def describe(history: History, script: Iterable[Item]) -> str:
    """A script as it reads: own commands in brackets, deliveries by their event."""
    parts = []
    for item in script:
        match item:
            case Own(step):
                parts.append(f"[{history.ops[step]!r}]")
            case Deliver(index):
                parts.append(history.events[index].label)
    return ", ".join(parts)


# --- running a script -----------------------------------------------------------------------------

View = dict[str, str]


class Rig(Protocol):
    """One service in process: its own commands, its consumers' handlers, its state read back."""

    async def act(self, op: Op, at: datetime, step: int) -> bool:
        """Runs the service's own command for the op; False when it is refused for now and
        its caller would try again later."""
        ...

    async def deliver(self, event: IncomingEvent) -> None: ...

    async def view(self, history: History) -> View: ...

    async def broken_rules(self, history: History) -> list[str]:
        """What the final state must never hold, whatever the order (an erased person's
        words, a live promise on a merged-away contact, …)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """A consuming service: the subjects its consumers filter on, which ops of the history are
    its own commands, and how to build it over a directory."""

    name: str
    subjects: tuple[str, ...]
    acts_on: Callable[[Op], bool]
    open: Callable[[Path], Rig]

    def consumes(self, subject: str) -> bool:
        return any(matches(pattern, subject) for pattern in self.subjects)


@dataclass(frozen=True)
class Outcome:
    view: View
    broken: list[str]


async def run(service: Service, history: History, script: Sequence[Item]) -> Outcome:
    """Runs the script against a fresh service in a temporary directory.

    A delivery whose handler raises is redelivered after everything else (JetStream after a
    nak or an ack timeout), MAX_DELIVERIES times at most. An own command refused for now (a
    touch for a contact whose creation has not arrived) is retried after the next delivery.
    An UndecodableEventError is never acceptable: every event of the history is well formed,
    so dead-lettering one would lose it.
    """
    with tempfile.TemporaryDirectory(prefix=f"promesa-{service.name}-") as directory:
        rig = service.open(Path(directory))
        try:
            await _play(rig, service, history, script)
            return Outcome(await rig.view(history), await rig.broken_rules(history))
        finally:
            await rig.close()


async def _play(rig: Rig, service: Service, history: History, script: Sequence[Item]) -> None:
    queue: deque[Item] = deque(script)
    deliveries: Counter[int] = Counter()
    while queue:
        item = queue.popleft()
        match item:
            case Own(step):
                with acting_as(SUPERVISOR):  # as the interceptor binds a caller
                    done = await rig.act(history.ops[step], history.at(step), step)
                if not done:
                    # The caller tries again a little later: after the next delivery.
                    later = next((i for i, x in enumerate(queue) if isinstance(x, Deliver)), None)
                    if later is None:
                        raise AssertionError(
                            f"{service.name}: [{history.ops[step]!r}] refused, with nothing"
                            " left to arrive that could change that"
                        )
                    queue.insert(later + 1, item)
            case Deliver(index):
                produced = history.events[index]
                deliveries[index] += 1
                try:
                    await rig.deliver(incoming(produced.event, deliveries[index]))
                except UndecodableEventError as exc:
                    raise AssertionError(
                        f"{service.name} dead-lettered {produced.label}: {exc}"
                    ) from exc
                except Exception:
                    if deliveries[index] >= MAX_DELIVERIES:
                        raise
                    queue.append(item)


def incoming(event: OutgoingEvent, delivery: int) -> IncomingEvent:
    """The event as a consumer receives it from JetStream (headers as the relay sets them)."""
    return IncomingEvent.from_message(event.subject, event.headers(), event.data, delivery)


def stamp(value: datetime | None) -> str:
    """An instant of the history as its step: reads better than a timestamp."""
    if value is None:
        return "never"
    step, rest = divmod(value - START, STEP)
    return f"step {step}" if not rest else value.isoformat()


Handler = Callable[[IncomingEvent], Awaitable[None]]


# --- follow-up ------------------------------------------------------------------------------------


class NoStream:
    """The service's own stream, of which these runs have none: an erasure's purge is the
    platform's (tested in tests/platform), the order of the events is what is tested here."""

    async def erase(self, contact_id: str) -> None:
        return None


class FollowupRig:
    """The follow-up service: both its consumers (contacts, interactions) over one store."""

    def __init__(self, directory: Path) -> None:
        clock = ManualClock(NOW)
        self._store = SqlitePromiseStore(
            directory / "followup.db", followup_codec.encode, clock, synchronous="OFF"
        )
        planner = PromisePlanner(ReminderPolicy(), lambda team: SUPERVISOR.subject)
        reactions = PromiseReactions(
            self._store,
            Writes(self._store, lambda: None),
            clock,
            planner=planner,
            streams=NoStream(),
        )
        self._consumers: list[tuple[tuple[str, ...], str, Handler]] = [
            (
                followup_contacts.SUBJECTS,
                followup_contacts.CONSUMER,
                followup_contacts.ContactsHandler(reactions),
            ),
            (
                followup_interactions.SUBJECTS,
                followup_interactions.CONSUMER,
                followup_interactions.InteractionsHandler(reactions),
            ),
        ]

    async def act(self, op: Op, at: datetime, step: int) -> bool:
        raise AssertionError("the follow-up service has no own commands in these histories")

    async def deliver(self, event: IncomingEvent) -> None:
        for subjects, consumer, handler in self._consumers:
            if any(matches(pattern, event.subject) for pattern in subjects):
                with acting_as(worker_identity("followup", consumer)):
                    await handler(event)
                return
        raise AssertionError(f"no follow-up consumer filters on {event.subject}")

    async def view(self, history: History) -> View:
        """Each promise made in an interaction, by what it is (`i1.promise0`): the contact it
        sits on, its status, the kinds of entry in its history, whether it holds its text.
        Win-backs only as whether a contact has one open: someone has to call them. (Their ids
        come from whichever inactivity event made them, and a lapse that a later purchase
        makes stale may be skipped or made and kept at once: both leave nobody to call.)
        Which contacts have a profile kept, with its time zone. An erased promise is left out,
        as if never made: it holds nothing about the person (a rule checks that)."""
        view: View = {}
        for p in await self._store.made_between(None, None):
            if p.erased_at is not None:
                continue
            if p.kind is PromiseKind.WIN_BACK:
                if p.is_open:
                    view[f"win-back on {p.contact_id}"] = "open"
                continue
            label = history.promise_labels.get(p.id, (p.id, ""))[0]
            actions = "+".join(sorted({h.action.value for h in p.history}))
            text = "with its text" if p.text else "without text"
            view[f"promise {label}"] = f"on {p.contact_id}, {p.status.value}, {actions}, {text}"
        for contact_id in history.contacts():
            profile = await self._store.profile(contact_id)
            if profile is not None:
                view[f"profile of {contact_id}"] = f"time zone {profile.time_zone or '(none)'}"
        return view

    async def broken_rules(self, history: History) -> list[str]:
        """No promise (open or closed) left on an erased or merged-away contact, none of an
        erased one holding its text; a promise moved to a survivor says so in its history (an
        entry whose to_value is the survivor); no profile kept of a contact that is gone."""
        broken: list[str] = []
        for p in await self._store.made_between(None, None):
            label, made_for = history.promise_labels.get(p.id, (f"{p.kind.value} {p.id}", ""))
            if p.erased_at is not None:
                if p.text != ERASED_TEXT or p.is_open:
                    broken.append(f"the erased promise {label} holds its text or is open")
                continue
            fate = history.fate(p.contact_id)
            if fate != "live":
                broken.append(f"promise {label} ({p.status.value}) on {p.contact_id}, {fate}")
            elif (
                made_for
                and p.contact_id != made_for
                and not any(h.to_value == p.contact_id for h in p.history)
            ):
                broken.append(
                    f"promise {label} moved from {made_for} to {p.contact_id}"
                    " with no history entry saying so"
                )
        for contact_id in history.contacts():
            fate = history.fate(contact_id)
            if fate != "live" and await self._store.profile(contact_id) is not None:
                broken.append(f"the profile of {contact_id} is kept, though {fate}")
        return broken

    async def close(self) -> None:
        await self._store.close()


# --- contacts -------------------------------------------------------------------------------------


class ContactsRig:
    """The contacts service: its own creates, merges and erasures, and its consumer of
    interactions moving last touch and last purchase."""

    def __init__(self, directory: Path) -> None:
        clock = ManualClock(NOW)
        self._store = SqliteContactStore(
            directory / "contacts.db", contacts_codec.encode, clock, synchronous="OFF"
        )
        self._writes = Writes(self._store, lambda: None)
        self._commands = ContactCommands(
            self._store,
            self._writes,
            clock,
            active_window=ACTIVE_WINDOW,
            default_phone_region="ES",
        )
        reactions = ContactReactions(self._store, self._writes, clock, active_window=ACTIVE_WINDOW)
        self._handler = contacts_interactions.InteractionsHandler(reactions)

    async def act(self, op: Op, at: datetime, step: int) -> bool:
        match op:
            case Create(contact=c):
                # As ContactCommands.create commits it, with the history's id.
                contact = new_contact(c, at)
                created = contact_events.ContactCreated(contact, SUPERVISOR.subject, at)
                await self._writes.commit(ContactChange(saves=[(contact, 0)], events=[created]))
            case Merge(merged=m, survivor=s):
                await self._commands.merge(s, m, f"merge-{step}", SUPERVISOR)
            case Erase(contact=c):
                await self._commands.erase(c, "asked to be forgotten", SUPERVISOR)
            case _:
                raise AssertionError(f"not a command of the contacts service: {op!r}")
        return True

    async def deliver(self, event: IncomingEvent) -> None:
        with acting_as(worker_identity("contacts", contacts_interactions.CONSUMER)):
            await self._handler(event)

    async def view(self, history: History) -> View:
        """For each contact: gone (how), or its status, last touch and last purchase."""
        view: View = {}
        for contact_id in history.contacts():
            c = await self._store.get(contact_id)
            if c is None:
                view[contact_id] = "missing"
            elif c.erased_at is not None:
                view[contact_id] = "erased"
            elif c.merged_into_id:
                view[contact_id] = f"merged into {c.merged_into_id}"
            else:
                view[contact_id] = (
                    f"{c.status.value}, last touch {stamp(c.last_interaction_at)},"
                    f" last purchase {stamp(c.last_purchase_at)}"
                )
        return view

    async def broken_rules(self, history: History) -> list[str]:
        return []  # what contacts keeps of a gone contact is its own commands' business

    async def close(self) -> None:
        await self._store.close()


# --- interactions ---------------------------------------------------------------------------------


class InteractionsRig:
    """The interactions service: touches recorded by callers (its own commands, which look the
    contact up in its read model) and its consumer of contacts keeping that model and
    cascading erasures and merges to the timeline."""

    def __init__(self, directory: Path) -> None:
        clock = ManualClock(NOW)
        self._store = SqliteInteractionStore(
            directory / "interactions.db", interactions_codec.encode, clock, synchronous="OFF"
        )
        writes = Writes(self._store, lambda: None)
        self._commands = InteractionCommands(self._store, writes, clock)
        reactions = InteractionReactions(self._store, writes, clock, streams=NoStream())
        self._handler = interactions_contacts.ContactsHandler(reactions)
        self._recorded: dict[str, str] = {}  # the history's name of a touch -> its id here

    async def act(self, op: Op, at: datetime, step: int) -> bool:
        assert isinstance(op, Interact), f"not a command of the interactions service: {op!r}"
        draft, promises = draft_of(op, at)
        try:
            recorded = await self._commands.record(
                op.contact, draft, promises, f"record-{op.interaction}", SUPERVISOR
            )
        except FailedPreconditionError:
            # Not heard of yet: the caller tries again later. Gone: refused for good.
            return await self._store.contact(op.contact) is not None
        self._recorded[op.interaction] = recorded.id
        return True

    async def deliver(self, event: IncomingEvent) -> None:
        with acting_as(worker_identity("interactions", interactions_contacts.CONSUMER)):
            await self._handler(event)

    async def view(self, history: History) -> View:
        """The read model (is each contact erased, merged into whom) and each touch that holds
        its words: the contact it sits on. An erased or refused touch is left out alike."""
        view: View = {}
        for contact_id in history.contacts():
            known = await self._store.contact(contact_id)
            if known is None:
                view[f"contact {contact_id}"] = "unknown"
                continue
            facts = ["erased" if known.erased_at else "not erased"]
            if known.merged_into_id:
                facts.append(f"merged into {known.merged_into_id}")
            view[f"contact {contact_id}"] = ", ".join(facts)
        for name, interaction_id in self._recorded.items():
            i = await self._store.get(interaction_id)
            if i is not None and i.erased_at is None:
                view[f"touch {name}"] = f"on {i.contact_id}"
        return view

    async def broken_rules(self, history: History) -> list[str]:
        """No touch keeps its words on a contact that is erased or merged away."""
        broken: list[str] = []
        for name, interaction_id in self._recorded.items():
            i = await self._store.get(interaction_id)
            assert i is not None
            words = i.details.summary or any(p.text for p in i.promises)
            if i.erased_at is not None:
                if words:
                    broken.append(f"the erased touch {name} keeps its words")
                continue
            fate = history.fate(i.contact_id)
            if fate != "live":
                broken.append(f"touch {name} keeps its words on {i.contact_id}, {fate}")
        return broken

    async def close(self) -> None:
        await self._store.close()


def _is_contacts_command(op: Op) -> bool:
    return isinstance(op, Create | Merge | Erase)


def _is_interactions_command(op: Op) -> bool:
    return isinstance(op, Interact)


FOLLOWUP = Service(
    "followup",
    (*followup_contacts.SUBJECTS, *followup_interactions.SUBJECTS),
    lambda op: False,
    FollowupRig,
)
CONTACTS = Service("contacts", contacts_interactions.SUBJECTS, _is_contacts_command, ContactsRig)
INTERACTIONS = Service(
    "interactions", interactions_contacts.SUBJECTS, _is_interactions_command, InteractionsRig
)
