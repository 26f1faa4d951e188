"""Identifiers: random UUIDs for resources and events, stable ones derived from a request id."""

from __future__ import annotations

import hashlib
import json
import uuid

_NAMESPACE = uuid.UUID("5b3a6c1e-2f0d-4c89-9f52-7d1f0e6b8a10")


def new_id() -> str:
    return str(uuid.uuid4())


def derived_id(*parts: str) -> str:
    """The same parts always give the same id, so a retried request or redelivered event
    produces the very same resource and event ids."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def fingerprint(payload: object) -> str:
    """A digest of a request, to tell a retry (same digest) from a reused request id."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
