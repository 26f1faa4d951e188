"""What callers do to promises: make one, then keep, hand over, move, pause, resume, cancel or
have it confirmed. Each checks what was sent, decides through the domain, commits once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

import structlog

from followup import authorization, validation
from followup.domain import lifecycle, notices
from followup.domain.model import Evidence, Promise, PromiseDraft, Status
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
    ) -> None:
        """`promise_horizon` (CRM_PROMISE_HORIZON_DAYS) bounds every due time a caller gives."""
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
            change = Change(idempotency=request.key(promise.id))
            self._planner.made(change, promise, who.subject, now)
            await self._writes.commit(change)
            log.info("promise_made", promise_id=promise.id, owner_id=promise.owner_id)
            return promise

        return await create_once(
            request, self._store, load=partial(self._queries.get, who=who), create=make
        )

    async def keep(self, promise_id: str, etag: str, evidence: Evidence, who: Identity) -> Promise:
        v = Violations()
        evidence = validation.check_evidence(v, evidence)
        v.raise_if_any()
        return await self._change(
            promise_id,
            etag,
            who,
            authorization.keep_promise,
            lambda p, now: lifecycle.keep(p, evidence, who.subject, now),
            landed=lambda p: p.status is Status.KEPT and p.evidence == evidence,
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
            notice=NoticeReason.DUE_DATE_RENEGOTIATED,  # the customer hears the new date
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
        notice: NoticeReason | None = None,
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
            if notice is not None:
                change.added.append(notices.schedule(updated, notice, now, new_id()))
            await self._writes.commit(change)
            log.info("promise_changed", promise_id=updated.id, status=updated.status.value)
            return updated

        return await retry_on_conflict(attempt, resource="promise", resource_id=promise_id)
