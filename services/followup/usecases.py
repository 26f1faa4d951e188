"""What callers and events can do to promises: each use case validates, decides, commits once."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

import structlog

from followup.domain import lifecycle, notices
from followup.domain.contacts import ContactPreferences
from followup.domain.events import SYSTEM, PromiseMade
from followup.domain.model import Channel, Evidence, Priority, Promise, PromiseKind, Status
from followup.domain.reminders import (
    NoticeReason,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    delivery,
    plan,
)
from followup.domain.stats import Grouping, PromiseStats, compute
from followup.ports import Change, PromiseFilter, PromiseStore
from promesa import pagination
from promesa.auth import Identity
from promesa.clock import Clock
from promesa.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    StaleEtagError,
    Violations,
)
from promesa.ids import derived_id, fingerprint, new_id
from promesa.storage import (
    AlreadyHandledError,
    DuplicateRequestError,
    IdempotencyKey,
    VersionConflictError,
)

log = structlog.get_logger(__name__)

MAX_TEXT = 2000
MAX_REASON = 1000
MAX_ID = 200
COMPLAINT_TEXT = "Resolve the complaint and tell the customer what was done"
WIN_BACK_TEXT = "Find out why they left and invite them back"


@dataclass(frozen=True)
class PromiseDraft:
    """What a caller (or an interaction) says about a new promise."""

    contact_id: str
    text: str
    kind: PromiseKind | None
    owner_id: str
    due_at: datetime | None
    team: str = ""
    channel: Channel | None = None
    priority: Priority | None = None
    source_interaction_id: str = ""
    follows_promise_id: str = ""


@dataclass(frozen=True)
class PromisedInInteraction:
    id: str
    text: str
    due_at: datetime
    owner_id: str
    kind: PromiseKind | None


@dataclass(frozen=True)
class InteractionFacts:
    """The part of InteractionRecorded the follow-up service acts on."""

    interaction_id: str
    contact_id: str
    is_complaint: bool
    channel: Channel | None
    occurred_at: datetime
    agent_id: str
    team: str
    actor: str
    promises: tuple[PromisedInInteraction, ...]


@dataclass(frozen=True)
class Page:
    promises: Sequence[Promise]
    next_page_token: str


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: Sequence[ReminderDelivery]
    next_page_token: str


class PromiseLedger:
    """The follow-up service's use cases, free of gRPC, NATS and database types."""

    def __init__(
        self,
        store: PromiseStore,
        clock: Clock,
        *,
        policy: ReminderPolicy,
        supervisor_of: Callable[[str], str],
        max_handoffs: int = 2,
        complaint_resolution: timedelta = timedelta(hours=48),
        win_back_within: timedelta = timedelta(days=7),
        notify_when_made: bool = False,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        """`notify_when_made` (CRM_CUSTOMER_NOTICES) also tells the customer when a promise is
        made; a due date renegotiated with the customer's agreement is told to them always."""
        self._store = store
        self._clock = clock
        self._policy = policy
        self._supervisor_of = supervisor_of
        self._max_handoffs = max_handoffs
        self._complaint_resolution = complaint_resolution
        self._win_back_within = win_back_within
        self._notify_when_made = notify_when_made
        self._on_commit = on_commit

    async def _commit(self, change: Change) -> None:
        await self._store.commit(change)
        if change.events:
            self._on_commit()

    def _plan(self, p: Promise, now: datetime) -> list[ReminderDelivery]:
        return plan(p, now, self._policy, self._supervisor_of(p.team), new_id)

    def _made(self, change: Change, p: Promise, actor: str, now: datetime) -> None:
        """A new promise: saved, announced, its reminders planned and, when customer notices
        are on, the customer told that it is in hand."""
        change.saves.append((p, 0))
        change.events.append(PromiseMade(p, actor, now))
        change.replans[p.id] = self._plan(p, now)
        if self._notify_when_made and notices.told_when_made(p):
            change.added.append(notices.schedule(p, NoticeReason.PROMISE_MADE, now, new_id()))

    # --- commands from callers -------------------------------------------------------------

    async def create(self, draft: PromiseDraft, request_id: str, who: Identity) -> Promise:
        now = self._clock.now()
        v = Violations()
        _check_draft(draft, v, now)
        v.check(len(request_id) <= 100, "request_id", "must be at most 100 characters")
        if draft.follows_promise_id and v.check(
            len(draft.follows_promise_id) <= MAX_ID, "promise.follows_promise_id", "is too long"
        ):
            earlier = await self._store.get(draft.follows_promise_id)
            v.check(
                earlier is not None,
                "promise.follows_promise_id",
                f"no promise {draft.follows_promise_id!r}",
            )
        v.raise_if_any()
        digest = fingerprint(asdict(draft))
        if request_id:
            replayed = await self._replay(request_id, digest)
            if replayed is not None:
                return replayed
        promise = self._new(new_id(), draft, who.subject, now)
        key = IdempotencyKey(request_id, "create", digest, promise.id) if request_id else None
        change = Change(idempotency=key)
        self._made(change, promise, who.subject, now)
        try:
            await self._commit(change)
        except DuplicateRequestError:
            replayed = await self._replay(request_id, digest)
            assert replayed is not None
            return replayed
        log.info("promise_made", promise_id=promise.id, owner_id=promise.owner_id)
        return promise

    async def get(self, promise_id: str) -> Promise:
        if not promise_id:
            raise InvalidArgumentError([FieldViolation("id", "must not be empty")])
        promise = await self._store.get(promise_id)
        if promise is None:
            raise NotFoundError("promise", promise_id)
        return promise

    async def keep(self, promise_id: str, etag: str, evidence: Evidence, who: Identity) -> Promise:
        v = Violations()
        v.check(
            bool(evidence),
            "evidence",
            "give the id of the interaction that proves it, or a note of what was done",
        )
        v.check(len(evidence.note) <= MAX_TEXT, "evidence.note", "is too long")
        v.check(len(evidence.interaction_id) <= MAX_ID, "evidence.interaction_id", "is too long")
        v.raise_if_any()
        current = await self.get(promise_id)
        if current.status is Status.KEPT and current.evidence == evidence:
            return current  # a retry of a keep that already landed
        return await self._apply(
            current, etag, lambda p, now: lifecycle.keep(p, evidence, who.subject, now)
        )

    async def reassign(
        self, promise_id: str, etag: str, new_owner: str, new_team: str, reason: str, who: Identity
    ) -> Promise:
        v = Violations()
        v.check(bool(new_owner.strip()), "new_owner_id", "must name the new owner")
        v.check(len(new_owner) <= MAX_ID, "new_owner_id", "is too long")
        v.check(len(new_team) <= MAX_ID, "new_team", "is too long")
        _check_reason(reason, v)
        v.raise_if_any()
        current = await self.get(promise_id)
        if current.owner_id == new_owner.strip():
            raise InvalidArgumentError(
                [FieldViolation("new_owner_id", "is already the owner: name someone else")]
            )

        def step(p: Promise, now: datetime) -> lifecycle.Result:
            return lifecycle.reassign(
                p, new_owner.strip(), new_team.strip(), reason, who.subject, now
            )

        return await self._apply(current, etag, step)

    async def renegotiate(
        self,
        promise_id: str,
        etag: str,
        new_due: datetime | None,
        reason: str,
        customer_agreed: bool,
        who: Identity,
    ) -> Promise:
        now = self._clock.now()
        v = Violations()
        if v.check(new_due is not None, "new_due_at", "must be set"):
            assert new_due is not None
            v.check(new_due > now, "new_due_at", "must be in the future")
        _check_reason(reason, v)
        v.check(
            customer_agreed,
            "customer_agreed",
            "a due time moves only when the customer agreed to the new one",
        )
        v.raise_if_any()
        assert new_due is not None
        current = await self.get(promise_id)
        return await self._apply(
            current,
            etag,
            lambda p, at: lifecycle.renegotiate(
                p, new_due, reason, customer_agreed, who.subject, at
            ),
            notice=NoticeReason.DUE_DATE_RENEGOTIATED,  # the customer hears the new date
        )

    async def pause(self, promise_id: str, etag: str, reason: str, who: Identity) -> Promise:
        v = Violations()
        _check_reason(reason, v)
        v.raise_if_any()
        current = await self.get(promise_id)
        return await self._apply(
            current, etag, lambda p, now: lifecycle.pause(p, reason, who.subject, now)
        )

    async def resume(self, promise_id: str, etag: str, reason: str, who: Identity) -> Promise:
        v = Violations()
        v.check(len(reason) <= MAX_REASON, "reason", f"must be at most {MAX_REASON} characters")
        v.raise_if_any()
        current = await self.get(promise_id)
        return await self._apply(
            current, etag, lambda p, now: lifecycle.resume(p, reason, who.subject, now)
        )

    async def cancel(self, promise_id: str, etag: str, reason: str, who: Identity) -> Promise:
        v = Violations()
        _check_reason(reason, v)
        v.raise_if_any()
        current = await self.get(promise_id)
        if current.status is Status.CANCELLED and current.cancel_reason == reason.strip():
            return current  # a retry
        return await self._apply(
            current, etag, lambda p, now: lifecycle.cancel(p, reason.strip(), who.subject, now)
        )

    async def confirm(self, promise_id: str, satisfaction: int, who: Identity) -> Promise:
        v = Violations()
        v.check(1 <= satisfaction <= 5, "satisfaction", "must be from 1 to 5")
        v.raise_if_any()
        current = await self.get(promise_id)
        if current.status is not Status.KEPT:
            raise InvalidArgumentError(
                [FieldViolation("id", "the promise is not kept: only a kept one can be confirmed")]
            )
        return await self._apply(
            current, "", lambda p, now: lifecycle.confirm(p, satisfaction, who.subject, now)
        )

    async def _apply(
        self,
        current: Promise,
        etag: str,
        step: Callable[[Promise, datetime], lifecycle.Result],
        *,
        notice: NoticeReason | None = None,
    ) -> Promise:
        if etag and etag != current.etag:
            raise StaleEtagError("promise", current.id)
        now = self._clock.now()
        try:
            updated, events = step(current, now)
        except lifecycle.PromiseStateError as exc:
            raise FailedPreconditionError(str(exc)) from None
        planned = self._plan(updated, now)
        if current.handoff_count < updated.handoff_count > self._max_handoffs:
            # The runaround: handed over too often, so the supervisor hears of it now.
            supervisor = self._supervisor_of(updated.team)
            if supervisor:
                planned.append(
                    delivery(
                        updated, ReminderKind.ESCALATION, now, supervisor, self._policy, new_id()
                    )
                )
        change = Change(
            saves=[(updated, current.version)], events=events, replans={updated.id: planned}
        )
        if notice is not None:
            change.added.append(notices.schedule(updated, notice, now, new_id()))
        try:
            await self._commit(change)
        except VersionConflictError:
            raise StaleEtagError("promise", current.id) from None
        log.info("promise_changed", promise_id=updated.id, status=updated.status.value)
        return updated

    # --- queries -----------------------------------------------------------------------------

    async def list(
        self, f: PromiseFilter, overdue_only: bool, page_size: int, page_token: str
    ) -> Page:
        v = Violations()
        if f.due_after and f.due_before:
            v.check(f.due_after < f.due_before, "due_before", "must be later than due_after")
        v.raise_if_any()
        size = pagination.page_size(page_size)
        query = repr((f, overdue_only))
        cursor = pagination.decode_token(page_token, query)
        after = _pair(cursor)
        if overdue_only:
            f = replace(f, overdue_at=self._clock.now())
        rows = await self._store.list(f, after, size + 1)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = pagination.encode_token([_iso(last.due_at), last.id], query)
        return Page(rows[:size], token)

    async def deliveries(
        self, promise_id: str, owner_id: str, page_size: int, page_token: str
    ) -> DeliveryPage:
        size = pagination.page_size(page_size)
        query = f"{promise_id}|{owner_id}"
        before = _pair(pagination.decode_token(page_token, query))
        rows = await self._store.deliveries(promise_id, owner_id, before, size + 1)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = pagination.encode_token([_iso(last.scheduled_at), last.id], query)
        return DeliveryPage(rows[:size], token)

    async def stats(
        self, grouping: Grouping, start: datetime | None, end: datetime | None
    ) -> builtins.list[PromiseStats]:
        now = self._clock.now()
        if start is not None and end is not None and start >= end:
            raise InvalidArgumentError(
                [FieldViolation("window_end_at", "must be later than window_start_at")]
            )
        return compute(await self._store.made_between(start, end), grouping, now)

    # --- reactions to events -----------------------------------------------------------------

    async def record_interaction(
        self, consumer: str, event_id: str, facts: InteractionFacts
    ) -> bool:
        """One promise per promise made (idempotent by its id); a complaint with none gets a
        resolution promise by policy, owned by the agent who took it."""
        now = self._clock.now()
        drafts = [
            (
                p.id or derived_id(facts.interaction_id, "promise", str(i)),
                PromiseDraft(
                    contact_id=facts.contact_id,
                    text=p.text,
                    kind=p.kind or PromiseKind.OTHER,
                    owner_id=p.owner_id or facts.agent_id,
                    due_at=p.due_at,
                    team=facts.team,
                    channel=facts.channel,
                    source_interaction_id=facts.interaction_id,
                ),
            )
            for i, p in enumerate(facts.promises)
        ]
        if facts.is_complaint and not drafts:
            drafts.append(
                (
                    derived_id(facts.interaction_id, "complaint-resolution"),
                    PromiseDraft(
                        contact_id=facts.contact_id,
                        text=COMPLAINT_TEXT,
                        kind=PromiseKind.RESOLVE_COMPLAINT,
                        owner_id=facts.agent_id,
                        due_at=facts.occurred_at + self._complaint_resolution,
                        team=facts.team,
                        channel=facts.channel,
                        source_interaction_id=facts.interaction_id,
                        priority=Priority.HIGH,
                    ),
                )
            )
        known = {p.id for p in await self._store.get_many([pid for pid, _ in drafts])}
        actor = facts.actor or facts.agent_id or SYSTEM
        change = Change(handled=(consumer, event_id))
        for promise_id, draft in drafts:
            if promise_id in known:
                continue
            self._made(change, self._new(promise_id, draft, actor, now), actor, now)
        return await self._commit_reaction(change)

    async def win_back(
        self, consumer: str, event_id: str, contact_id: str, owner_id: str, team: str
    ) -> bool:
        """An inactive customer is worth a call: unless a win-back is already open."""
        now = self._clock.now()
        owner = owner_id or self._supervisor_of(team)
        open_ones = await self._store.open_of_kind(contact_id, PromiseKind.WIN_BACK)
        change = Change(handled=(consumer, event_id))
        if owner and not open_ones:
            draft = PromiseDraft(
                contact_id=contact_id,
                text=WIN_BACK_TEXT,
                kind=PromiseKind.WIN_BACK,
                owner_id=owner,
                due_at=now + self._win_back_within,
                team=team,
            )
            self._made(
                change, self._new(derived_id(event_id, "win-back"), draft, SYSTEM, now), SYSTEM, now
            )
        elif not owner:
            log.warning("win_back_without_owner", contact_id=contact_id, team=team)
        return await self._commit_reaction(change)

    async def erase_contact(self, consumer: str, event_id: str, contact_id: str) -> bool:
        now = self._clock.now()
        change = Change(handled=(consumer, event_id), forgotten_profiles=[contact_id])
        for p in await self._store.of_contact(contact_id):
            if p.erased_at is not None:
                continue
            erased, events = lifecycle.erase(p, now)
            change.saves.append((erased, p.version))
            change.events.extend(events)
            change.replans[p.id] = []
        return await self._commit_reaction(change)

    async def merge_contacts(
        self, consumer: str, event_id: str, survivor_id: str, merged_id: str
    ) -> bool:
        now = self._clock.now()
        change = Change(handled=(consumer, event_id), forgotten_profiles=[merged_id])
        for p in await self._store.of_contact(merged_id):
            moved = lifecycle.repoint(p, survivor_id, now)
            change.saves.append((moved, p.version))
            change.replans[p.id] = self._plan(moved, now)
        return await self._commit_reaction(change)

    async def remember_profile(
        self, consumer: str, event_id: str, profile: ContactPreferences
    ) -> bool:
        return await self._commit_reaction(Change(handled=(consumer, event_id), profiles=[profile]))

    async def _commit_reaction(self, change: Change) -> bool:
        """False when the event was handled before. A concurrent write by a caller makes the
        store refuse; raising lets JetStream redeliver and the reaction run again on fresh data."""
        try:
            await self._commit(change)
        except AlreadyHandledError:
            return False
        return True

    # --- helpers -----------------------------------------------------------------------------

    def _new(self, promise_id: str, d: PromiseDraft, actor: str, now: datetime) -> Promise:
        assert d.due_at is not None and d.kind is not None
        return lifecycle.created(
            Promise(
                id=promise_id,
                contact_id=d.contact_id,
                text=d.text.strip(),
                kind=d.kind,
                owner_id=d.owner_id.strip(),
                team=d.team.strip(),
                created_by=actor,
                due_at=d.due_at,
                created_at=now,
                channel=d.channel,
                priority=d.priority or Priority.NORMAL,
                source_interaction_id=d.source_interaction_id,
                follows_promise_id=d.follows_promise_id,
            )
        )

    async def _replay(self, request_id: str, digest: str) -> Promise | None:
        previous = await self._store.find_request(request_id)
        if previous is None:
            return None
        if previous.operation != "create" or previous.fingerprint != digest:
            raise InvalidArgumentError(
                [FieldViolation("request_id", "was already used for a different request")]
            )
        return await self.get(previous.resource_id)


def _check_draft(d: PromiseDraft, v: Violations, now: datetime) -> None:
    v.check(bool(d.contact_id.strip()), "promise.contact_id", "must name the contact")
    v.check(len(d.contact_id) <= MAX_ID, "promise.contact_id", "is too long")
    v.check(bool(d.text.strip()), "promise.text", "must say what was promised")
    v.check(len(d.text) <= MAX_TEXT, "promise.text", f"must be at most {MAX_TEXT} characters")
    v.check(d.kind is not None, "promise.kind", "must be set")
    v.check(bool(d.owner_id.strip()), "promise.owner_id", "must name the owner")
    v.check(len(d.owner_id) <= MAX_ID, "promise.owner_id", "is too long")
    v.check(len(d.team) <= MAX_ID, "promise.team", "is too long")
    if v.check(d.due_at is not None, "promise.due_at", "must be set"):
        assert d.due_at is not None
        v.check(d.due_at > now, "promise.due_at", "must be in the future")


def _check_reason(reason: str, v: Violations) -> None:
    v.check(bool(reason.strip()), "reason", "must say why")
    v.check(len(reason) <= MAX_REASON, "reason", f"must be at most {MAX_REASON} characters")


def _pair(cursor: list[object] | None) -> tuple[datetime, str] | None:
    """A page cursor is [an ISO instant, an id]; anything else was not made by us."""
    if cursor is None:
        return None
    try:
        at, key = cursor
        if isinstance(at, str) and isinstance(key, str):
            return datetime.fromisoformat(at), key
    except ValueError:
        pass
    raise InvalidArgumentError([FieldViolation("page_token", "is not a valid page token")])


def _iso(value: datetime) -> str:
    return value.isoformat()
