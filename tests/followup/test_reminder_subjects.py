"""Reminders go out on `crm.followup.reminders.<recipient>.<contact_id>`: StreamReminders follows
a user's subjects, and an erasure's purge of the contact's subjects reaches their reminders."""

from __future__ import annotations

from datetime import timedelta

from nats.aio.msg import Msg

from crm.followup.v1 import reminder_pb2
from followup.adapters.event_codec import reminder_subject, reminders_of
from promesa.bus import FOLLOWUP_STREAM
from promesa.event_catalog import FOLLOWUP
from tests.followup.conftest import RunningFollowup, make
from tests.support import eventually, stream_messages


def test_a_reminder_subject_names_the_recipient_then_the_contact() -> None:
    assert (
        reminder_subject("agent-ana", "contact-1") == "crm.followup.reminders.agent-ana.contact-1"
    )
    # Characters NATS gives a meaning to become `_`: one token each, whatever the ids hold.
    assert reminder_subject("agent.eva", "c>1 *") == "crm.followup.reminders.agent_eva.c_1__"
    assert reminders_of("agent.eva") == "crm.followup.reminders.agent_eva.>"


def test_an_erasures_subject_filters_cover_the_reminders_about_the_contact() -> None:
    _, deeper = FOLLOWUP.about("contact.1")
    assert deeper == "crm.followup.*.*.contact_1"
    recipient, contact = reminder_subject("agent-ana", "contact.1").split(".")[3:]
    assert (recipient, contact) == ("agent-ana", "contact_1")


async def test_purging_a_contacts_subjects_removes_their_reminders_and_leaves_others(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    # Given reminders sent about two contacts,
    erased = await make(svc, contact_id="erased-1", due_in=timedelta(minutes=30))
    kept = await make(svc, contact_id="other-1", due_in=timedelta(minutes=30))
    svc.clock.advance(timedelta(minutes=30))
    assert await svc.scheduler.tick() == 2
    await svc.runtime.parts.relay.flush()

    async def both_sent() -> dict[str, reminder_pb2.Reminder] | None:
        msgs = await stream_messages(svc.bus.js, FOLLOWUP_STREAM.name, reminders_of("agent-ana"))
        found = {m.subject: reminder_pb2.Reminder.FromString(m.data) for m in msgs}
        return found if len(found) == 2 else None

    sent = await eventually(both_sent)
    assert sent["crm.followup.reminders.agent-ana.erased-1"].promise_id == erased.id
    assert sent["crm.followup.reminders.agent-ana.other-1"].promise_id == kept.id

    # when the stream is purged of everything about one of them (what an erasure does),
    await svc.bus.purge(FOLLOWUP_STREAM, FOLLOWUP.about("erased-1"))

    # then nothing about that contact is left, reminders included; the other's stay.
    left: list[Msg] = await stream_messages(svc.bus.js, FOLLOWUP_STREAM.name)
    assert left and not [m.subject for m in left if m.subject.endswith(".erased-1")]
    assert not [m for m in left if b"erased-1" in m.data]
    assert "crm.followup.reminders.agent-ana.other-1" in {m.subject for m in left}
