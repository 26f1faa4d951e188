"""The timeline's rules on their own: promises, corrections, erasure, money."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from interactions.domain import rules
from interactions.domain.model import (
    Channel,
    Interaction,
    InteractionDetails,
    InteractionDraft,
    InteractionType,
    PromiseDraft,
    PromiseKind,
    Purchase,
)
from interactions.validation import validate_details
from promesa.errors import Violations

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def a_touch(**details: object) -> Interaction:
    values: dict[str, object] = {
        "type": InteractionType.COMPLAINT,
        "channel": Channel.PHONE,
        "occurred_at": AT,
        "agent_id": "agent-ana",
        "summary": "Kettle leaks",
        "notes": "Since Tuesday",
        "outcome": "Replacement sent",
        **details,
    }
    return Interaction(
        id="i-1",
        contact_id="c-1",
        details=InteractionDetails(**values),  # type: ignore[arg-type]
        created_at=AT,
        updated_at=AT,
        created_by="agent-ana",
        updated_by="agent-ana",
    )


def test_a_span_counts_from_when_the_touch_happened_and_the_owner_defaults_to_the_agent() -> None:
    touch = a_touch(occurred_at=AT - timedelta(hours=3))
    [promise] = rules.promises_from(
        [PromiseDraft("Call back", due_within=timedelta(hours=4))], ["p-1"], touch.details
    )
    assert promise.due_at == AT + timedelta(hours=1)
    assert (promise.id, promise.owner_id, promise.kind) == ("p-1", "agent-ana", PromiseKind.OTHER)


def test_an_amendment_keeps_what_it_replaced_as_text() -> None:
    touch = a_touch()
    corrected = InteractionDetails(
        type=InteractionType.PURCHASE,
        channel=Channel.PHONE,
        occurred_at=AT - timedelta(minutes=30),
        agent_id="agent-ana",
        summary="Kettle bought",
        notes=touch.details.notes,
        outcome=touch.details.outcome,
        purchase=Purchase(4999, "EUR"),
    )

    amended, changed = rules.amended(touch, corrected, "sup-sam", "wrong form", AT)

    assert changed == ("type", "occurred_at", "summary", "purchase")
    [amendment] = amended.amendments
    assert dict(amendment.previous_values) == {
        "type": "COMPLAINT",
        "occurred_at": "2026-03-02T09:00:00+00:00",
        "summary": "Kettle leaks",
        "purchase": "",
    }
    assert (amended.version, amended.updated_by) == (2, "sup-sam")
    assert str(corrected.purchase) == "4999 EUR"


def test_an_amendment_that_changes_nothing_records_nothing() -> None:
    touch = a_touch()
    assert rules.amended(touch, touch.details, "sup-sam", "no-op", AT) == (touch, ())


def test_erasure_drops_the_words_and_keeps_the_facts() -> None:
    touch = rules.rated(a_touch(), 3, "agent-ana", AT)
    gone = rules.erased(touch, "sup-sam", AT + timedelta(days=1))
    d = gone.details
    assert (d.summary, d.notes, d.outcome) == ("", "", "")
    assert (d.type, d.channel, d.occurred_at, d.agent_id) == (
        InteractionType.COMPLAINT,
        Channel.PHONE,
        AT,
        "agent-ana",
    )
    assert gone.satisfaction == 3 and gone.erased_at == AT + timedelta(days=1)


def test_a_currency_is_normalised_and_must_be_in_iso_4217() -> None:
    def check(code: str) -> tuple[InteractionDetails | None, Violations]:
        v = Violations()
        draft = InteractionDraft(
            type=InteractionType.PURCHASE,
            channel=Channel.WEB,
            occurred_at=AT,
            agent_id="agent-ana",
            purchase=Purchase(100, code),
        )
        return validate_details(draft, v, AT), v

    details, v = check(" chf ")
    assert not v and details is not None and details.purchase == Purchase(100, "CHF")
    for bad in ("EUX", "XAU", "XTS", "EU", ""):
        assert check(bad)[0] is None, bad
