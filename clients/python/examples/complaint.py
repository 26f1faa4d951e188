"""Records a customer's complaint with the promise made to her, then waits until the follow-up
service tracks that promise. Against `make run`: python clients/python/examples/complaint.py
(PROMESA_CONTACTS, PROMESA_INTERACTIONS, PROMESA_FOLLOWUP, PROMESA_TOKEN point it elsewhere)."""

import asyncio
import os
from datetime import timedelta

from promesa_client import LOCAL_TARGETS, Client, PromiseMade, errors, to_datetime


async def main() -> None:
    client = Client(
        contacts=os.environ.get("PROMESA_CONTACTS", LOCAL_TARGETS["contacts"]),
        interactions=os.environ.get("PROMESA_INTERACTIONS", LOCAL_TARGETS["interactions"]),
        followup=os.environ.get("PROMESA_FOLLOWUP", LOCAL_TARGETS["followup"]),
        token=os.environ.get("PROMESA_TOKEN", "dev-agent-token"),  # agent-1 of team-a
    )
    async with client:
        # The customer, found by email or created (a retry of this create makes no second one).
        email = os.environ.get("EXAMPLE_EMAIL", "maria.garcia@example.com")
        found = await client.contacts.search(email=email).collect(limit=1)
        if found:
            maria = found[0]
        else:
            maria = await client.contacts.create(
                "María García",
                preferred_name="María",
                emails=[email],
                phones=["+34 612 34 56 78"],
                time_zone="Europe/Madrid",
                relationship="external_customer",
            )

        # Her call, and what the agent promised during it.
        complaint = await client.interactions.record(
            maria.id,
            channel="phone",
            type="complaint",
            direction="inbound",
            summary="The washing machine was delivered with a cracked door",
            promises=[
                PromiseMade(
                    "Send a technician to replace the door",
                    due_at=timedelta(hours=48),  # from the call; or an aware datetime
                    kind="resolve_complaint",
                )
            ],
            wait_for_contact=5.0,  # a contact just created reaches interactions a moment later
        )

        # The follow-up service picks the promise up from the interaction's event.
        try:
            promise = await client.promises.get(complaint.promises[0].id, wait=10.0)
        except errors.NotFound:  # every failure raises an errors.PromesaError, by status
            raise SystemExit("not tracked within 10 s: is the followup service running?") from None
        due = to_datetime(promise.due_at).astimezone()
        print(
            f"{maria.preferred_name}: '{promise.text}' by {due:%a %d %b %H:%M}, owner "
            f"{promise.owner_id}, promise {promise.id} (etag {promise.etag})"
        )


if __name__ == "__main__":
    asyncio.run(main())
