"""The evidence of an erasure: who asked, when, why, and which services confirmed that they
erased their copies. It holds no personal data of the person erased: the contact id (which
the tombstone keeps too), the caller's identity and the reason they gave."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ErasureConfirmation:
    """One service erased what it held of the contact (and purged its stream)."""

    contact_id: str
    service: str
    confirmed_at: datetime


@dataclass(frozen=True)
class ErasureRecord:
    contact_id: str
    requested_by: str
    reason: str
    erased_at: datetime
    # In the order the services confirmed (then by name); one per service.
    confirmations: tuple[ErasureConfirmation, ...] = ()


def in_order(confirmations: list[ErasureConfirmation]) -> tuple[ErasureConfirmation, ...]:
    """The first confirmation of each service, in the order they confirmed: the same list
    whatever order they arrived in, however often each was redelivered."""
    first: dict[str, ErasureConfirmation] = {}
    for c in sorted(confirmations, key=lambda c: (c.confirmed_at, c.service)):
        first.setdefault(c.service, c)
    return tuple(first.values())
