"""The DeadLettersService servicer every service serves: proto in, use case, proto out."""

from __future__ import annotations

from crm.operations.v1 import dead_letters_pb2 as dead_letters_pb
from crm.operations.v1 import dead_letters_pb2_grpc as dead_letters_grpc
from promesa.auth import current_identity
from promesa.dead_letters import DeadLetters
from promesa.interceptors import Context
from promesa.protos import to_timestamp
from promesa.storage import DeadLetter

SERVICE_NAME = dead_letters_pb.DESCRIPTOR.services_by_name["DeadLettersService"].full_name


class DeadLettersServicer(dead_letters_grpc.DeadLettersServiceServicer):
    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    async def ListDeadLetters(
        self, request: dead_letters_pb.ListDeadLettersRequest, context: Context
    ) -> dead_letters_pb.ListDeadLettersResponse:
        page = await self._dead_letters.list(
            request.consumer, request.page_size, request.page_token, current_identity()
        )
        return dead_letters_pb.ListDeadLettersResponse(
            dead_letters=[dead_letter_to_proto(letter) for letter in page.items],
            next_page_token=page.next_page_token,
        )

    async def ReplayDeadLetter(
        self, request: dead_letters_pb.ReplayDeadLetterRequest, context: Context
    ) -> dead_letters_pb.ReplayDeadLetterResponse:
        replayed = await self._dead_letters.replay(request.id, current_identity())
        return dead_letters_pb.ReplayDeadLetterResponse(
            dead_letter=dead_letter_to_proto(replayed.letter),
            already_replayed=replayed.already,
        )


def dead_letter_to_proto(letter: DeadLetter) -> dead_letters_pb.DeadLetter:
    event = letter.event
    return dead_letters_pb.DeadLetter(
        id=letter.id,
        consumer=letter.consumer,
        event_id=event.event_id,
        event_type=event.type,
        subject=event.subject,
        source=event.source,
        resource=event.ce_subject,
        event_time=event.time,
        delivery=event.delivery,
        error=letter.error,
        recorded_at=to_timestamp(letter.recorded_at),
        replayed_at=to_timestamp(letter.replayed_at),
    )
