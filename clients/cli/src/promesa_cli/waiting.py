"""Waiting for what the services learn from each other's events, a moment after an answer: a
promise made in an interaction reaches the follow-up service, a new contact the interactions
service. Polled with a deadline; the last failure is raised, never swallowed."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc

from crm.followup.v1 import promise_pb2
from crm.interactions.v1 import interaction_pb2
from promesa_client import Client, errors

POLL_SECONDS = 0.1


async def wait_for_promise(client: Client, promise_id: str, timeout: float) -> promise_pb2.Promise:
    """The promise once the follow-up service has it; DeadlineExceeded after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.promises.get(promise_id)
        except errors.NotFound:
            if time.monotonic() > deadline:
                raise errors.DeadlineExceeded(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"promise {promise_id} did not reach the follow-up service in {timeout:g}s",
                ) from None
        await asyncio.sleep(POLL_SECONDS)


async def record_interaction(
    client: Client, contact_id: str, timeout: float = 10.0, **fields: Any
) -> interaction_pb2.Interaction:
    """Records an interaction; when the interactions service does not know the contact yet
    (FAILED_PRECONDITION: a contact just created reaches it through an event) but the contacts
    service has it, tries again until `timeout`, with the same request_id, so nothing is
    recorded twice. A contact that does not exist fails at once, as NotFound."""
    request_id = fields.pop("request_id", None) or str(uuid.uuid4())
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.interactions.record(contact_id, request_id=request_id, **fields)
        except errors.FailedPrecondition:
            if time.monotonic() > deadline:
                raise
            contact = await client.contacts.get(contact_id)  # NotFound: nothing to wait for
            if contact.merged_into_id or contact.HasField("erased_at"):
                raise
        await asyncio.sleep(POLL_SECONDS)
