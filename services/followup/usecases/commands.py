"""What callers do to promises: make one, then keep, hand over, move, pause, resume, cancel or
have it confirmed. Each checks what was sent, decides through the domain, commits once."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

import structlog

from followup import authorization, validation
from followup.domain import feedback, lifecycle, notices
from followup.domain.model import Evidence, Promise, PromiseDraft, PromiseKind, Status
from followup.domain.reminders import NoticeReason
from followup.ports import Change, PromiseStore
from followup.usecases.planning import PromisePlanner, new_promise
from followup.usecases.queries import PromiseQueries, find
from promesa.auth import Identity
from promesa.clock import Clock
from promesa.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    StaleEtagError,
    Violations,
)
from promesa.ids import new_id
from promesa.instants import DEFAULT_HORIZON
from promesa.usecases import CreateRequest, Writes, check_request_id, create_once, retry_on_conflict

log = structlog.get_logger(__name__)

Step = Callable[[Promise, datetime], lifecycle.Result]
Rule = Callable[[Identity, Promise], None]  # an authorization rule: raises when refused


class PromiseCommands:
    def __init__(
        self,
        store: PromiseStore,
        writes: Writes[Change],
        clock: Clock,
        *,
        queries: PromiseQueries,
        planner: PromisePlanner,
        promise_horizon: timedelta = DEFAULT_HORIZON,
        ask_satisfaction: bool = False,
    ) -> None:
        """`promise_horizon` (CRM_PROMISE_HORIZON_DAYS) bounds every due time a caller gives;
        `ask_satisfaction` (CRM_FEEDBACK_SIGNING_KEY set): a kept promise asks the customer."""
        self._ask = ask_satisfaction
        self._store = store
        self._writes = writes
        self._clock = clock
        self._queries = queries
        self._planner = planner
        self._horizon = promise_horizon

    async def create(self, draft: PromiseDraft, request_id: str, who: Identity) -> Promise:
        """A new promise, exactly once per request id: a retry gets the first one, even once
        its due time has passed."""
        request = CreateRequest.of(request_id, "create", draft)

        async def make() -> Promise:
            now = self._clock.now()
            v = Violations()
            check_request_id(request_id, v)
            checked = validation.check_draft(draft, v, now, self._horizon)
            if checked.follows_promise_id and validation.usable_id(checked.follows_promise_id):
                earlier = await self._store.get(checked.follows_promise_id)
                v.check(
                    earlier is not None,
                    "promise.follows_promise_id",
                    f"no promise {checked.follows_promise_id!r}",
                )
            v.raise_if_any()
            team = authorization.create_promise(who, checked.owner_id, checked.team)
            promise = new_promise(new_id(), replace(checked, team=team), who.subject, now)
            profile = await self._store.profile(promise.contact_id)
            promise = self._planner.levelled(promise, profile)  # its service level
            change = Change(idempotency=request.key(promise.id))
            self._planner.made(change, promise, who.subject, now)
            await self._writes.commit(change)
            log.info("promise_made", promise_id=promise.id, owner_id=promise.owner_id)
            return promise

        return await create_once(
            request, self._store, load=partial(self._queries.get, who=who), create=make
        )

    async def keep(self, promise_id: str, etag: str, evidence: Evidence, who: Identity) -> Promise:
        """Kept; the customer is then asked how we did (a satisfaction request, sent as a
        notice is), unless requests are off or the customer asked for nothing (a win-back)."""
        v = Violations()
        evidence = validation.check_evidence(v, evidence)
        v.raise_if_any()

        def step(p: Promise, now: datetime) -> lifecycle.Result:
            kept, events = lifecycle.keep(p, evidence, who.subject, now)
            if self._ask and feedback.asked_when_kept(kept):
                kept = replace(kept, satisfaction_requested_at=now)
            return kept, events

        return await self._change(
            promise_id,
            etag,
            who,
            authorization.keep_promise,
            step,
            landed=lambda p: p.status is Status.KEPT and p.evidence == evidence,
            notice=lambda p: (
                NoticeReason.PROMISE_KEPT if p.satisfaction_requested_at is not None else None
            ),
        )

    async def reassign(
        self, promise_id: str, etag: str, new_owner: str, new_team: str, reason: str, who: Identity
    ) -> Promise:
        v = Violations()
        new_owner, new_team = validation.check_new_owner(v, new_owner, new_team)
        reason = validation.check_reason(v, reason)
        v.raise_if_any()

        def step(p: Promise, now: datetime) -> lifecycle.Result:
            if p.owner_id == new_owner:
                raise InvalidArgumentError(
                    [FieldViolation("new_owner_id", "is already the owner: name someone else")]
                )
            return lifecycle.reassign(p, new_owner, new_team, reason, who.subject, now)

        return await self._change(promise_id, etag, who, authorization.reassign_promise, step)

    async def renegotiate(
        self,
        promise_id: str,
        etag: str,
        new_due: datetime | None,
        reason: str,
        customer_agreed: bool,
        who: Identity,
    ) -> Promise:
        v = Violations()
        validation.check_new_due(v, new_due, customer_agreed, self._clock.now(), self._horizon)
        reason = validation.check_reason(v, reason)
        v.raise_if_any()
        assert new_due is not None
        return await self._change(
            promise_id,
            etag,
            who,
            authorization.renegotiate_due_date,
            lambda p, now: lifecycle.renegotiate(
                p, new_due, reason, customer_agreed, who.subject, now
            ),
            notice=lambda p: NoticeReason.DUE_DATE_RENEGOTIATED,  # the customer hears the date
        )

    async def pause(self, promise_id: str, etag: str, reason: str, who: Identity) -> Promise:
        v = Violations()
        reason = validation.check_reason(v, reason)
        v.raise_if_any()
        return await self._change(
            promise_id,
            etag,
            who,
            authorization.pause_promise,
            lambda p, now: lifecycle.pause(p, reason, who.subject, now),
        )

    async def resume(self, promise_id: str, etag: str, reason: str, who: Identity) -> Promise:
        v = Violations()
        reason = validation.check_reason(v, reason, required=False)
        v.raise_if_any()
        return await self._change(
            promise_id,
            etag,
            who,
            authorization.resume_promise,
            lambda p, now: lifecycle.resume(p, reason, who.subject, now),
        )

    async def cancel(self, promise_id: str, etag: str, reason: str, who: Identity) -> Promise:
        v = Violations()
        reason = validation.check_reason(v, reason)
        v.raise_if_any()
        return await self._change(
            promise_id,
            etag,
            who,
            authorization.cancel_promise,
            lambda p, now: lifecycle.cancel(p, reason, who.subject, now),
            landed=lambda p: p.status is Status.CANCELLED and p.cancel_reason == reason,
        )

    async def confirm(self, promise_id: str, satisfaction: int, who: Identity) -> Promise:
        v = Violations()
        validation.check_satisfaction(v, satisfaction)
        v.raise_if_any()

        def step(p: Promise, now: datetime) -> lifecycle.Result:
            if p.status is not Status.KEPT:
                raise InvalidArgumentError(
                    [FieldViolation("id", "the promise is not kept: only a kept one is confirmed")]
                )
            return lifecycle.confirm(p, satisfaction, who.subject, now)

        return await self._change(promise_id, "", who, authorization.confirm_by_customer, step)

    async def _change(
        self,
        promise_id: str,
        etag: str,
        who: Identity,
        rule: Rule,
        step: Step,
        *,
        notice: Callable[[Promise], NoticeReason | None] = lambda p: None,
        landed: Callable[[Promise], bool] = lambda p: False,
    ) -> Promise:
        """Reads the promise, checks the caller's `rule` on it, applies `step` and commits with
        its new reminders, again on fresh data when another writer got there first. With an
        etag, the caller's version must still be current (else ABORTED, stale); `landed`
        recognises a retry of a change already made."""

        async def attempt() -> Promise:
            current = await find(self._store, promise_id)
            rule(who, current)  # on every attempt: the promise may have changed hands meanwhile
            if landed(current):
                return current  # a retry: its etag is the one before the change it made
            if etag and etag != current.etag:
                raise StaleEtagError("promise", current.id)
            now = self._clock.now()
            try:
                updated, events = step(current, now)
            except lifecycle.PromiseStateError as exc:
                raise FailedPreconditionError(str(exc)) from None
            change = Change(
                saves=[(updated, current.version)],
                events=events,
                replans={updated.id: self._planner.replan(current, updated, now)},
            )
            if (reason := notice(updated)) is not None:
                change.added.append(notices.schedule(updated, reason, now, new_id()))
            await self._writes.commit(change)
            log.info("promise_changed", promise_id=updated.id, status=updated.status.value)
            return updated

        return await retry_on_conflict(attempt, resource="promise", resource_id=promise_id)


class SurveyState(enum.StrEnum):
    OPEN = "OPEN"  # waiting for the customer's answer
    ANSWERED = "ANSWERED"  # rated already: this use of the link records nothing
    THANKS = "THANKS"  # this answer was recorded
    INVALID = "INVALID"  # forged, damaged or expired, or the promise is gone: nothing recorded


@dataclass(frozen=True)
class SurveyView:
    """What the satisfaction page may show: nothing internal (no text, owner, team or date)."""

    state: SurveyState
    kind: PromiseKind | None = None
    discreet: bool = True
    problems: tuple[str, ...] = ()  # what is wrong with an answer (message keys)


class SatisfactionSurvey:
    """The customer's side of a satisfaction request: what the link shows, and the answer,
    recorded once as the customer's own (`domain/feedback.py`). No identity is needed: the
    signed link is the customer's authority, for that one promise."""

    def __init__(
        self, store: PromiseStore, writes: Writes[Change], clock: Clock, *, key: bytes
    ) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock
        self._key = key

    async def view(self, token: str) -> SurveyView:
        found = await self._open(token)
        if isinstance(found, SurveyView):
            return found
        _, promise = found
        return await self._asking(promise)

    async def answer(self, token: str, score: str, comment: str) -> SurveyView:
        """THANKS once; ANSWERED for any later use; OPEN with the problems of a bad answer."""

        async def attempt() -> SurveyView:
            found = await self._open(token)
            if isinstance(found, SurveyView):
                return found
            _, promise = found
            answer, wrong = feedback.problems(score, comment)
            if answer is None:
                return replace(await self._asking(promise), problems=tuple(wrong))
            rated, events = feedback.record(promise, answer, self._clock.now())
            await self._writes.commit(Change(saves=[(rated, promise.version)], events=events))
            log.info("customer_satisfaction_given", promise_id=promise.id, score=answer.score)
            return SurveyView(SurveyState.THANKS, promise.kind)

        return await retry_on_conflict(attempt, resource="promise", resource_id="satisfaction")

    async def _open(self, token: str) -> SurveyView | tuple[feedback.Link, Promise]:
        try:
            link = feedback.verify(token, self._key, self._clock.now())
        except feedback.LinkError as exc:
            log.info("satisfaction_link_refused", why=str(exc))
            return SurveyView(SurveyState.INVALID)
        promise = await self._store.get(link.promise_id)
        if promise is None or not feedback.answerable(promise, link):
            return SurveyView(SurveyState.INVALID)
        if feedback.answered(promise):
            return SurveyView(SurveyState.ANSWERED, promise.kind)
        return link, promise

    async def _asking(self, promise: Promise) -> SurveyView:
        prefs = await self._store.profile(promise.contact_id)
        return SurveyView(SurveyState.OPEN, promise.kind, discreet=prefs is None or prefs.discreet)
