"""End to end: a person erased in the contacts service is gone from every event stream, and
the erasure record shows that each service that held their data confirmed it; on SQLite and on
MongoDB (tests/whole_system.py)."""

from __future__ import annotations

from datetime import UTC, timedelta

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from devtools.natsserver import NatsServer
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM, INTERACTIONS_STREAM
from tests import whole_system
from tests.contacts.conftest import RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.followup.conftest import RunningFollowup
from tests.interactions.conftest import RunningInteractions, a_promise, an_interaction, record
from tests.support import SUPERVISOR_TOKEN, bearer, eventually, stream_messages

# The three services on the backend of the test's parameter, [sqlite] or [mongodb].
backend = whole_system.backend
contacts_service = whole_system.contacts_service
interactions_beside_contacts = whole_system.interactions_beside_contacts
followup_beside = whole_system.followup_beside

NAME = "Ximena Quintanilla"
PREFERRED = "Xime"
EMAIL = "ximena.quintanilla@example.com"
PHONE = "+34 699 12 34 56"  # stored and published, if at all, as +34699123456
PHONE_E164 = "+34699123456"
SUMMARY = "Ximena says the espresso machine leaks"
NOTES = "She keeps the receipt in a blue folder"
OUTCOME = "Replacement offered to Ximena"
PROMISE = "Phone Ximena once the spare gasket arrives"
EVERYTHING_ABOUT_HER = (NAME, PREFERRED, EMAIL, PHONE, PHONE_E164, SUMMARY, NOTES, OUTCOME, PROMISE)


async def every_message(nats: NatsServer, followup: RunningFollowup) -> list[bytes]:
    """Every message left in every stream, payload and headers, as the operator would dump."""
    found: list[bytes] = []
    for stream in (CONTACTS_STREAM, INTERACTIONS_STREAM, FOLLOWUP_STREAM):
        for msg in await stream_messages(followup.bus.js, stream.name):
            headers = " ".join(f"{k}={v}" for k, v in (msg.headers or {}).items())
            found.append(msg.subject.encode() + b" " + headers.encode() + b" " + msg.data)
    return found


async def test_an_erased_person_is_in_no_stream_and_every_service_confirms(
    nats_server: NatsServer,
    contacts_service: RunningContacts,
    interactions_beside_contacts: RunningInteractions,
    followup_beside: RunningFollowup,
) -> None:
    contacts, interactions, followup = (
        contacts_service,
        interactions_beside_contacts,
        followup_beside,
    )
    clock = contacts.clock
    # Given a person known to every service, a complaint with a promise made to them,
    person = await create(
        contacts,
        a_person(display_name=NAME, preferred_name=PREFERRED, emails=[EMAIL], phones=[PHONE]),
    )
    await eventually(lambda: interactions.store.contact(person.id))
    await eventually(lambda: followup.app.store.profile(person.id))
    touch = await record(
        interactions,
        an_interaction(
            person.id,
            summary=SUMMARY,
            notes=NOTES,
            outcome=OUTCOME,
            promises=[a_promise(text=PROMISE, within=timedelta(days=2))],
        ),
    )

    async def tracked() -> promise_pb2.Promise | None:
        reply = await followup.stub.ListPromises(
            followup_pb.ListPromisesRequest(contact_id=person.id), metadata=bearer(SUPERVISOR_TOKEN)
        )
        return reply.promises[0] if reply.promises else None

    promise = await eventually(tracked)
    assert promise.source_interaction_id == touch.id
    # and a reminder with the promise's words sent to its owner,
    clock.set(promise.due_at.ToDatetime(tzinfo=UTC) - timedelta(hours=24))
    assert await followup.scheduler.tick() == 1

    async def her_words_published() -> bool:
        messages = b"\n".join(await every_message(nats_server, followup))
        return PROMISE.encode() in messages

    assert await eventually(her_words_published)

    # when a supervisor erases her,
    await contacts.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=person.id, reason="request ref. DPO-2026-118"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )

    # then interactions and follow-up confirm, and the record says who, why and which did,
    async def confirmed() -> contacts_pb.ErasureRecord | None:
        reply = await contacts.stub.ListErasures(
            contacts_pb.ListErasuresRequest(), metadata=bearer(SUPERVISOR_TOKEN)
        )
        [record_] = [r for r in reply.erasures if r.contact_id == person.id]
        services = {c.service for c in record_.confirmations}
        return record_ if services == {"interactions", "followup"} else None

    erasure = await eventually(confirmed)
    assert erasure.requested_by == "sup-sam"
    assert erasure.reason == "request ref. DPO-2026-118"

    # and no message left in any stream holds her name, address, number or words.
    left = await every_message(nats_server, followup)
    assert left, "the streams still hold the facts other people's work needs"
    for message in left:
        for secret in EVERYTHING_ABOUT_HER:
            assert secret.encode() not in message, f"{secret!r} is still in a stream"
