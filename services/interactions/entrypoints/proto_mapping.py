"""Translation between interactions protos and the domain, and the service's enum maps: a
request's mapper collects every enum number and instant the contract refuses, then raises once."""

from __future__ import annotations

from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.domain.model import (
    Channel,
    Direction,
    Interaction,
    InteractionDraft,
    InteractionType,
    PromiseDraft,
    PromiseInInteraction,
    PromiseKind,
    Purchase,
)
from interactions.ports import TimelineFilter
from promesa.errors import Violations
from promesa.protos import EnumMap, from_duration, from_timestamp, set_timestamp

CHANNEL = EnumMap(interaction_pb2.Channel, "CHANNEL", Channel)
DIRECTION = EnumMap(interaction_pb2.Direction, "DIRECTION", Direction)
INTERACTION_TYPE = EnumMap(interaction_pb2.InteractionType, "INTERACTION_TYPE", InteractionType)
PROMISE_KIND = EnumMap(interaction_pb2.PromiseKind, "PROMISE_KIND", PromiseKind)


def purchase_to_proto(p: Purchase | None) -> interaction_pb2.PurchaseDetails | None:
    if p is None:
        return None
    return interaction_pb2.PurchaseDetails(
        amount_minor=p.amount_minor, currency_code=p.currency_code
    )


def promise_to_proto(
    p: PromiseInInteraction, into: interaction_pb2.PromiseMade | None = None
) -> interaction_pb2.PromiseMade:
    """The promise as sent, written into `into` (an empty message: an element just added to
    a repeated field) or a new one."""
    m = interaction_pb2.PromiseMade() if into is None else into
    m.id = p.id
    m.text = p.text
    set_timestamp(m.due_at, p.due_at)
    if p.owner_id:
        m.owner_id = p.owner_id
    m.kind = PROMISE_KIND.to_proto(p.kind)
    return m


def interaction_to_proto(
    i: Interaction, into: interaction_pb2.Interaction | None = None
) -> interaction_pb2.Interaction:
    """The touch as callers see it, written into `into` (an empty message, such as a
    response's `interaction`, which spares building one and copying it) or a new message.
    Empty fields are left alone: proto3 does not send them anyway."""
    m = interaction_pb2.Interaction() if into is None else into
    d = i.details
    m.id = i.id
    m.contact_id = i.contact_id
    m.channel = CHANNEL.to_proto(d.channel)
    if d.direction is not None:
        m.direction = DIRECTION.to_proto(d.direction)
    m.type = INTERACTION_TYPE.to_proto(d.type)
    set_timestamp(m.occurred_at, d.occurred_at)
    m.agent_id = d.agent_id
    if d.team:
        m.team = d.team
    if d.summary:
        m.summary = d.summary
    if d.notes:
        m.notes = d.notes
    if d.outcome:
        m.outcome = d.outcome
    if d.purchase is not None:
        m.purchase.amount_minor = d.purchase.amount_minor
        m.purchase.currency_code = d.purchase.currency_code
    if d.thread_id:
        m.thread_id = d.thread_id
    for p in i.promises:
        promise_to_proto(p, into=m.promises.add())
    if i.satisfaction:
        m.satisfaction = i.satisfaction
    set_timestamp(m.rated_at, i.rated_at)
    for a in i.amendments:
        amendment = m.amendments.add(
            actor=a.actor,
            changed_fields=a.changed_fields,
            reason=a.reason,
            previous_values=dict(a.previous_values),
        )
        set_timestamp(amendment.amended_at, a.amended_at)
    m.etag = i.etag
    m.created_by = i.created_by
    m.updated_by = i.updated_by
    set_timestamp(m.created_at, i.created_at)
    set_timestamp(m.updated_at, i.updated_at)
    set_timestamp(m.erased_at, i.erased_at)
    return m


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
        type=INTERACTION_TYPE.parse(r.type, "type", v),
        channel=CHANNEL.parse(r.channel, "channel", v),
        agent_id=r.agent_id,
        occurred_after=from_timestamp(r, "occurred_after", "occurred_after", v),
        occurred_before=from_timestamp(r, "occurred_before", "occurred_before", v),
    )
    v.raise_if_any()
    return f


def _draft(p: interaction_pb2.Interaction, v: Violations) -> InteractionDraft:
    """Every field a caller may set, as sent; output-only fields are ignored."""
    return InteractionDraft(
        type=INTERACTION_TYPE.parse(p.type, "interaction.type", v),
        channel=CHANNEL.parse(p.channel, "interaction.channel", v),
        direction=DIRECTION.parse(p.direction, "interaction.direction", v),
        occurred_at=from_timestamp(p, "occurred_at", "interaction.occurred_at", v),
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
        due_at=from_timestamp(p, "due_at", f"{path}.due_at", v),
        due_within=from_duration(p, "due_within", f"{path}.due_within", v),
        owner_id=p.owner_id,
        kind=PROMISE_KIND.parse(p.kind, f"{path}.kind", v),
    )
