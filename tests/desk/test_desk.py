"""The desk as an agent uses it, through Textual's headless pilot at 80x24, against the real
contacts, interactions and follow-up services and a real nats-server: the open promises with
their countdowns, a customer's profile and timeline, reminders arriving live (and once, across
a restart of the follow-up service), and the keys that keep, reassign, renegotiate and log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from textual.pilot import Pilot
from textual.widgets import DataTable

from crm.followup.v1 import promise_pb2
from promesa_cli.desk import view
from promesa_cli.desk.app import DeskApp
from promesa_cli.desk.forms import FormScreen
from tests.desk.conftest import AGENT, AGENT_ZONE, DeskServices
from tests.support import eventually

SIZE = (80, 24)


def screen_text(app: DeskApp) -> list[str]:
    """What a person sees: the screen's lines as plain text."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def rows(app: DeskApp) -> list[str]:
    """The promise ids in the order the table shows them."""
    table = app.query_one("#promises", DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


def cell(app: DeskApp, promise_id: str, column: str) -> str:
    value = app.query_one("#promises", DataTable).get_cell(promise_id, column)
    return str(getattr(value, "plain", value))


async def shown(pilot: Pilot[None], probe: Callable[[], bool]) -> None:
    """Waits, with a deadline, until the desk shows what `probe` looks for; the desk runs in
    this loop, so waiting lets it work."""

    async def check() -> bool:
        await pilot.pause()
        return probe()

    await eventually(check, timeout=15)


async def type_text(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*text)


async def test_open_promises_are_listed_soonest_due_first_with_live_countdowns(
    services: DeskServices,
) -> None:
    # Given María and John, with three open promises of agent-ana's, one of someone else's
    # and one already kept
    maria = await services.customer("María García López", "María", "Europe/Madrid")
    john = await services.customer("John Smith", "Johnny", "America/New_York")
    later = await services.promise(maria.id, "Send the refund reference", timedelta(hours=5))
    soon = await services.promise(john.id, "Call back about the delivery", timedelta(minutes=20))
    middle = await services.promise(maria.id, "Confirm the new address", timedelta(hours=2))
    await services.promise(john.id, "Not ours", timedelta(minutes=5), owner_id="agent-pia")
    kept = await services.promise(john.id, "Already done", timedelta(hours=1))
    await services.client.promises.keep(kept, evidence="done")

    app = services.desk()
    async with app.run_test(size=SIZE) as pilot:
        # When the desk opens, then it lists agent-ana's open promises, soonest due first,
        await shown(pilot, lambda: rows(app) == [soon.id, middle.id, later.id])
        # by the customer's preferred name, with the time left
        assert cell(app, soon.id, "customer") == "Johnny"
        assert cell(app, soon.id, "due_in") == "20m 00s"
        assert cell(app, later.id, "due_in") == "5h 00m"
        # and the countdowns run: 90 seconds later they say so
        services.clock.advance(timedelta(seconds=90))
        await shown(pilot, lambda: cell(app, soon.id, "due_in") == "18m 30s")
        # and the status line counts them in the agent's zone
        assert "3 open" in screen_text(app)[0]
        assert AGENT in screen_text(app)[0]
        # and a promise past its due time reads late
        services.clock.advance(timedelta(minutes=19))
        await shown(pilot, lambda: cell(app, soon.id, "due_in") == "late 0m 30s")
        assert "1 late" in screen_text(app)[0]


async def test_the_selected_promise_shows_its_customer_and_timeline(
    services: DeskServices,
) -> None:
    maria = await services.customer("María García López", "María", "Europe/Madrid")
    john = await services.customer("John Smith", "Johnny", "America/New_York")
    await services.client.interactions.record(
        john.id, channel="phone", type="complaint", summary="Parcel arrived broken"
    )
    await services.client.interactions.record(
        maria.id, channel="email", type="inquiry", summary="Asked about invoice 7"
    )
    first = await services.promise(maria.id, "Send invoice 7 again", timedelta(hours=1))
    second = await services.promise(john.id, "Replace the parcel", timedelta(hours=3))

    app = services.desk()
    async with app.run_test(size=SIZE) as pilot:
        # (the complaint got agent-ana a resolution promise by policy, due in 48 hours, last)
        await shown(pilot, lambda: rows(app)[:2] == [first.id, second.id] and len(rows(app)) == 3)
        assert app.promises[rows(app)[2]].contact_id == john.id
        # The first row is selected: María's profile, her local time, her timeline
        madrid = view.local_clock("Europe/Madrid", services.clock.now())
        await shown(pilot, lambda: "Asked about invoice 7" in app.contact_text().plain)
        text = app.contact_text().plain
        assert text.startswith("María (María García López)")
        assert madrid in text
        assert "inquiry" in text
        # When the agent moves down, John's shows instead
        await pilot.press("down")
        await shown(pilot, lambda: "Parcel arrived broken" in app.contact_text().plain)
        text = app.contact_text().plain
        assert text.startswith("Johnny (John Smith)")
        assert view.local_clock("America/New_York", services.clock.now()) in text
        assert "complaint" in text
        # and everything fits the 80x24 screen: the section titles and the keys are on it
        lines = screen_text(app)
        assert len(lines) == 24
        assert all(len(line) <= 80 for line in lines)
        screen = "\n".join(lines)
        for visible in (
            "Customer",
            "Reminders",
            "Keep",
            "Reassign",
            "Renegotiate",
            "Log",
            "Parcel arrived broken",
            "Replace the parcel",
            "Send invoice 7 again",
        ):
            assert visible in screen, f"{visible!r} not on the screen:\n{screen}"


async def test_a_reminder_arrives_live_and_once_across_a_restart_of_the_followup_service(
    services: DeskServices,
) -> None:
    maria = await services.customer("María García López", "María", "Europe/Madrid")
    first = await services.promise(maria.id, "Call María back", timedelta(minutes=30))
    second = await services.promise(maria.id, "Email the label", timedelta(hours=3))
    app = services.desk(feed_retry_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await shown(pilot, lambda: rows(app) == [first.id, second.id])
        await shown(pilot, lambda: app.resume_token != "" or app.feed_state == "live")
        # When the first falls due, its reminder reaches the desk at once
        assert await services.fall_due(timedelta(minutes=30)) == 1
        await shown(pilot, lambda: [r.promise_id for r in app.reminders] == [first.id])
        assert "Call María back" in app.reminders_text().plain
        assert cell(app, first.id, "flag") == "●"

        # When the follow-up service the desk streams from goes away,
        await services.followup.stop()
        await shown(pilot, lambda: app.feed_state.startswith("lost"))
        # another replica sends the second reminder while the desk is cut off,
        other = await services.replica(CRM_GRPC_PORT="0")
        assert await services.fall_due(timedelta(minutes=90), other) == 1  # 1h before due
        # and the service comes back where the desk looks for it,
        services.followup = await services.replica()

        # then the desk gets what it missed, and nothing twice
        await shown(pilot, lambda: len(app.reminders) == 2)
        assert [r.promise_id for r in app.reminders] == [second.id, first.id]
        assert len(app.reminder_ids_read) == len(set(app.reminder_ids_read)) == 2
        assert app.feed_state == "live"


def problems(app: DeskApp) -> list[str]:
    """What the open form says is wrong, as the agent reads it."""
    return app.screen.problems if isinstance(app.screen, FormScreen) else []


async def form(app: DeskApp) -> FormScreen:
    screen = app.screen
    assert isinstance(screen, FormScreen), f"no form open: {screen!r}"
    return screen


async def test_keep_reassign_and_renegotiate_from_the_keyboard(
    services: DeskServices,
) -> None:
    maria = await services.customer("María García López", "María", "Europe/Madrid")
    to_keep = await services.promise(maria.id, "Send the refund", timedelta(minutes=10))
    to_move = await services.promise(maria.id, "Visit on Friday", timedelta(hours=2))
    to_hand = await services.promise(maria.id, "Check the meter", timedelta(hours=3))
    promises = services.client.promises

    app = services.desk()
    async with app.run_test(size=SIZE) as pilot:
        await shown(pilot, lambda: rows(app) == [to_keep.id, to_move.id, to_hand.id])

        # k on the first row: a form; Enter sends the note
        await pilot.press("k")
        assert (await form(app)).form_title == "Keep promise"
        await type_text(pilot, "ref 991")
        await pilot.press("enter")
        await shown(pilot, lambda: rows(app) == [to_move.id, to_hand.id])
        kept = await promises.get(to_keep.id)
        assert kept.status == promise_pb2.PROMISE_STATUS_KEPT
        assert kept.evidence.note == "ref 991"

        # r: a due time in the past is refused by the service, named against its field
        await pilot.press("r")
        await type_text(pilot, "2020-01-01 10:00")
        await pilot.press("tab")
        await type_text(pilot, "asked")
        await pilot.press("ctrl+s")
        await shown(pilot, lambda: bool(problems(app)))
        renegotiation = await form(app)
        assert renegotiation.problems[0].startswith("New due: is in the past")
        assert renegotiation.query_one("#label-due").has_class("-invalid")
        # and corrected in place: the form kept what was typed
        await pilot.press("shift+tab", "ctrl+a", "ctrl+k")  # back to the due field, cleared
        await type_text(pilot, "+1d")
        await pilot.press("tab", "tab", "space", "ctrl+s")  # the customer agreed
        await shown(pilot, lambda: not isinstance(app.screen, FormScreen))
        moved = await promises.get(to_move.id)
        expected = services.clock.now() + timedelta(days=1)
        assert view.from_timestamp(moved.due_at) == expected
        assert moved.renegotiation_count == 1
        # resorted, the cursor staying on the promise just moved
        await shown(pilot, lambda: rows(app) == [to_hand.id, to_move.id])
        assert app.selected_id == to_move.id

        # a (on the row above): both fields are required; the desk says so before sending
        await pilot.press("up")
        assert app.selected_id == to_hand.id
        await pilot.press("a")
        await type_text(pilot, "agent-pia")
        await pilot.press("ctrl+s")
        await shown(pilot, lambda: problems(app) == ["Reason: required"])
        await pilot.press("tab")
        await type_text(pilot, "on leave")
        await pilot.press("enter")
        await shown(pilot, lambda: rows(app) == [to_move.id])
        handed = await promises.get(to_hand.id)
        assert handed.owner_id == "agent-pia"
        assert handed.history[-1].reason == "on leave"

        # While a form is open (a modal: the desk's keys stop at it) q on its buttons quits nothing
        await pilot.press("k")
        await pilot.press("tab", "q", "k")
        assert isinstance(app.screen, FormScreen)
        assert len(app.screen_stack) == 2
        # and Escape closes it without doing anything
        await pilot.press("escape")
        assert not isinstance(app.screen, FormScreen)
        assert (await promises.get(to_move.id)).status == promise_pb2.PROMISE_STATUS_OPEN


async def test_logging_an_interaction_with_a_promise_puts_both_on_the_desk(
    services: DeskServices,
) -> None:
    maria = await services.customer("María García López", "María", "Europe/Madrid")
    existing = await services.promise(maria.id, "Send the catalogue", timedelta(hours=4))

    app = services.desk()
    async with app.run_test(size=SIZE) as pilot:
        await shown(pilot, lambda: rows(app) == [existing.id])
        await pilot.press("l")
        log = await form(app)
        assert log.form_title == "Log an interaction"
        # channel and type are choices with keyboard search; the defaults are phone, follow up
        await pilot.press("tab", "tab")  # to the summary
        await type_text(pilot, "Called her")
        await pilot.press("enter")
        await type_text(pilot, "Post it")
        await pilot.press("enter")
        await type_text(pilot, "+2h")
        await pilot.press("enter")  # the last field sends
        await shown(pilot, lambda: not isinstance(app.screen, FormScreen))

        # the interaction is on María's timeline
        await shown(pilot, lambda: "Called her" in app.contact_text().plain)
        assert "follow up" in app.contact_text().plain
        # and the promise made in it reaches the list once the follow-up service has it
        await shown(pilot, lambda: len(rows(app)) == 2)
        made = app.promises[rows(app)[0]]
        assert made.text == "Post it"
        assert made.owner_id == AGENT
        expected = services.clock.now() + timedelta(hours=2)
        assert view.from_timestamp(made.due_at) == expected
        assert cell(app, made.id, "due") == view.short_time(
            expected, AGENT_ZONE, services.clock.now()
        )


async def test_a_token_the_services_refuse_is_said_on_the_status_line(
    services: DeskServices,
) -> None:
    async with services.client_with("not-a-token") as client:
        app = DeskApp(client, user=AGENT, zone=AGENT_ZONE, now=services.clock.now)
        async with app.run_test(size=SIZE) as pilot:
            await shown(pilot, lambda: "Unauthenticated" in screen_text(app)[0])
            await shown(pilot, lambda: app.feed_state.startswith("stopped (Unauthenticated"))
            assert rows(app) == []


async def test_a_customer_the_agent_cannot_read_is_shown_by_id_with_the_reason(
    services: DeskServices,
) -> None:
    # A promise to a contact the contacts service does not know (erased, or never created)
    promise = await services.promise("c-unknown", "Ring back", timedelta(hours=1))
    app = services.desk()
    async with app.run_test(size=SIZE) as pilot:
        await shown(pilot, lambda: rows(app) == [promise.id])
        assert cell(app, promise.id, "customer") == "c-unknow"
        await shown(pilot, lambda: "NotFound" in app.contact_text().plain)
        assert app.contact_text().plain.startswith("c-unknown: NotFound")
