"""tests/metrics_scrape.py, the scrape the deploy tests check dashboards and alerts against:
after a little of everything, every metric the services declare is there, with samples."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devtools.natsserver import NatsServer
from tests.metrics_scrape import metric_names, scrape

# Every metric the README's Observability section lists, by exposed name.
EXPOSED = {
    "promesa_grpc_server_handled_total",
    "promesa_grpc_server_handling_seconds",
    "promesa_events_published_total",
    "promesa_events_consumed_total",
    "promesa_event_handling_seconds",
    "promesa_events_redelivered_total",
    "promesa_dead_letters_total",
    "promesa_outbox_backlog",
    "promesa_outbox_oldest_age_seconds",
    "promesa_consumer_pending_messages",
    "promesa_consumer_ack_pending_messages",
    "promesa_followup_events_about_erased_contacts_total",
    "promesa_followup_promises_open",
    "promesa_followup_promises_overdue",
    "promesa_followup_promises_kept_total",
    "promesa_followup_reminder_lag_seconds",
    "promesa_followup_deliveries_failed_total",
}


async def test_the_scrape_has_every_metric_after_a_little_of_everything(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    text = await scrape(nats_server, tmp_path)
    assert metric_names(text) >= EXPOSED
    sampled = {
        family.name: {s.name: s.labels for s in family.samples}
        for family in text_string_to_metric_families(text)
        if family.samples
    }
    for name in (
        "promesa_outbox_oldest_age_seconds",
        "promesa_consumer_pending_messages",
        "promesa_dead_letters",
        "promesa_followup_promises_open",
        "promesa_followup_promises_kept",
        "promesa_followup_reminder_lag_seconds",
        "promesa_followup_deliveries_failed",
    ):
        assert name in sampled, f"{name} has no sample after the run"
