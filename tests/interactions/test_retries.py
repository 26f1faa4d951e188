"""A retried RecordInteraction is answered with the first interaction, whatever time did since."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from promesa.protos import to_timestamp
from promesa.storage import InboxKey
from tests.interactions.conftest import RunningInteractions, an_interaction, known_contact, record
from tests.support import bearer, field_violations


async def test_a_retry_after_its_promise_fell_due_returns_the_first_interaction(
    interactions_service: RunningInteractions,
) -> None:
    svc = interactions_service
    contact_id = await known_contact(svc)
    due_at = to_timestamp(svc.clock.now() + timedelta(hours=1))
    touch = an_interaction(
        contact_id, promises=[interaction_pb2.PromiseMade(text="Call back", due_at=due_at)]
    )
    first = await record(svc, touch, request_id="call-1")

    # When the caller retries after the promise has fallen due (its answer was lost),
    svc.clock.advance(timedelta(hours=2))
    again = await record(svc, touch, request_id="call-1")

    # then it gets the interaction the first call made, not "must be due later",
    assert again == first
    # while the same promise sent afresh is refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, touch, request_id="call-2")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "interaction.promises[0].due_at" in field_violations(caught.value)
    timeline = await svc.stub.ListInteractions(
        interactions_pb.ListInteractionsRequest(contact_id=contact_id), metadata=bearer()
    )
    assert [i.id for i in timeline.interactions] == [first.id]


async def test_a_retry_after_the_contact_was_erased_returns_the_first_interaction(
    interactions_service: RunningInteractions,
) -> None:
    """A known request id is answered before anything else is looked at, the contact too."""
    svc = interactions_service
    contact_id = await known_contact(svc)
    first = await record(svc, an_interaction(contact_id), request_id="call-1")
    erasure = InboxKey("test", "erased-1")
    await svc.app.reactions.contact_erased(erasure, contact_id=contact_id, actor="sup-sam")

    again = await record(svc, an_interaction(contact_id), request_id="call-1")

    assert again.id == first.id and again.HasField("erased_at")
