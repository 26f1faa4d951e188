"""The FollowupService servicer: proto in, use case, proto out; errors are mapped at the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import reminder_pb2
from followup.domain.model import Evidence
from followup.entrypoints.proto_mapping import (
    delivery_to_proto,
    draft_from_proto,
    filter_from_request,
    grouping_from_proto,
    promise_to_proto,
    stats_to_proto,
)
from followup.usecases import PromiseLedger
from promesa.auth import current_identity
from promesa.clock import Clock
from promesa.errors import FieldViolation, InvalidArgumentError, Violations
from promesa.interceptors import Context
from promesa.protos import from_timestamp

SERVICE_NAME = followup_pb.DESCRIPTOR.services_by_name["FollowupService"].full_name


class ReminderSubscription(Protocol):
    def __aiter__(self) -> AsyncIterator[reminder_pb2.Reminder]: ...

    async def close(self) -> None: ...


class ReminderFeed(Protocol):
    """Reminders addressed to one user, as they are sent, from the moment of subscribing."""

    async def subscribe(self, user_id: str) -> ReminderSubscription: ...


class FollowupServicer(followup_grpc.FollowupServiceServicer):
    def __init__(self, ledger: PromiseLedger, clock: Clock, feed: ReminderFeed) -> None:
        self._ledger = ledger
        self._clock = clock
        self._feed = feed

    async def CreatePromise(
        self, request: followup_pb.CreatePromiseRequest, context: Context
    ) -> followup_pb.CreatePromiseResponse:
        v = Violations()
        draft = draft_from_proto(request.promise, v)
        v.raise_if_any()
        promise = await self._ledger.create(draft, request.request_id, current_identity())
        return followup_pb.CreatePromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def GetPromise(
        self, request: followup_pb.GetPromiseRequest, context: Context
    ) -> followup_pb.GetPromiseResponse:
        promise = await self._ledger.get(request.id)
        return followup_pb.GetPromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def ListPromises(
        self, request: followup_pb.ListPromisesRequest, context: Context
    ) -> followup_pb.ListPromisesResponse:
        v = Violations()
        f = filter_from_request(request, v)
        v.raise_if_any()
        page = await self._ledger.list(
            f, request.overdue_only, request.page_size, request.page_token
        )
        return followup_pb.ListPromisesResponse(
            promises=[promise_to_proto(p, self._clock) for p in page.promises],
            next_page_token=page.next_page_token,
        )

    async def KeepPromise(
        self, request: followup_pb.KeepPromiseRequest, context: Context
    ) -> followup_pb.KeepPromiseResponse:
        evidence = Evidence(request.evidence.interaction_id, request.evidence.note.strip())
        promise = await self._ledger.keep(request.id, request.etag, evidence, current_identity())
        return followup_pb.KeepPromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def ReassignPromise(
        self, request: followup_pb.ReassignPromiseRequest, context: Context
    ) -> followup_pb.ReassignPromiseResponse:
        promise = await self._ledger.reassign(
            request.id,
            request.etag,
            request.new_owner_id,
            request.new_team,
            request.reason,
            current_identity(),
        )
        return followup_pb.ReassignPromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def RenegotiateDueDate(
        self, request: followup_pb.RenegotiateDueDateRequest, context: Context
    ) -> followup_pb.RenegotiateDueDateResponse:
        promise = await self._ledger.renegotiate(
            request.id,
            request.etag,
            from_timestamp(request, "new_due_at"),
            request.reason,
            request.customer_agreed,
            current_identity(),
        )
        return followup_pb.RenegotiateDueDateResponse(
            promise=promise_to_proto(promise, self._clock)
        )

    async def PausePromise(
        self, request: followup_pb.PausePromiseRequest, context: Context
    ) -> followup_pb.PausePromiseResponse:
        promise = await self._ledger.pause(
            request.id, request.etag, request.reason, current_identity()
        )
        return followup_pb.PausePromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def ResumePromise(
        self, request: followup_pb.ResumePromiseRequest, context: Context
    ) -> followup_pb.ResumePromiseResponse:
        promise = await self._ledger.resume(
            request.id, request.etag, request.reason, current_identity()
        )
        return followup_pb.ResumePromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def CancelPromise(
        self, request: followup_pb.CancelPromiseRequest, context: Context
    ) -> followup_pb.CancelPromiseResponse:
        promise = await self._ledger.cancel(
            request.id, request.etag, request.reason, current_identity()
        )
        return followup_pb.CancelPromiseResponse(promise=promise_to_proto(promise, self._clock))

    async def ConfirmByCustomer(
        self, request: followup_pb.ConfirmByCustomerRequest, context: Context
    ) -> followup_pb.ConfirmByCustomerResponse:
        promise = await self._ledger.confirm(request.id, request.satisfaction, current_identity())
        return followup_pb.ConfirmByCustomerResponse(promise=promise_to_proto(promise, self._clock))

    async def ListReminderDeliveries(
        self, request: followup_pb.ListReminderDeliveriesRequest, context: Context
    ) -> followup_pb.ListReminderDeliveriesResponse:
        page = await self._ledger.deliveries(
            request.promise_id, request.owner_id, request.page_size, request.page_token
        )
        return followup_pb.ListReminderDeliveriesResponse(
            reminder_deliveries=[delivery_to_proto(r) for r in page.deliveries],
            next_page_token=page.next_page_token,
        )

    async def GetPromiseStats(
        self, request: followup_pb.GetPromiseStatsRequest, context: Context
    ) -> followup_pb.GetPromiseStatsResponse:
        v = Violations()
        grouping = grouping_from_proto(request.grouping, v)
        v.raise_if_any()
        rows = await self._ledger.stats(
            grouping,
            from_timestamp(request, "window_start_at"),
            from_timestamp(request, "window_end_at"),
        )
        return followup_pb.GetPromiseStatsResponse(stats=[stats_to_proto(s) for s in rows])

    async def StreamReminders(
        self, request: followup_pb.StreamRemindersRequest, context: Context
    ) -> AsyncIterator[followup_pb.StreamRemindersResponse]:
        if not request.owner_id:
            raise InvalidArgumentError([FieldViolation("owner_id", "must name a user")])
        subscription = await self._feed.subscribe(request.owner_id)
        try:
            # Headers go out once listening, so a caller knows nothing sent from now is missed.
            await context.send_initial_metadata(())
            async for reminder in subscription:
                yield followup_pb.StreamRemindersResponse(reminder=reminder)
        finally:
            await subscription.close()
