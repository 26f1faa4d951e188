"""`client.interactions`: the timeline of every touch (crm.interactions.v1.InteractionsService)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from promesa_client import _fields, errors
from promesa_client._connection import Connection
from promesa_client._fields import EnumArg
from promesa_client.pages import Page, Pager

Interaction = interaction_pb2.Interaction


@dataclass(frozen=True)
class PromiseMade:
    """A commitment made during an interaction; the follow-up service tracks it from then on
    (its id becomes the promise's id). `due_at` is an instant, or a span from occurred_at."""

    text: str
    due_at: datetime | timedelta
    owner_id: str = ""  # "" = the interaction's agent
    kind: EnumArg = "other"  # "call_back", "resolve_complaint", "deliver", ...

    def to_proto(self, path: str) -> interaction_pb2.PromiseMade:
        """The PromiseMade message; `path` names it in an error (`interaction.promises[0]`)."""
        made = interaction_pb2.PromiseMade(text=self.text, owner_id=self.owner_id)
        _fields.assign(made, {"kind": self.kind}, f"{path}.")
        if isinstance(self.due_at, timedelta):
            made.due_within.CopyFrom(_fields.duration(self.due_at, f"{path}.due_within"))
        else:
            made.due_at.CopyFrom(_fields.timestamp(self.due_at, f"{path}.due_at"))
        return made


def _promises_made(
    promises: Sequence[PromiseMade | interaction_pb2.PromiseMade],
) -> list[interaction_pb2.PromiseMade]:
    return [
        p.to_proto(f"interaction.promises[{i}]") if isinstance(p, PromiseMade) else p
        for i, p in enumerate(promises)
    ]


class Interactions:
    """Record, read, rate and amend interactions."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._stub: interactions_grpc.InteractionsServiceAsyncStub | None = None

    @property
    def stub(self) -> interactions_grpc.InteractionsServiceAsyncStub:
        """The generated stub, for an RPC the SDK does not wrap (pass `metadata` yourself)."""
        if self._stub is None:
            self._stub = interactions_grpc.InteractionsServiceStub(
                self._conn.channel("interactions")
            )
        return self._stub

    async def record(
        self,
        /,
        contact_id: str,
        *,
        channel: EnumArg,
        type: EnumArg,
        summary: str = "",
        direction: EnumArg | None = None,
        occurred_at: datetime | None = None,
        promises: Sequence[PromiseMade | interaction_pb2.PromiseMade] = (),
        request_id: str | None = None,
        wait_for_contact: float = 0.0,
        timeout: float | None = None,
        **fields: Any,
    ) -> Interaction:
        """Records a touch (`channel="phone"`, `type="complaint"`) with the promises made in it;
        other Interaction fields as keywords (`notes=`, `outcome=`, `agent_id=`, `purchase=`).
        Returns it with promise ids and absolute due times filled in. One request_id serves
        every retry of this call.

        The interactions service learns of a new contact from an event, a moment after
        `contacts.create` returns; until then it answers FailedPrecondition. With
        `wait_for_contact` seconds, the call is made again (same request_id) while that lasts,
        for a script that creates a contact and records at once."""
        interaction = Interaction(contact_id=contact_id, summary=summary)
        _fields.assign(
            interaction,
            {
                "channel": channel,
                "type": type,
                "direction": direction,
                "occurred_at": occurred_at,
                **fields,
            },
            "interaction.",
        )
        interaction.promises.extend(_promises_made(promises))
        request = interactions_pb.RecordInteractionRequest(
            interaction=interaction, request_id=request_id or str(uuid.uuid4())
        )
        give_up = time.monotonic() + wait_for_contact
        pause = 0.05
        while True:
            try:
                reply = await self._conn.call(self.stub.RecordInteraction, request, timeout)
            except errors.FailedPrecondition:
                if time.monotonic() + pause > give_up:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            return reply.interaction

    async def get(self, id: str, *, timeout: float | None = None) -> Interaction:
        """One interaction by id."""
        request = interactions_pb.GetInteractionRequest(id=id)
        reply = await self._conn.call(self.stub.GetInteraction, request, timeout)
        return reply.interaction

    def list(
        self,
        contact_id: str,
        *,
        type: EnumArg | None = None,
        channel: EnumArg | None = None,
        agent_id: str = "",
        occurred_after: datetime | None = None,
        occurred_before: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Pager[Interaction]:
        """A contact's timeline, newest first."""
        template = interactions_pb.ListInteractionsRequest(
            contact_id=contact_id, agent_id=agent_id, page_size=page_size
        )
        _fields.assign(
            template,
            {
                "type": type,
                "channel": channel,
                "occurred_after": occurred_after,
                "occurred_before": occurred_before,
            },
        )

        async def fetch(token: str) -> Page[Interaction]:
            request = interactions_pb.ListInteractionsRequest()
            request.CopyFrom(template)
            request.page_token = token
            reply = await self._conn.call(self.stub.ListInteractions, request, timeout)
            return Page(list(reply.interactions), reply.next_page_token)

        return Pager(fetch, page_token)

    async def rate(
        self, id: str, satisfaction: int, *, timeout: float | None = None
    ) -> Interaction:
        """The contact's satisfaction with the touch, 1 (poor) to 5 (excellent)."""
        request = interactions_pb.RateInteractionRequest(id=id, satisfaction=satisfaction)
        reply = await self._conn.call(self.stub.RateInteraction, request, timeout)
        return reply.interaction

    async def amend(
        self,
        /,
        interaction: str | Interaction,
        *,
        reason: str,
        etag: str | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Interaction:
        """Corrects the fields given as keywords, keeping what they were (the reason is
        required). Given an Interaction, its etag is sent."""
        if not fields:
            raise errors.invalid_argument("update_mask", "name at least one field")
        if isinstance(interaction, str):
            interaction_id, current_etag = interaction, etag or ""
        else:
            interaction_id = interaction.id
            current_etag = interaction.etag if etag is None else etag
        changed = Interaction()
        _fields.assign(changed, fields, "interaction.")
        request = interactions_pb.AmendInteractionRequest(
            id=interaction_id,
            interaction=changed,
            update_mask=_fields.update_mask(fields),
            reason=reason,
            etag=current_etag,
        )
        reply = await self._conn.call(self.stub.AmendInteraction, request, timeout)
        return reply.interaction
