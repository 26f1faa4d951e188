"""The satisfaction page in a real browser: Debian's headless Chromium driven by Playwright, on a
phone-sized screen with JavaScript switched off, reached from the link in the email the SMTP
server (started here) caught. The whole chain runs on real parts: a promise made in an
interaction, kept over gRPC, the request emailed, the answer recorded on the promise and, from
the follow-up stream, on the interaction.

Playwright never downloads a browser here (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 when installing):
it drives /usr/bin/chromium, which `make setup` installs with apt when it is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from tests.contacts import conftest as contacts_fixtures
from tests.contacts.conftest import RunningContacts
from tests.followup.conftest import Mailbox, RunningFollowup, start_followup
from tests.followup.test_customer_notices import INTERNAL_TEXT, a_customer, body_of, mail_to
from tests.followup.test_customer_voice import link_in, voice_env
from tests.interactions.conftest import (
    RunningInteractions,
    a_promise,
    an_interaction,
    record,
    running_interactions,
)
from tests.support import bearer, eventually

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "feedback-page.png"

pytestmark = pytest.mark.skipif(
    # In CI a missing browser fails the test: the page must have been seen in one.
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (make setup installs it)",
)
playwright_api = pytest.importorskip("playwright.async_api")

contacts_service = contacts_fixtures.contacts_service


@pytest.fixture
async def interactions_here(
    contacts_service: RunningContacts, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningInteractions]:
    async with running_interactions(nats_server, tmp_path, contacts_service.clock) as service:
        yield service


@pytest.fixture
async def followup_here(
    contacts_service: RunningContacts,
    interactions_here: RunningInteractions,
    nats_server: NatsServer,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
) -> AsyncIterator[RunningFollowup]:
    env = voice_env(nats_server, tmp_path, contacts_service, mailbox[1], free_port())
    svc = await start_followup(nats_server, env, contacts_service.clock)
    page = svc.app.feedback_page
    assert page is not None

    async def started() -> bool:
        return page.started.is_set()

    await eventually(started)
    yield svc
    await svc.stop()


async def test_a_customer_answers_from_the_emailed_link_in_a_real_browser(
    contacts_service: RunningContacts,
    interactions_here: RunningInteractions,
    followup_here: RunningFollowup,
    mailbox: tuple[Mailbox, int],
    tmp_path: Path,
) -> None:
    svc, box = followup_here, mailbox[0]
    # Given a promise made in an interaction with a customer, then kept,
    contact_id = await a_customer(contacts_service, svc)
    await eventually(lambda: interactions_here.store.contact(contact_id))
    touch = await record(
        interactions_here, an_interaction(contact_id, promises=[a_promise(text=INTERNAL_TEXT)])
    )
    promise_id = touch.promises[0].id
    await eventually(lambda: svc.store.get(promise_id))
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(
            id=promise_id, evidence=promise_pb2.Evidence(note="called back")
        ),
        metadata=bearer(),
    )
    assert await svc.scheduler.tick() == 1
    [message] = mail_to(box, "pepa@example.com")
    link = link_in(body_of(message))

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
            ],
        )
        try:
            # a phone, with no JavaScript at all: the page must work with plain HTML.
            phone = await browser.new_context(
                viewport={"width": 375, "height": 740},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                java_script_enabled=False,
                locale="en-GB",
            )
            page = await phone.new_page()

            # When the customer opens the link from the email,
            reply = await page.goto(link)
            assert reply is not None and reply.status == 200
            heading = page.get_by_role("heading", name="How did we do?")
            await heading.wait_for()
            content = await page.content()
            assert "We promised to call you back." in content
            for internal in (INTERNAL_TEXT, "agent-ana", "madrid", promise_id, "called back"):
                assert internal not in content
            # everything fits the phone's width,
            send = page.get_by_role("button", name="Send my answer")
            box_of_send = await send.bounding_box()
            assert box_of_send is not None and box_of_send["width"] <= 375
            assert box_of_send["height"] >= 44  # a thumb-sized target

            # sends without a score (told what is wrong, nothing recorded),
            await send.click()
            await page.get_by_text("Please choose a score from 1 to 5.").wait_for()
            assert not (await _promise(svc, promise_id)).customer_confirmed

            # then chooses 4 and writes a comment,
            await page.get_by_label("4 - Good").check()
            await page.get_by_label("Anything you would like to tell us? (optional)").fill(
                "Kind and quick, thank you."
            )
            shot = tmp_path / "feedback-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, ARTIFACT)
            await page.get_by_role("button", name="Send my answer").click()
            await page.get_by_role("heading", name="Thank you!").wait_for()

            # Then the promise holds the customer's own rating,
            rated = await _promise(svc, promise_id)
            assert (rated.satisfaction, rated.satisfaction_by_customer) == (4, True)
            assert rated.satisfaction_comment == "Kind and quick, thank you."
            assert rated.history[-1].actor == f"customer:{contact_id}"

            # and so does the interaction it was made in, from the follow-up stream,
            async def interaction_rated() -> tuple[int, str] | None:
                got = await interactions_here.stub.GetInteraction(
                    interactions_pb.GetInteractionRequest(id=touch.id), metadata=bearer()
                )
                found = got.interaction
                return (found.satisfaction, found.updated_by) if found.satisfaction else None

            assert await eventually(interaction_rated) == (4, f"customer:{contact_id}")

            # and a second use of the link says it was answered.
            await page.goto(link)
            await page.get_by_role("heading", name="Already answered").wait_for()
            await page.screenshot(path=str(tmp_path / "feedback-answered.png"))
            assert (await _promise(svc, promise_id)).etag == rated.etag
        finally:
            await browser.close()
    assert shot.stat().st_size > 0 and ARTIFACT.exists()


async def _promise(svc: RunningFollowup, promise_id: str) -> promise_pb2.Promise:
    reply = await svc.stub.GetPromise(
        followup_pb.GetPromiseRequest(id=promise_id), metadata=bearer()
    )
    return reply.promise
