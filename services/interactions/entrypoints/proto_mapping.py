"""Translation between interactions protos and the domain; unknown enum numbers are violations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.domain.model import (
    Channel,
    Direction,
    Interaction,
    InteractionDraft,
    InteractionType,
    PromiseDraft,
    PromiseKind,
    PromiseMade,
    Purchase,
)
from interactions.ports import TimelineFilter
from promesa.errors import InvalidArgumentError, Violations
from promesa.protos import enum_from_proto, enum_to_proto, from_timestamp, to_timestamp

CHANNEL = ("CHANNEL", interaction_pb2.Channel)
DIRECTION = ("DIRECTION", interaction_pb2.Direction)
TYPE = ("INTERACTION_TYPE", interaction_pb2.InteractionType)
KIND = ("PROMISE_KIND", interaction_pb2.PromiseKind)


def _instant(message: Any, field: str, path: str, v: Violations) -> datetime | None:
    """Collects a Timestamp outside years 1-9999 with the request's other violations."""
    try:
        return from_timestamp(message, field, path)
    except InvalidArgumentError as exc:
        for violation in exc.violations:
            v.add(violation.field, violation.description)
        return None


def _span(message: Any, field: str, path: str, v: Violations) -> timedelta | None:
    if not message.HasField(field):
        return None
    try:
        span: timedelta = getattr(message, field).ToTimedelta()
    except (ValueError, OverflowError):
        v.add(path, "is not a valid duration")
        return None
    return span


def purchase_to_proto(p: Purchase | None) -> interaction_pb2.PurchaseDetails | None:
    if p is None:
        return None
    return interaction_pb2.PurchaseDetails(
        amount_minor=p.amount_minor, currency_code=p.currency_code
    )


def promise_to_proto(p: PromiseMade) -> interaction_pb2.PromiseMade:
    return interaction_pb2.PromiseMade(
        id=p.id,
        text=p.text,
        due_at=to_timestamp(p.due_at),
        owner_id=p.owner_id,
        kind=enum_to_proto(p.kind, *KIND),
    )


def interaction_to_proto(i: Interaction) -> interaction_pb2.Interaction:
    d = i.details
    return interaction_pb2.Interaction(
        id=i.id,
        contact_id=i.contact_id,
        channel=enum_to_proto(d.channel, *CHANNEL),
        direction=enum_to_proto(d.direction, *DIRECTION),
        type=enum_to_proto(d.type, *TYPE),
        occurred_at=to_timestamp(d.occurred_at),
        agent_id=d.agent_id,
        team=d.team,
        summary=d.summary,
        notes=d.notes,
        outcome=d.outcome,
        purchase=purchase_to_proto(d.purchase),
        thread_id=d.thread_id,
        promises=[promise_to_proto(p) for p in i.promises],
        satisfaction=i.satisfaction or 0,
        rated_at=to_timestamp(i.rated_at),
        amendments=[
            interaction_pb2.Amendment(
                actor=a.actor,
                amended_at=to_timestamp(a.amended_at),
                changed_fields=a.changed_fields,
                reason=a.reason,
                previous_values=dict(a.previous_values),
            )
            for a in i.amendments
        ],
        etag=i.etag,
        created_by=i.created_by,
        updated_by=i.updated_by,
        created_at=to_timestamp(i.created_at),
        updated_at=to_timestamp(i.updated_at),
        erased_at=to_timestamp(i.erased_at),
    )


def recorded_from_proto(
    p: interaction_pb2.Interaction,
) -> tuple[InteractionDraft, tuple[PromiseDraft, ...]]:
    """The touch and its promises as sent; raises with every enum or time the contract refuses."""
    v = Violations()
    draft = _draft(p, v)
    promises = tuple(
        _promise(promise, v, f"interaction.promises[{i}]") for i, promise in enumerate(p.promises)
    )
    v.raise_if_any()
    return draft, promises


def amendment_from_proto(p: interaction_pb2.Interaction) -> InteractionDraft:
    v = Violations()
    draft = _draft(p, v)
    v.raise_if_any()
    return draft


def filter_from_request(r: interactions_pb.ListInteractionsRequest) -> TimelineFilter:
    v = Violations()
    f = TimelineFilter(
        contact_id=r.contact_id,
        type=enum_from_proto(r.type, *TYPE, InteractionType, "type", v),
        channel=enum_from_proto(r.channel, *CHANNEL, Channel, "channel", v),
        agent_id=r.agent_id,
        occurred_after=_instant(r, "occurred_after", "occurred_after", v),
        occurred_before=_instant(r, "occurred_before", "occurred_before", v),
    )
    v.raise_if_any()
    return f


def _draft(p: interaction_pb2.Interaction, v: Violations) -> InteractionDraft:
    """Every field a caller may set, as sent; output-only fields are ignored."""
    return InteractionDraft(
        type=enum_from_proto(p.type, *TYPE, InteractionType, "interaction.type", v),
        channel=enum_from_proto(p.channel, *CHANNEL, Channel, "interaction.channel", v),
        direction=enum_from_proto(p.direction, *DIRECTION, Direction, "interaction.direction", v),
        occurred_at=_instant(p, "occurred_at", "interaction.occurred_at", v),
        agent_id=p.agent_id,
        team=p.team,
        summary=p.summary,
        notes=p.notes,
        outcome=p.outcome,
        purchase=Purchase(p.purchase.amount_minor, p.purchase.currency_code)
        if p.HasField("purchase")
        else None,
        thread_id=p.thread_id,
    )


def _promise(p: interaction_pb2.PromiseMade, v: Violations, path: str) -> PromiseDraft:
    """Promise ids are the server's to assign, so any sent are ignored."""
    return PromiseDraft(
        text=p.text,
        due_at=_instant(p, "due_at", f"{path}.due_at", v),
        due_within=_span(p, "due_within", f"{path}.due_within", v),
        owner_id=p.owner_id,
        kind=enum_from_proto(p.kind, *KIND, PromiseKind, f"{path}.kind", v),
    )
