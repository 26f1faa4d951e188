"""The customer's voice on real parts: the contacts service over gRPC, an SMTP server, NATS,
SQLite and the satisfaction page over HTTP.

A kept promise sends the customer a satisfaction request with a signed, single-use, expiring
link; the page it opens takes "how did we do?" 1-5 and a comment, records the answer once as
the customer's own and publishes it (without the comment); a bad answer is refused with a
message, a forged or expired link gets a polite page, and nothing is recorded for either.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import events_pb2 as followup_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from followup.domain import feedback
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM
from promesa.settings import ConfigError, Env
from tests.contacts import conftest as contacts_fixtures
from tests.contacts.conftest import RunningContacts
from tests.followup.conftest import Mailbox, RunningFollowup, make, start_followup
from tests.followup.test_customer_notices import (
    INTERNAL_TEXT,
    a_customer,
    body_of,
    mail_to,
    notices_env,
    notices_of,
    text_of,
)
from tests.followup.test_events import publish
from tests.support import SUPERVISOR_TOKEN, TOKENS, bearer, events_about, eventually

contacts_service = contacts_fixtures.contacts_service

KEY = "feedback-signing-key-for-tests-only-0123456789"
LINK = re.compile(r"http://\S+/feedback/\S+")


def voice_env(
    nats: NatsServer, data: Path, contacts: RunningContacts, smtp_port: int, page_port: int
) -> dict[str, str]:
    return notices_env(
        nats,
        data,
        contacts,
        smtp_port,
        CRM_FEEDBACK_SIGNING_KEY=KEY,
        CRM_FEEDBACK_HOST="127.0.0.1",
        CRM_FEEDBACK_PORT=str(page_port),
        CRM_FEEDBACK_BASE_URL=f"http://127.0.0.1:{page_port}",
    )


@pytest.fixture
async def followup_asking(
    contacts_service: RunningContacts,
    nats_server: NatsServer,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
) -> AsyncIterator[RunningFollowup]:
    """The follow-up service with satisfaction requests on, its page on a port of its own."""
    env = voice_env(nats_server, tmp_path, contacts_service, mailbox[1], free_port())
    svc = await start_followup(nats_server, env, contacts_service.clock)
    page = svc.app.feedback_page
    assert page is not None
    await eventually(lambda: _true(page.started.is_set()))
    yield svc
    await svc.stop()
    assert not page.started.is_set()  # stopped with the service


async def _true(value: bool) -> bool:
    return value


async def keep(svc: RunningFollowup, promise_id: str) -> None:
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(
            id=promise_id, evidence=promise_pb2.Evidence(note="called, refund ref 42")
        ),
        metadata=bearer(),
    )


async def get(svc: RunningFollowup, promise_id: str) -> promise_pb2.Promise:
    reply = await svc.stub.GetPromise(
        followup_pb.GetPromiseRequest(id=promise_id), metadata=bearer()
    )
    return reply.promise


async def kept_and_asked(
    contacts: RunningContacts, svc: RunningFollowup, box: Mailbox, **contact: object
) -> tuple[str, promise_pb2.Promise, str]:
    """A customer, a promise made to them and kept, and the link of the request they got."""
    contact_id = await a_customer(contacts, svc, **contact)
    p = await make(svc, contact_id=contact_id, text=INTERNAL_TEXT)
    await keep(svc, p.id)
    assert await svc.scheduler.tick() == 1
    [message] = mail_to(box, "pepa@example.com")
    return contact_id, p, link_in(body_of(message))


def link_in(body: str) -> str:
    found = LINK.search(body)
    assert found, body
    return found.group(0)


async def fetch(
    url: str, form: dict[str, str] | None = None, language: str = ""
) -> tuple[int, str]:
    headers = {"Accept-Language": language} if language else {}
    async with aiohttp.ClientSession() as http:
        if form is None:
            async with http.get(url, headers=headers) as reply:
                return reply.status, await reply.text()
        async with http.post(url, data=form, headers=headers) as reply:
            return reply.status, await reply.text()


async def test_a_kept_promise_asks_the_customer_who_answers_once_as_themself(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, box = followup_asking, mailbox[0]
    # Given a promise kept for a customer who consented to email
    contact_id, p, link = await kept_and_asked(contacts_service, svc, box)

    # then they are asked how we did, in their words, with a link, and nothing internal
    [message] = mail_to(box, "pepa@example.com")
    assert message["Subject"] == "How did we do?"
    assert "Dear Pepa," in body_of(message)
    assert "We promised to call you back." in body_of(message)
    for internal in (INTERNAL_TEXT, "refund ref 42", "agent-ana", "madrid"):
        assert internal not in text_of(message)
    [notice] = await notices_of(svc, p.id)
    assert notice.customer_notice.reason == reminder_pb2.NOTICE_REASON_PROMISE_KEPT
    assert notice.customer_notice.template == reminder_pb2.NOTICE_TEMPLATE_SATISFACTION_REQUEST
    assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED

    # The page shows the promise in the customer's words, and nothing internal.
    status, page = await fetch(link)
    assert status == 200
    assert "We promised to call you back." in page and "How did we do?" in page
    for internal in (INTERNAL_TEXT, "refund ref 42", "agent-ana", "madrid", p.id):
        assert internal not in page
    assert "<script" not in page.lower()

    # When they answer,
    status, page = await fetch(link, {"score": "4", "comment": "Quick and kind, thanks!"})
    assert status == 200 and "Thank you!" in page

    # the rating is theirs, recorded on the promise,
    rated = await get(svc, p.id)
    assert (rated.satisfaction, rated.satisfaction_by_customer) == (4, True)
    assert rated.customer_confirmed
    assert rated.satisfaction_comment == "Quick and kind, thanks!"
    assert rated.history[-1].actor == f"customer:{contact_id}"

    # and published, without the comment.
    async def given() -> list[followup_events.CustomerSatisfactionGiven]:
        found = []
        for m in await events_about(svc.bus.js, FOLLOWUP_STREAM.name, p.id):
            if m.subject == f"crm.followup.customer_satisfaction_given.{contact_id}":
                found.append(followup_events.CustomerSatisfactionGiven.FromString(m.data))
        return found

    [event] = await eventually(given)
    assert (event.promise_id, event.contact_id, event.score) == (p.id, contact_id, 4)
    assert event.actor == f"customer:{contact_id}"
    assert b"Quick and kind" not in event.SerializeToString()

    # A second use of the link says "already answered" and changes nothing.
    for form in (None, {"score": "1", "comment": "changed my mind"}):
        status, page = await fetch(link, form)
        assert status == 200 and "You have already answered." in page
    again = await get(svc, p.id)
    assert (again.satisfaction, again.etag) == (4, rated.etag)
    assert len(await given()) == 1


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"comment": "no score"}, "Please choose a score from 1 to 5."),
        ({"score": "0"}, "The score must be a whole number from 1 to 5."),
        ({"score": "6"}, "The score must be a whole number from 1 to 5."),
        ({"score": "five"}, "The score must be a whole number from 1 to 5."),
        ({"score": "5", "comment": "x" * 2001}, "2,000 characters at most"),
    ],
)
async def test_a_bad_answer_is_refused_on_the_page_and_nothing_is_recorded(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
    form: dict[str, str],
    says: str,
) -> None:
    svc = followup_asking
    _, p, link = await kept_and_asked(contacts_service, svc, mailbox[0])
    before = await get(svc, p.id)

    status, page = await fetch(link, form)

    assert status == 422
    assert says in page
    assert "How did we do?" in page  # the form again, to answer properly
    after = await get(svc, p.id)
    assert (after.etag, after.satisfaction, after.customer_confirmed) == (before.etag, 0, False)
    # A proper answer is still taken.
    status, page = await fetch(link, {"score": "5", "comment": "x" * 2000})
    assert status == 200 and "Thank you!" in page
    assert (await get(svc, p.id)).satisfaction == 5


async def test_forged_or_expired_links_get_a_polite_page_and_record_nothing(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, clock = followup_asking, contacts_service.clock
    contact_id, p, link = await kept_and_asked(contacts_service, svc, mailbox[0])
    base, token = link.rsplit("/", 1)
    body, signature = token.split(".")
    later = clock.now() + timedelta(days=1)
    forged = [
        f"{base}/{body}.{signature[:-2]}AA",  # the signature altered
        f"{base}/{body}",  # no signature
        f"{base}/not-a-token",
        f"{base}/{feedback.sign(feedback.Link('r', p.id, contact_id, later), b'x' * 40)}",
        f"{base}/{feedback.sign(feedback.Link('r', 'other', contact_id, later), b'x')[:-43]}"
        + signature,  # another promise under this link's signature
    ]
    for url in forged:
        for form in (None, {"score": "5"}):
            status, page = await fetch(url, form)
            assert status == 404, url
            assert "This link is not valid any more" in page
            assert "Nothing was recorded" in page

    # When the link's time is up (14 days by default), it is refused too.
    clock.advance(timedelta(days=14, seconds=1))
    status, page = await fetch(link, {"score": "5"})
    assert status == 404 and "This link is not valid any more" in page
    after = await get(svc, p.id)
    assert (after.satisfaction, after.customer_confirmed) == (0, False)


async def test_the_page_speaks_the_customers_language(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc = followup_asking
    _, _, link = await kept_and_asked(contacts_service, svc, mailbox[0])

    status, page = await fetch(link, language="es-ES,es;q=0.9,en;q=0.5")
    assert status == 200
    assert '<html lang="es">' in page
    assert "¿Qué tal lo hicimos?" in page and "Le prometimos devolverle la llamada." in page

    status, page = await fetch(f"{link}?lang=en", language="es")
    assert '<html lang="en">' in page

    status, page = await fetch(link, {"score": "9"}, language="es")
    assert status == 422 and "La puntuación debe ser un número entero de 1 a 5." in page
    status, page = await fetch(link, {"score": "3"}, language="de-DE,es;q=0.8")
    assert status == 200 and "¡Gracias!" in page


async def test_a_discreet_customer_is_asked_without_a_name_a_kind_or_a_reference(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc = followup_asking
    _, p, link = await kept_and_asked(contacts_service, svc, mailbox[0], discreet=True)

    [message] = mail_to(mailbox[0], "pepa@example.com")
    text = text_of(message)
    for detail in ("Pepa", "call you back", p.id, INTERNAL_TEXT):
        assert detail not in text
    status, page = await fetch(link)
    assert status == 200 and "call you back" not in page and "How did we do?" in page


async def test_no_request_for_a_win_back_nor_once_staff_entered_the_rating(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc = followup_asking
    contact_id = await a_customer(contacts_service, svc)
    # A win-back: the customer asked for nothing.
    win_back = await make(svc, contact_id=contact_id, kind=promise_pb2.PROMISE_KIND_WIN_BACK)
    await keep(svc, win_back.id)
    # A promise whose satisfaction staff entered before the request went out.
    p = await make(svc, contact_id=contact_id)
    await keep(svc, p.id)
    await svc.stub.ConfirmByCustomer(
        followup_pb.ConfirmByCustomerRequest(id=p.id, satisfaction=2), metadata=bearer()
    )

    assert await svc.scheduler.tick() == 1
    assert await notices_of(svc, win_back.id) == []
    [notice] = await notices_of(svc, p.id)
    assert notice.outcome == reminder_pb2.DELIVERY_OUTCOME_DROPPED
    assert (
        notice.customer_notice.dropped_reason == "the customer's satisfaction is recorded already"
    )
    assert mail_to(mailbox[0], "pepa@example.com") == []
    assert not (await get(svc, win_back.id)).HasField("satisfaction_requested_at")


async def test_stats_count_customer_ratings_apart_from_staff_ones_with_the_response_rate(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc, box = followup_asking, mailbox[0]
    contact_id = await a_customer(contacts_service, svc)
    made = [await make(svc, contact_id=contact_id) for _ in range(4)]
    for p in made:
        await keep(svc, p.id)
    assert await svc.scheduler.tick() == 4
    links = [link_in(body_of(m)) for m in mail_to(box, "pepa@example.com")]
    # Two customers' answers (5 and 3) and one rating entered by staff (2); one unanswered.
    by_promise = {}
    for link in links:
        by_promise[
            feedback.verify(link.rsplit("/", 1)[1], KEY.encode(), svc.clock.now()).promise_id
        ] = link
    await fetch(by_promise[made[0].id], {"score": "5"})
    await fetch(by_promise[made[1].id], {"score": "3"})
    await svc.stub.ConfirmByCustomer(
        followup_pb.ConfirmByCustomerRequest(id=made[2].id, satisfaction=2), metadata=bearer()
    )

    reply = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_ALL),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    [row] = reply.stats
    assert (row.customer_ratings, row.mean_customer_satisfaction) == (2, 4.0)
    assert (row.staff_ratings, row.mean_staff_satisfaction) == (1, 2.0)
    assert row.satisfaction_requests == 4
    assert row.response_rate_percent == 50.0
    assert row.mean_satisfaction == pytest.approx(10 / 3)


async def test_the_comment_is_erased_with_the_contact(
    contacts_service: RunningContacts,
    followup_asking: RunningFollowup,
    mailbox: tuple[Mailbox, int],
) -> None:
    svc = followup_asking
    contact_id, p, link = await kept_and_asked(contacts_service, svc, mailbox[0])
    await fetch(link, {"score": "2", "comment": "Pepa García, 612 345 678, was upset"})

    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.erased",
        contacts_events.ContactErased(contact_id=contact_id),
    )

    async def erased() -> bool:
        stored = await svc.store.get(p.id)
        return stored is not None and stored.erased_at is not None

    await eventually(erased)
    stored = await svc.store.get(p.id)
    assert stored is not None
    assert stored.satisfaction_comment == "" and stored.satisfaction == 2
    # and the link is no longer answerable.
    status, _ = await fetch(link)
    assert status == 404


def test_the_page_needs_a_strong_key_and_email(tmp_path: Path) -> None:
    from followup.settings import FollowupSettings

    smtp = {
        "CRM_API_TOKENS": TOKENS,
        "CRM_SMTP_HOST": "127.0.0.1",
        "CRM_SMTP_TO": "{recipient}@x",
        "CRM_SERVICE_TOKEN": "t",
    }
    with pytest.raises(ConfigError, match="CRM_FEEDBACK_SIGNING_KEY must be at least 32"):
        FollowupSettings.from_env(Env({**smtp, "CRM_FEEDBACK_SIGNING_KEY": "short"}))
    with pytest.raises(ConfigError, match="needs CRM_SMTP_HOST"):
        FollowupSettings.from_env(Env({"CRM_API_TOKENS": TOKENS, "CRM_FEEDBACK_SIGNING_KEY": KEY}))
    with pytest.raises(ConfigError, match="CRM_FEEDBACK_BASE_URL"):
        FollowupSettings.from_env(
            Env({**smtp, "CRM_FEEDBACK_SIGNING_KEY": KEY, "CRM_FEEDBACK_BASE_URL": "ftp://x"})
        )
    settings = FollowupSettings.from_env(Env({**smtp, "CRM_FEEDBACK_SIGNING_KEY": KEY}))
    assert settings.feedback is not None and settings.feedback.port == 8093
    assert KEY not in repr(settings)
    assert FollowupSettings.from_env(Env({"CRM_API_TOKENS": TOKENS})).feedback is None


async def test_a_page_port_already_taken_stops_the_service_from_booting(
    contacts_service: RunningContacts,
    nats_server: NatsServer,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
) -> None:
    # Given something else listening on the page's port,
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env = voice_env(nats_server, tmp_path, contacts_service, mailbox[1], taken.getsockname()[1])
        # the service refuses to boot, as it does when its gRPC port is taken, rather than run
        # with a page that never answers.
        with pytest.raises(OSError, match="in use"):
            await start_followup(nats_server, env, contacts_service.clock)
