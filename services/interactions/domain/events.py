"""What happened on the timeline, as facts in the past tense."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from interactions.domain.model import Interaction


@dataclass(frozen=True)
class InteractionRecorded:
    interaction: Interaction
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class InteractionRated:
    interaction: Interaction
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class InteractionAmended:
    interaction: Interaction
    changed_fields: tuple[str, ...]
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class ContactErasureConfirmed:
    """Everything this service held of the contact is erased: its touches' words, their old
    versions on disk, and its events in the service's stream."""

    contact_id: str
    occurred_at: datetime


InteractionEvent = (
    InteractionRecorded | InteractionRated | InteractionAmended | ContactErasureConfirmed
)
