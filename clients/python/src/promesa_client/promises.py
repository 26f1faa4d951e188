"""`client.promises`: the promise ledger, its statistics and the reminder stream
(crm.followup.v1.FollowupService)."""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import grpc

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import promise_pb2, reminder_pb2
from promesa_client import _fields, errors
from promesa_client._connection import Connection
from promesa_client._fields import EnumArg
from promesa_client.pages import Page, Pager

Promise = promise_pb2.Promise
Evidence = promise_pb2.Evidence
PromiseStats = followup_pb.PromiseStats
ReminderDelivery = reminder_pb2.ReminderDelivery
# One reminder (`.reminder`) and where it is in the stream (`.resume_token`).
ReminderEvent = followup_pb.StreamRemindersResponse

RESUME_TOKEN_KEY = "x-resume-token"
# Waits between reconnects of the reminder stream when the service keeps refusing it.
_RECONNECT_FIRST, _RECONNECT_MAX = 0.5, 10.0


def _id_and_etag(promise: str | Promise, etag: str | None) -> tuple[str, str]:
    """A message carries its own etag; an explicit etag wins; a bare id sends none (the change
    then applies to whatever version is current)."""
    if isinstance(promise, str):
        return promise, etag or ""
    return promise.id, promise.etag if etag is None else etag


class Promises:
    """Make, read and move promises through their lifecycle; statistics; live reminders."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._stub: followup_grpc.FollowupServiceAsyncStub | None = None

    @property
    def stub(self) -> followup_grpc.FollowupServiceAsyncStub:
        """The generated stub, for an RPC the SDK does not wrap (pass `metadata` yourself)."""
        if self._stub is None:
            self._stub = followup_grpc.FollowupServiceStub(self._conn.channel("followup"))
        return self._stub

    async def create(
        self,
        /,
        contact_id: str,
        *,
        text: str,
        due_at: datetime,
        owner_id: str,
        kind: EnumArg = "other",
        channel: EnumArg | None = None,
        priority: EnumArg | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Promise:
        """Makes a promise owned by `owner_id` (other Promise fields as keywords: `team=`,
        `source_interaction_id=`, `follows_promise_id=`). One request_id serves every retry of
        this call, so a retry never makes a second promise."""
        promise = Promise(contact_id=contact_id, text=text, owner_id=owner_id)
        _fields.assign(
            promise,
            {"due_at": due_at, "channel": channel, "kind": kind, "priority": priority, **fields},
            "promise.",
        )
        request = followup_pb.CreatePromiseRequest(
            promise=promise, request_id=request_id or str(uuid.uuid4())
        )
        reply = await self._conn.call(self.stub.CreatePromise, request, timeout)
        return reply.promise

    async def get(self, id: str, *, wait: float = 0.0, timeout: float | None = None) -> Promise:
        """One promise by id, with its history.

        A promise made in an interaction reaches the ledger from an event, a moment after
        `interactions.record` returns. With `wait` seconds, NotFound is asked again while that
        lasts: `await client.promises.get(made.id, wait=10)` returns once it is tracked."""
        request = followup_pb.GetPromiseRequest(id=id)
        give_up = time.monotonic() + wait
        pause = 0.05
        while True:
            try:
                reply = await self._conn.call(self.stub.GetPromise, request, timeout)
            except errors.NotFound:
                if time.monotonic() + pause > give_up:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            return reply.promise

    def list(
        self,
        *,
        owner_id: str = "",
        team: str = "",
        contact_id: str = "",
        status: EnumArg | None = None,
        due_after: datetime | None = None,
        due_before: datetime | None = None,
        overdue_only: bool = False,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Pager[Promise]:
        """Promises matching every filter given, earliest due first (`status="open"`)."""
        template = followup_pb.ListPromisesRequest(
            owner_id=owner_id,
            team=team,
            contact_id=contact_id,
            overdue_only=overdue_only,
            page_size=page_size,
        )
        _fields.assign(
            template, {"status": status, "due_after": due_after, "due_before": due_before}
        )

        async def fetch(token: str) -> Page[Promise]:
            request = followup_pb.ListPromisesRequest()
            request.CopyFrom(template)
            request.page_token = token
            reply = await self._conn.call(self.stub.ListPromises, request, timeout)
            return Page(list(reply.promises), reply.next_page_token)

        return Pager(fetch, page_token)

    async def keep(
        self,
        promise: str | Promise,
        *,
        evidence: str | Evidence | None = None,
        interaction_id: str = "",
        etag: str | None = None,
        timeout: float | None = None,
    ) -> Promise:
        """Marks the promise kept; `evidence` is a note on what was done (or an Evidence)."""
        promise_id, current_etag = _id_and_etag(promise, etag)
        if isinstance(evidence, Evidence):
            proof = evidence
        else:
            proof = Evidence(note=evidence or "", interaction_id=interaction_id)
        request = followup_pb.KeepPromiseRequest(id=promise_id, evidence=proof, etag=current_etag)
        reply = await self._conn.call(self.stub.KeepPromise, request, timeout)
        return reply.promise

    async def reassign(
        self,
        promise: str | Promise,
        new_owner_id: str,
        reason: str,
        *,
        new_team: str = "",
        etag: str | None = None,
        timeout: float | None = None,
    ) -> Promise:
        """Hands the promise to another owner (and team, when given)."""
        promise_id, current_etag = _id_and_etag(promise, etag)
        request = followup_pb.ReassignPromiseRequest(
            id=promise_id,
            new_owner_id=new_owner_id,
            reason=reason,
            new_team=new_team,
            etag=current_etag,
        )
        reply = await self._conn.call(self.stub.ReassignPromise, request, timeout)
        return reply.promise

    async def renegotiate(
        self,
        promise: str | Promise,
        new_due_at: datetime,
        reason: str,
        *,
        customer_agreed: bool = False,
        etag: str | None = None,
        timeout: float | None = None,
    ) -> Promise:
        """Moves the due time (RenegotiateDueDate)."""
        promise_id, current_etag = _id_and_etag(promise, etag)
        request = followup_pb.RenegotiateDueDateRequest(
            id=promise_id,
            new_due_at=_fields.timestamp(new_due_at, "new_due_at"),
            reason=reason,
            customer_agreed=customer_agreed,
            etag=current_etag,
        )
        reply = await self._conn.call(self.stub.RenegotiateDueDate, request, timeout)
        return reply.promise

    async def pause(
        self,
        promise: str | Promise,
        reason: str,
        *,
        etag: str | None = None,
        timeout: float | None = None,
    ) -> Promise:
        """Stops the clock while waiting on the customer (`reason`: what they must do)."""
        promise_id, current_etag = _id_and_etag(promise, etag)
        request = followup_pb.PausePromiseRequest(id=promise_id, reason=reason, etag=current_etag)
        reply = await self._conn.call(self.stub.PausePromise, request, timeout)
        return reply.promise

    async def resume(
        self,
        promise: str | Promise,
        reason: str = "",
        *,
        etag: str | None = None,
        timeout: float | None = None,
    ) -> Promise:
        """Restarts the clock; the due time moves by the length of the pause."""
        promise_id, current_etag = _id_and_etag(promise, etag)
        request = followup_pb.ResumePromiseRequest(id=promise_id, reason=reason, etag=current_etag)
        reply = await self._conn.call(self.stub.ResumePromise, request, timeout)
        return reply.promise

    async def cancel(
        self,
        promise: str | Promise,
        reason: str,
        *,
        etag: str | None = None,
        timeout: float | None = None,
    ) -> Promise:
        """Closes a promise that will not be kept (the reason is required)."""
        promise_id, current_etag = _id_and_etag(promise, etag)
        request = followup_pb.CancelPromiseRequest(id=promise_id, reason=reason, etag=current_etag)
        reply = await self._conn.call(self.stub.CancelPromise, request, timeout)
        return reply.promise

    async def confirm(self, id: str, satisfaction: int, *, timeout: float | None = None) -> Promise:
        """The customer confirms a kept promise was kept, and how well (1 to 5)."""
        request = followup_pb.ConfirmByCustomerRequest(id=id, satisfaction=satisfaction)
        reply = await self._conn.call(self.stub.ConfirmByCustomer, request, timeout)
        return reply.promise

    def deliveries(
        self,
        *,
        promise_id: str = "",
        owner_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Pager[ReminderDelivery]:
        """Reminders scheduled and how their delivery went, latest scheduled first."""

        async def fetch(token: str) -> Page[ReminderDelivery]:
            request = followup_pb.ListReminderDeliveriesRequest(
                promise_id=promise_id, owner_id=owner_id, page_size=page_size, page_token=token
            )
            reply = await self._conn.call(self.stub.ListReminderDeliveries, request, timeout)
            return Page(list(reply.reminder_deliveries), reply.next_page_token)

        return Pager(fetch, page_token)

    async def stats(
        self,
        grouping: EnumArg = "all",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        timeout: float | None = None,
    ) -> builtins.list[PromiseStats]:
        """Promise keeping per "owner", "team", "channel", "priority" or "all", over promises
        made in [since, until); one row per group, ordered by key."""
        request = followup_pb.GetPromiseStatsRequest()
        _fields.assign(
            request,
            {"grouping": grouping, "window_start_at": since, "window_end_at": until},
        )
        reply = await self._conn.call(self.stub.GetPromiseStats, request, timeout)
        return list(reply.stats)

    async def reminders(
        self,
        owner_id: str,
        resume_after: str = "",
        *,
        on_disconnect: Callable[[errors.PromesaError], None] | None = None,
    ) -> AsyncIterator[ReminderEvent]:
        """Reminders for `owner_id` as they fall due, for as long as the caller reads.

        Each item has `.reminder` and `.resume_token`. When the stream breaks with UNAVAILABLE
        (a restart, a lost connection) it reconnects by itself, resuming just after the last
        reminder read (or where the broken stream started, read from its x-resume-token), so
        nothing is missed and nothing comes twice. Keep the last `resume_token` to resume
        across runs. `on_disconnect` is told of each break (a UI may show it). Other failures
        are raised."""
        token = resume_after
        wait = _RECONNECT_FIRST
        while True:
            request = followup_pb.StreamRemindersRequest(owner_id=owner_id, resume_after=token)
            call = self.stub.StreamReminders(
                request, metadata=await self._conn.metadata(), wait_for_ready=True
            )
            failure: errors.PromesaError
            try:
                started = await call.initial_metadata()
                if not token:
                    token = _metadata_value(started, RESUME_TOKEN_KEY)
                async for item in call:
                    wait = _RECONNECT_FIRST  # it works again: a later break waits little
                    token = item.resume_token
                    yield item
                failure = errors.Unavailable(grpc.StatusCode.UNAVAILABLE, "stream ended")
            except grpc.aio.AioRpcError as exc:
                failure = errors.from_rpc_error(exc)
                if not isinstance(failure, errors.Unavailable):
                    raise failure from exc
            finally:
                call.cancel()
            if on_disconnect is not None:
                on_disconnect(failure)
            # A service that answers but refuses the stream (draining, its NATS away) would
            # otherwise be asked again at once, for ever; reaching it is gRPC's to wait for.
            await asyncio.sleep(wait)
            wait = min(wait * 2, _RECONNECT_MAX)


def _metadata_value(metadata: Any, key: str) -> str:
    for found_key, value in metadata or ():
        if found_key == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""
