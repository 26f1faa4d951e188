"""The per-call shortcuts give the answers of the slow ways they replace: digests that match
the ones stored by earlier releases, ids in the canonical UUID form, Timestamps as protobuf
computes them, control characters as Unicode defines them, and verified access tokens that are
remembered only while a full check would still accept them."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import timestamp_pb2

from contacts.domain.model import (
    Channel,
    Contact,
    ContactDetails,
    ContactKind,
    Lifecycle,
    PostalAddress,
    QuietHours,
    Relationship,
)
from contacts.entrypoints.proto_mapping import contact_from_proto, contact_to_proto
from contacts.validation import validate_details
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from interactions.domain.model import (
    InteractionDraft,
    InteractionType,
    PromiseDraft,
    PromiseKind,
    Purchase,
)
from promesa.auth import JwtSettings, JwtVerifier, SigningKeys
from promesa.errors import UnauthenticatedError, Violations, control_characters
from promesa.ids import derived_id, fingerprint, new_id
from promesa.protos import from_timestamp, set_timestamp, to_timestamp

AT = datetime(2026, 1, 5, 9, 30, 15, 123456, tzinfo=UTC)


def digest_as_stored_before(payload: object) -> str:
    """What releases before the lean path stored: the digest of asdict's JSON."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- digests and ids -------------------------------------------------------------------------


def test_a_contact_drafts_digest_is_the_one_earlier_releases_stored() -> None:
    sent = contact_pb2.Contact(
        kind=contact_pb2.CONTACT_KIND_PERSON,
        display_name="Ana Ruiz",
        emails=["ana@example.com"],
        phones=["+34 600 000 000"],
        tags=["vip"],
        consents=[contact_pb2.ChannelConsent(channel=contact_pb2.CHANNEL_EMAIL, granted=True)],
        quiet_hours=contact_pb2.QuietHours(start_minute=1200, end_minute=420),
        postal_address=contact_pb2.PostalAddress(lines=["Calle 1"], country_code="ES"),
        preferred_channel=contact_pb2.CHANNEL_PHONE,
    )
    for message in (sent, contact_pb2.Contact(display_name="Bare")):
        draft = contact_from_proto(message)
        assert fingerprint(draft) == digest_as_stored_before(asdict(draft))


def test_an_interactions_digest_with_times_and_spans_is_the_one_stored_before() -> None:
    draft = InteractionDraft(
        type=InteractionType.PURCHASE,
        occurred_at=AT,
        summary="Bought a bike",
        purchase=Purchase(129_900, "EUR"),
    )
    promises = (
        PromiseDraft("Call back", due_within=timedelta(days=2), kind=PromiseKind.CALL_BACK),
        PromiseDraft("Send the invoice", due_at=AT + timedelta(days=1)),
    )
    sent = {"contact_id": "c-1", "draft": draft, "promises": promises}
    before = {
        "contact_id": "c-1",
        "draft": asdict(draft),
        "promises": [asdict(p) for p in promises],
    }
    assert fingerprint(sent) == digest_as_stored_before(before)


def test_new_ids_are_random_version_4_uuids_in_canonical_form() -> None:
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_derived_ids_are_the_uuid5_of_their_parts() -> None:
    namespace = uuid.UUID("5b3a6c1e-2f0d-4c89-9f52-7d1f0e6b8a10")
    rng = random.Random(7)
    for _ in range(2000):
        parts = tuple(
            "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(40)))
            for _ in range(rng.randrange(1, 4))
        )
        assert derived_id(*parts) == str(uuid.uuid5(namespace, "\x1f".join(parts)))


# --- Timestamps ------------------------------------------------------------------------------


def protobufs_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def test_timestamps_are_written_as_protobuf_computes_them() -> None:
    rng = random.Random(11)
    earliest = datetime(1, 1, 2, tzinfo=UTC)
    span = (datetime(9999, 12, 30, tzinfo=UTC) - earliest).total_seconds()
    for i in range(5000):
        value = earliest + timedelta(seconds=rng.random() * span)
        if i % 3 == 0:
            value = value.astimezone(timezone(timedelta(hours=rng.randrange(-12, 13))))
        assert to_timestamp(value) == protobufs_timestamp(value)
        written = contact_pb2.Contact()
        set_timestamp(written.created_at, value)
        assert written.created_at == protobufs_timestamp(value)
    assert to_timestamp(None) is None


def test_an_instant_at_the_epoch_is_still_set() -> None:
    written = contact_pb2.Contact()
    set_timestamp(written.created_at, datetime(1970, 1, 1, tzinfo=UTC))
    set_timestamp(written.erased_at, None)
    assert written.HasField("created_at")
    assert not written.HasField("erased_at")


def test_timestamps_are_read_as_protobuf_reads_them_and_nonsense_is_a_violation() -> None:
    rng = random.Random(13)
    limits = (-62_135_596_800, 253_402_300_799)
    for _ in range(5000):
        seconds = rng.randrange(limits[0] - 3, limits[1] + 3)
        nanos = rng.choice([0, 999_999_999, rng.randrange(10**9), -1, 10**9])
        sent = contact_pb2.Contact(created_at=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
        v = Violations()
        read = from_timestamp(sent, "created_at", "contact.created_at", v)
        try:
            expected: datetime | None = sent.created_at.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            expected = None
        assert read == expected
        assert bool(v) == (expected is None)


# --- text rules ------------------------------------------------------------------------------


def test_control_characters_are_unicodes_category_cc() -> None:
    for code in range(0x3000):
        ch = chr(code)
        for line_breaks in (False, True):
            allowed = "\n\r\t" if line_breaks else ""
            expected = unicodedata.category(ch) == "Cc" and ch not in allowed
            assert control_characters(f"a{ch}b", line_breaks=line_breaks) == expected
    assert not any(unicodedata.category(chr(c)) == "Cc" for c in range(0x3000, sys.maxunicode + 1))


def test_validated_details_are_built_from_every_field_there_is() -> None:
    # validate_details builds ContactDetails field by field (cheaper than replace): a field
    # added to ContactDetails must be added there too, or it would fall back to its default.
    assert set(ContactDetails.__dataclass_fields__) == {
        "kind",
        "display_name",
        "preferred_name",
        "emails",
        "phones",
        "postal_address",
        "organisation_id",
        "owner_id",
        "team",
        "tags",
        "time_zone",
        "preferred_channel",
        "consents",
        "quiet_hours",
        "discreet",
        "referred_by_id",
        "relationship",
    }


def test_validated_details_keep_every_field_they_do_not_normalise() -> None:
    sent = ContactDetails(
        kind=ContactKind.ORGANISATION,
        display_name=" Acme ",
        emails=("Sales@Acme.example",),
        postal_address=PostalAddress(lines=("Main St 1",), country_code="de"),
        owner_id="agent-ana",
        team="madrid",
        tags=("VIP",),
        time_zone="Europe/Madrid",
        preferred_channel=Channel.EMAIL,
        consents=((Channel.EMAIL, True),),
        quiet_hours=QuietHours(1200, 420),
        discreet=True,
        relationship=Relationship.INTERNAL_DEPARTMENT,
    )
    v = Violations()
    checked = validate_details(sent, v, "ES")
    assert not v
    assert checked == ContactDetails(
        kind=ContactKind.ORGANISATION,
        display_name="Acme",
        emails=("sales@acme.example",),
        postal_address=PostalAddress(lines=("Main St 1",), country_code="DE"),
        owner_id="agent-ana",
        team="madrid",
        tags=("vip",),
        time_zone="Europe/Madrid",
        preferred_channel=Channel.EMAIL,
        consents=((Channel.EMAIL, True),),
        quiet_hours=QuietHours(1200, 420),
        discreet=True,
        relationship=Relationship.INTERNAL_DEPARTMENT,
    )
    assert validate_details(sent, Violations(), "ES", kind=ContactKind.PERSON).kind is (
        ContactKind.PERSON
    )


def test_a_contact_written_into_a_response_is_the_contact_as_a_message() -> None:
    contact = Contact(
        id="c-1",
        details=ContactDetails(display_name="Ana", quiet_hours=QuietHours(0, 0)),
        status=Lifecycle.NEVER_PURCHASED,
        created_at=AT,
        updated_at=AT,
        created_by="agent-ana",
        updated_by="agent-ana",
        last_purchase_at=datetime(1970, 1, 1, tzinfo=UTC),
    )
    reply = contacts_pb.CreateContactResponse()
    contact_to_proto(contact, into=reply.contact)

    assert reply == contacts_pb.CreateContactResponse(contact=contact_to_proto(contact))
    assert reply.contact.HasField("quiet_hours")
    assert reply.contact.HasField("last_purchase_at")
    assert not reply.contact.HasField("postal_address")
    assert not reply.contact.HasField("erased_at")


# --- verified access tokens remembered -------------------------------------------------------

ISSUER = "https://id.example.test/realms/promesa"
AUDIENCE = "promesa-api"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC_JWK = {
    **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(PRIVATE.public_key())),
    "kid": "key-1",
    "use": "sig",
    "alg": "ES256",
}


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """What the identity provider publishes (key ids), and how often it was asked."""

    def __init__(self) -> None:
        self.published = {"key-1"}
        self.fetches = 0

    def fetch(self) -> Mapping[str, jwt.PyJWK]:
        self.fetches += 1
        return {kid: jwt.PyJWK(PUBLIC_JWK) for kid in self.published}


def access_token(kid: str = "key-1", **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "agent-ana", "role": "agent"}
    claims |= {"team": "madrid", "iat": now, "exp": now + 300, **overrides}
    return jwt.encode(claims, PRIVATE, "ES256", headers={"kid": kid})


def verifier(provider: Provider, clock: ManualClock) -> JwtVerifier:
    settings = JwtSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url="https://id.example.test/certs",
        jwks_cache_seconds=60.0,
    )
    return JwtVerifier(settings, SigningKeys(settings, fetch=provider.fetch, clock=clock))


async def test_a_verified_token_is_remembered_and_a_stranger_is_not() -> None:
    check = verifier(Provider(), ManualClock())
    token = access_token()

    assert check.verified(token) is None
    identity = await check.identify(token)

    assert check.verified(token) == identity
    assert check.verified(access_token(sub="agent-bo")) is None


async def test_a_token_past_its_expiry_is_never_answered_from_memory() -> None:
    # Given a token 5 s past its expiry, which the 30 s leeway still forgives
    check = verifier(Provider(), ManualClock())
    token = access_token(exp=int(time.time()) - 5)
    assert (await check.identify(token)).subject == "agent-ana"

    # Then each call checks it again: the leeway is the full check's to grant
    assert check.verified(token) is None


async def test_a_remembered_token_is_checked_again_once_its_keys_are_due() -> None:
    provider, clock = Provider(), ManualClock()
    check = verifier(provider, clock)
    token = access_token()
    await check.identify(token)

    # When the provider withdraws the key and the keys are due to be fetched again
    provider.published = set()
    clock.now += 61

    assert check.verified(token) is None
    with pytest.raises(UnauthenticatedError, match="signing key"):
        await check.identify(token)


async def test_keys_fetched_again_make_every_remembered_token_checked_again() -> None:
    provider, clock = Provider(), ManualClock()
    check = verifier(provider, clock)
    token = access_token()
    await check.identify(token)

    # When a token naming a new key makes the service fetch the keys again, which no longer
    # hold the first one
    provider.published = {"key-2"}
    clock.now += 11
    await check.identify(access_token("key-2"))
    assert provider.fetches == 2

    # Then the first token is refused at its next call, its key being gone
    assert check.verified(token) is None
    with pytest.raises(UnauthenticatedError, match="signing key"):
        await check.identify(token)
