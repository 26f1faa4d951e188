"""Identifiers: random UUIDs for resources and events, stable ones derived from a request id."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import uuid

_NAMESPACE = uuid.UUID("5b3a6c1e-2f0d-4c89-9f52-7d1f0e6b8a10")
_NAMESPACE_BYTES = _NAMESPACE.bytes
_VARIANT = "89ab89ab89ab89ab"  # RFC 4122 variant nibble (10xx), indexed by a random nibble


class _RandomHex(threading.local):
    """Random bytes drawn from the OS in bulk, as hex, one pool per thread."""

    hex = ""
    at = 0


_POOL = _RandomHex()
_IDS_PER_DRAW = 128
# A forked child must not hand out the ids its parent's pool will.
os.register_at_fork(after_in_child=lambda: setattr(_POOL, "at", len(_POOL.hex)))


def new_id() -> str:
    """A random (version 4) UUID in its canonical text, as str(uuid.uuid4()) gives it.

    The bytes come from os.urandom like uuid4's, but 128 ids' worth at a time: each
    os.urandom call lets go of the GIL for its system call, and on a busy service getting it
    back (from the store's writer thread) costs far more than the call."""
    pool = _POOL
    if pool.at >= len(pool.hex):
        pool.hex, pool.at = os.urandom(16 * _IDS_PER_DRAW).hex(), 0
    at = pool.at
    pool.at = at + 32
    h = pool.hex[at : at + 32]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:]}"


def derived_id(*parts: str) -> str:
    """The same parts always give the same id, so a retried request or redelivered event
    produces the very same resource and event ids: str(uuid.uuid5(namespace, joined parts)),
    written from the digest's hex as `new_id` does."""
    h = hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:32]}"


def fingerprint(payload: object) -> str:
    """A digest of a request, to tell a retry (same digest) from a reused request id.

    Dataclasses count as the dicts `dataclasses.asdict` makes of them, so a digest stored by
    an earlier release still matches; `plain` builds them without asdict's deep copies."""
    text = json.dumps(plain(payload), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# The field names of each dataclass seen, and the types that are neither dataclass nor
# container (str, enums, datetimes), which JSON takes as they are.
_FIELDS: dict[type, tuple[str, ...]] = {}
_LEAVES: set[type] = {str, int, float, bool, type(None)}


def plain(value: object) -> object:
    """`value` as the JSON encoder sees `dataclasses.asdict(value)`: dataclasses as dicts of
    their fields, tuples and lists as lists, everything else as it is."""
    cls = type(value)
    if cls in _LEAVES:
        return value
    names = _FIELDS.get(cls)
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(value))
        return plain(value)
    _LEAVES.add(cls)
    return value
