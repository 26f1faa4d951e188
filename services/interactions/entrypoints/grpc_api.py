"""The InteractionsService servicer: proto in, use case, proto out; errors mapped at the edge."""

from __future__ import annotations

from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from interactions.entrypoints.proto_mapping import (
    amendment_from_proto,
    filter_from_request,
    interaction_to_proto,
    recorded_from_proto,
)
from interactions.usecases import InteractionCommands, InteractionQueries
from promesa.auth import current_identity
from promesa.interceptors import Context

SERVICE_NAME = interactions_pb.DESCRIPTOR.services_by_name["InteractionsService"].full_name


class InteractionsServicer(interactions_grpc.InteractionsServiceServicer):
    def __init__(self, commands: InteractionCommands, queries: InteractionQueries) -> None:
        self._commands = commands
        self._queries = queries

    async def RecordInteraction(
        self, request: interactions_pb.RecordInteractionRequest, context: Context
    ) -> interactions_pb.RecordInteractionResponse:
        draft, promises = recorded_from_proto(request.interaction)
        interaction = await self._commands.record(
            request.interaction.contact_id,
            draft,
            promises,
            request.request_id,
            current_identity(),
        )
        reply = interactions_pb.RecordInteractionResponse()
        interaction_to_proto(interaction, into=reply.interaction)
        return reply

    async def GetInteraction(
        self, request: interactions_pb.GetInteractionRequest, context: Context
    ) -> interactions_pb.GetInteractionResponse:
        interaction = await self._queries.get(request.id, current_identity())
        reply = interactions_pb.GetInteractionResponse()
        interaction_to_proto(interaction, into=reply.interaction)
        return reply

    async def ListInteractions(
        self, request: interactions_pb.ListInteractionsRequest, context: Context
    ) -> interactions_pb.ListInteractionsResponse:
        page = await self._queries.list(
            filter_from_request(request), request.page_size, request.page_token, current_identity()
        )
        reply = interactions_pb.ListInteractionsResponse(next_page_token=page.next_page_token)
        for interaction in page.items:
            interaction_to_proto(interaction, into=reply.interactions.add())
        return reply

    async def RateInteraction(
        self, request: interactions_pb.RateInteractionRequest, context: Context
    ) -> interactions_pb.RateInteractionResponse:
        interaction = await self._commands.rate(
            request.id, request.satisfaction, current_identity()
        )
        return interactions_pb.RateInteractionResponse(
            interaction=interaction_to_proto(interaction)
        )

    async def AmendInteraction(
        self, request: interactions_pb.AmendInteractionRequest, context: Context
    ) -> interactions_pb.AmendInteractionResponse:
        interaction = await self._commands.amend(
            request.id,
            request.etag,
            amendment_from_proto(request.interaction),
            list(request.update_mask.paths),
            request.reason,
            current_identity(),
        )
        return interactions_pb.AmendInteractionResponse(
            interaction=interaction_to_proto(interaction)
        )
