"""The FollowupService servicer: proto in, use case, proto out; errors are mapped at the edge."""

from __future__ import annotations

from collections.abc import AsyncIterator

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import promise_pb2
from followup.domain.model import Promise
from followup.entrypoints.proto_mapping import (
    breach_to_proto,
    breach_window_from_request,
    delivery_to_proto,
    draft_from_proto,
    evidence_from_proto,
    filter_from_request,
    new_due_from_request,
    promise_to_proto,
    stats_query_from_request,
    stats_to_proto,
)
from followup.usecases import PromiseCommands, PromiseQueries
from promesa.auth import current_identity
from promesa.clock import Clock
from promesa.interceptors import Context

SERVICE_NAME = followup_pb.DESCRIPTOR.services_by_name["FollowupService"].full_name
# StreamReminders' initial metadata: the resume token of the stream's start, for an app that
# hangs up before it read a reminder (documented on the RPC).
RESUME_TOKEN_HEADER = "x-resume-token"


class FollowupServicer(followup_grpc.FollowupServiceServicer):
    def __init__(
        self,
        commands: PromiseCommands,
        queries: PromiseQueries,
        clock: Clock,
    ) -> None:
        self._commands = commands
        self._queries = queries
        self._clock = clock
        self._policy = queries.policy

    def _proto(self, promise: Promise) -> promise_pb2.Promise:
        return promise_to_proto(promise, self._clock, self._policy)

    async def CreatePromise(
        self, request: followup_pb.CreatePromiseRequest, context: Context
    ) -> followup_pb.CreatePromiseResponse:
        draft = draft_from_proto(request.promise)
        promise = await self._commands.create(draft, request.request_id, current_identity())
        return followup_pb.CreatePromiseResponse(promise=self._proto(promise))

    async def GetPromise(
        self, request: followup_pb.GetPromiseRequest, context: Context
    ) -> followup_pb.GetPromiseResponse:
        promise = await self._queries.get(request.id, current_identity())
        return followup_pb.GetPromiseResponse(promise=self._proto(promise))

    async def ListPromises(
        self, request: followup_pb.ListPromisesRequest, context: Context
    ) -> followup_pb.ListPromisesResponse:
        page = await self._queries.list(
            filter_from_request(request),
            request.overdue_only,
            request.page_size,
            request.page_token,
            current_identity(),
        )
        return followup_pb.ListPromisesResponse(
            promises=[self._proto(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    async def KeepPromise(
        self, request: followup_pb.KeepPromiseRequest, context: Context
    ) -> followup_pb.KeepPromiseResponse:
        promise = await self._commands.keep(
            request.id, request.etag, evidence_from_proto(request.evidence), current_identity()
        )
        return followup_pb.KeepPromiseResponse(promise=self._proto(promise))

    async def ReassignPromise(
        self, request: followup_pb.ReassignPromiseRequest, context: Context
    ) -> followup_pb.ReassignPromiseResponse:
        promise = await self._commands.reassign(
            request.id,
            request.etag,
            request.new_owner_id,
            request.new_team,
            request.reason,
            current_identity(),
        )
        return followup_pb.ReassignPromiseResponse(promise=self._proto(promise))

    async def RenegotiateDueDate(
        self, request: followup_pb.RenegotiateDueDateRequest, context: Context
    ) -> followup_pb.RenegotiateDueDateResponse:
        promise = await self._commands.renegotiate(
            request.id,
            request.etag,
            new_due_from_request(request),
            request.reason,
            request.customer_agreed,
            current_identity(),
        )
        return followup_pb.RenegotiateDueDateResponse(promise=self._proto(promise))

    async def PausePromise(
        self, request: followup_pb.PausePromiseRequest, context: Context
    ) -> followup_pb.PausePromiseResponse:
        promise = await self._commands.pause(
            request.id, request.etag, request.reason, current_identity()
        )
        return followup_pb.PausePromiseResponse(promise=self._proto(promise))

    async def ResumePromise(
        self, request: followup_pb.ResumePromiseRequest, context: Context
    ) -> followup_pb.ResumePromiseResponse:
        promise = await self._commands.resume(
            request.id, request.etag, request.reason, current_identity()
        )
        return followup_pb.ResumePromiseResponse(promise=self._proto(promise))

    async def CancelPromise(
        self, request: followup_pb.CancelPromiseRequest, context: Context
    ) -> followup_pb.CancelPromiseResponse:
        promise = await self._commands.cancel(
            request.id, request.etag, request.reason, current_identity()
        )
        return followup_pb.CancelPromiseResponse(promise=self._proto(promise))

    async def ConfirmByCustomer(
        self, request: followup_pb.ConfirmByCustomerRequest, context: Context
    ) -> followup_pb.ConfirmByCustomerResponse:
        promise = await self._commands.confirm(request.id, request.satisfaction, current_identity())
        return followup_pb.ConfirmByCustomerResponse(promise=self._proto(promise))

    async def ListReminderDeliveries(
        self, request: followup_pb.ListReminderDeliveriesRequest, context: Context
    ) -> followup_pb.ListReminderDeliveriesResponse:
        page = await self._queries.deliveries(
            request.promise_id,
            request.owner_id,
            request.page_size,
            request.page_token,
            current_identity(),
        )
        return followup_pb.ListReminderDeliveriesResponse(
            reminder_deliveries=[delivery_to_proto(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetPromiseStats(
        self, request: followup_pb.GetPromiseStatsRequest, context: Context
    ) -> followup_pb.GetPromiseStatsResponse:
        rows = await self._queries.stats(*stats_query_from_request(request), current_identity())
        return followup_pb.GetPromiseStatsResponse(stats=[stats_to_proto(s) for s in rows])

    async def ListServiceLevelBreaches(
        self, request: followup_pb.ListServiceLevelBreachesRequest, context: Context
    ) -> followup_pb.ListServiceLevelBreachesResponse:
        page = await self._queries.breaches(
            *breach_window_from_request(request),
            request.page_size,
            request.page_token,
            current_identity(),
        )
        now = self._clock.now()
        return followup_pb.ListServiceLevelBreachesResponse(
            breaches=[breach_to_proto(b, now) for b in page.items],
            next_page_token=page.next_page_token,
        )

    async def StreamReminders(
        self, request: followup_pb.StreamRemindersRequest, context: Context
    ) -> AsyncIterator[followup_pb.StreamRemindersResponse]:
        stream = await self._queries.reminders(
            request.owner_id, current_identity(), request.resume_after
        )
        try:
            # Headers go out once listening, so a caller knows nothing sent from now is missed;
            # they carry the token to resume from should it hang up before any reminder.
            await context.send_initial_metadata(((RESUME_TOKEN_HEADER, stream.resume_token),))
            async for sent in stream:
                yield followup_pb.StreamRemindersResponse(
                    reminder=sent.reminder, resume_token=sent.resume_token
                )
        finally:
            await stream.close()
