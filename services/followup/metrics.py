"""The follow-up service's domain metrics, beside the platform's (promesa.metrics)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_ABOUT_ERASED_CONTACTS = Counter(
    "promesa_followup_events_about_erased_contacts_total",
    "Events about a contact erased before they arrived (an interaction, a change of status or"
    " of profile): acknowledged, and nothing recorded.",
    ["event"],
)
