"""End to end, the three services in one process on a real nats-server, each traced into one
in-memory exporter: a RecordInteraction call with a promise, the promise's reminder falling due
days later, and every span on the way in one trace whose parent links run back to the call,
across gRPC, the outbox, NATS and the scheduler. Runs on SQLite and on MongoDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from crm.followup.v1 import followup_service_pb2 as followup_pb
from promesa import tracing
from tests import whole_system
from tests.contacts.conftest import RunningContacts
from tests.followup.conftest import RunningFollowup
from tests.interactions.conftest import (
    RunningInteractions,
    an_interaction,
    contact_in_both,
    record,
)
from tests.interactions.conftest import a_promise as promised_in_interaction
from tests.platform.test_tracing import parent_of, service_of, traced
from tests.support import bearer, eventually

backend = whole_system.backend
contacts_service = whole_system.contacts_service
interactions_beside_contacts = whole_system.interactions_beside_contacts
followup_beside = whole_system.followup_beside

SERVICES = ("contacts", "interactions", "followup")


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    """Traced before the services start (autouse fixtures come first): their runtimes add the
    gRPC instrumentation then."""
    with traced(*SERVICES) as exporter:
        yield exporter


def tree(spans: list[ReadableSpan], root: ReadableSpan) -> list[str]:
    """The trace as indented lines: name, service, parent's name."""
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        children.setdefault(parent_of(s), []).append(s)
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        parent = by_id.get(parent_of(span) or 0)
        lines.append(
            f"{'  ' * depth}{span.name}  [{service_of(span)}]"
            f"  <- {parent.name if parent else '(root)'}"
        )
        for child in children.get(span.context.span_id, []):
            walk(child, depth + 1)

    walk(root, 0)
    return lines


def ancestry(spans: list[ReadableSpan], span: ReadableSpan) -> list[str]:
    """The names from `span` up to its trace's root, following the parent links."""
    by_id = {s.context.span_id: s for s in spans}
    names = [span.name]
    while (parent := by_id.get(parent_of(span) or 0)) is not None:
        names.append(parent.name)
        span = parent
    return names


async def test_one_trace_runs_from_record_interaction_through_nats_to_the_reminder_sent(
    spans: InMemorySpanExporter,
    contacts_service: RunningContacts,
    interactions_beside_contacts: RunningInteractions,
    followup_beside: RunningFollowup,
) -> None:
    followup, clock = followup_beside, contacts_service.clock
    contact_id = await contact_in_both(
        contacts_service, interactions_beside_contacts, "traced@example.com"
    )
    await eventually(lambda: followup.app.store.profile(contact_id))
    spans.clear()

    # Given an interaction recorded with a promise due in two days,
    interaction = await record(
        interactions_beside_contacts,
        an_interaction(contact_id, promises=[promised_in_interaction(within=timedelta(days=2))]),
    )

    async def tracked() -> followup_pb.ListPromisesResponse | None:
        reply = await followup.stub.ListPromises(
            followup_pb.ListPromisesRequest(contact_id=contact_id), metadata=bearer()
        )
        return reply if reply.promises else None

    [promise] = (await eventually(tracked)).promises
    # when its first reminder falls due a day later and the scheduler delivers it (in the
    # scheduler's worker, which runs with the service's tracer, as the test does here),
    clock.set(promise.due_at.ToDatetime().replace(tzinfo=clock.now().tzinfo) - timedelta(days=1))
    bound = tracing.bind(tracing.tracer_of("followup"))
    try:
        assert await followup.scheduler.tick() == 1
    finally:
        tracing.unbind(bound)

    # then the relay's publish of the reminder continues the trace of the call,
    def finished() -> list[ReadableSpan]:
        return list(spans.get_finished_spans())

    async def reminder_published() -> ReadableSpan | None:
        found = [s for s in finished() if s.name == "publish crm.followup.v1.ReminderSent"]
        return found[0] if found else None

    published = await eventually(reminder_published)

    async def contacts_consumed() -> list[ReadableSpan]:
        return [s for s in finished() if service_of(s) == "contacts"]

    await eventually(contacts_consumed)
    call = next(s for s in finished() if s.name.endswith("InteractionsService/RecordInteraction"))
    trace = [s for s in finished() if s.context.trace_id == call.context.trace_id]
    print(f"\none trace ({len(trace)} spans), interaction {interaction.id}:")
    print("\n".join(tree(trace, call)))
    assert published.context.trace_id == call.context.trace_id
    chain = ancestry(trace, published)
    assert chain[-1] == call.name
    # through the interaction's event consumed in the follow-up service, the promise's commit
    # and the reminder's delivery,
    assert "process crm.interactions.v1.InteractionRecorded" in chain
    assert any(n.startswith("reminder.deliver") for n in chain)
    assert "store.commit" in chain
    # and the three services and NATS all took part in it.
    assert {service_of(s) for s in trace} == set(SERVICES)
    # Kubernetes' probes are not traced: a span per probe would bury the calls.
    health: Any = health_pb2_grpc.HealthStub(interactions_beside_contacts.channel)  # untyped
    await health.Check(health_pb2.HealthCheckRequest())
    assert not [s for s in finished() if "Health" in s.name]
    names = {s.name for s in trace}
    assert {
        "publish crm.interactions.v1.InteractionRecorded",
        "publish crm.followup.v1.PromiseMade",
        "publish crm.followup.v1.ReminderSent",
    } <= names
