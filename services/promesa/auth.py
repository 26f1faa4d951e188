"""Bearer-token identities: who is calling, with which role, bound for the duration of a call.

A caller presents either a static token (development, service-to-service) or an OIDC/JWT
access token from the organisation's identity provider, verified against its published keys.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import structlog

from promesa.errors import PermissionDeniedError, UnauthenticatedError, control_characters

log = structlog.get_logger(__name__)


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    SERVICE = "service"


@dataclass(frozen=True)
class Identity:
    """The caller of an RPC; its subject is recorded on every write it makes."""

    subject: str
    role: Role
    team: str = ""  # the team whose work this caller does, a default for what they record

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise PermissionDeniedError(
                f"{self.subject} ({self.role.value}) may not do this; allowed roles: {allowed}"
            )


# No default: a path that binds nobody (a call that skipped the interceptor, a task started
# outside any worker) has no identity and is refused, rather than acting as someone powerful.
_current: contextvars.ContextVar[Identity] = contextvars.ContextVar("identity")


def current_identity() -> Identity:
    """The caller bound for this call or this background job; fails closed when none is."""
    try:
        return _current.get()
    except LookupError:
        raise UnauthenticatedError("no caller identity is bound: access refused") from None


@contextmanager
def acting_as(identity: Identity) -> Iterator[Identity]:
    """Binds an identity for the duration of a call (the interceptor) or of one unit of
    background work (a consumer's event, a sweep, a scheduler tick)."""
    token = _current.set(identity)
    try:
        yield identity
    finally:
        _current.reset(token)


def bind_identity(identity: Identity) -> contextvars.Token[Identity]:
    """`acting_as` without the context manager, for the interceptor's per-call path: the
    caller must pass the token to `unbind_identity` when the call ends."""
    return _current.set(identity)


def unbind_identity(token: contextvars.Token[Identity]) -> None:
    _current.reset(token)


def worker_identity(service: str, worker: str) -> Identity:
    """The named identity of a service's own background work, recorded on what it writes."""
    return Identity(f"{service}/{worker}", Role.SERVICE)


def parse_tokens(spec: str) -> Mapping[str, Identity]:
    """Parses `token=subject:role[:team],…`; raises ValueError naming the bad entry."""
    tokens: dict[str, Identity] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        token, sep, who = entry.partition("=")
        subject, sep2, rest = who.partition(":")
        role, _, team = rest.partition(":")
        if not (sep and sep2 and token and subject):
            raise ValueError(f"entry {_redact(entry)!r} is not token=subject:role[:team]")
        try:
            tokens[token] = Identity(subject, Role(role), team)
        except ValueError:
            raise ValueError(
                f"role {role!r} of {subject!r} is not one of agent, supervisor, service"
            ) from None
    return tokens


def _redact(entry: str) -> str:
    token, _, rest = entry.partition("=")
    return f"{token[:3]}…={rest}" if rest else f"{token[:3]}…"


# ---------------------------------------------------------------------------------------------
# Which tokens a service accepts


@dataclass(frozen=True)
class JwtSettings:
    """How to trust the identity provider's access tokens (CRM_JWT_*): who issues them, for
    which audience, where its public keys are, and which claims name the caller."""

    issuer: str
    audience: str
    jwks_url: str = ""  # one of these two
    jwks_file: Path | None = None
    subject_claim: str = "sub"
    role_claim: str = "role"
    team_claim: str = "team"
    leeway_seconds: float = 30.0  # clock skew forgiven on exp, nbf and iat
    jwks_cache_seconds: float = 300.0  # keys are fetched again after this long


@dataclass(frozen=True)
class ApiTokens:
    """The bearer tokens a service accepts: static ones (CRM_API_TOKENS) and, when configured,
    the identity provider's JWT access tokens."""

    static: Mapping[str, Identity] = field(default_factory=dict, repr=False)
    jwt: JwtSettings | None = None


class SigningKeysUnavailableError(Exception):
    """The identity provider's keys could not be read and none are known: the service cannot
    tell a good token from a bad one right now (UNAVAILABLE, not the caller's fault)."""


# Asymmetric only: a symmetric algorithm would verify with the public key as an HMAC secret
# (algorithm confusion), and `none` verifies nothing.
ACCEPTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# A token naming a key we do not have may be the first signed with a new key: fetch again,
# but no more often than this, so random key ids cannot make us hammer the provider.
MIN_REFRESH_SECONDS = 10.0
JWKS_TIMEOUT_SECONDS = 5.0
MAX_SUBJECT_LENGTH = 200
# Verified access tokens remembered, so that a client's token is checked once, not on every
# call (a signature check costs far more than the call it guards); the oldest goes first.
MAX_VERIFIED_TOKENS = 10_000


def read_jwks(settings: JwtSettings) -> Mapping[str, jwt.PyJWK]:
    """The signing keys of the JWKS file or URL, by key id (blocking: run it in a thread).
    Keys without an id, or marked for encryption, are left out."""
    if settings.jwks_file is not None:
        key_set = jwt.PyJWKSet.from_json(settings.jwks_file.read_text())
    else:
        client = jwt.PyJWKClient(
            settings.jwks_url,
            cache_jwk_set=False,  # SigningKeys caches, for file and URL alike
            timeout=JWKS_TIMEOUT_SECONDS,
            headers={"User-Agent": "promesa"},
        )
        key_set = client.get_jwk_set()
    return {
        key.key_id: key
        for key in key_set.keys
        if key.key_id
        and key.public_key_use in (None, "sig")
        and key.algorithm_name in ACCEPTED_ALGORITHMS
    }


class SigningKeys:
    """The identity provider's keys, cached for `jwks_cache_seconds`, fetched again early when
    a token names an unknown key (rotation), at most every MIN_REFRESH_SECONDS.

    Fetching runs in a thread, one fetch at a time, so a slow provider blocks neither the
    event loop nor more than one worker thread; the other calls wait on an asyncio lock. When
    a fetch fails the keys already known stay in use.
    """

    def __init__(
        self,
        settings: JwtSettings,
        *,
        fetch: Callable[[], Mapping[str, jwt.PyJWK]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._fetch = fetch or (lambda: read_jwks(settings))
        self._clock = clock
        self._keys: Mapping[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        # A key we lack may be in the fetch under way: wait for it rather than refuse.
        if self._needs_fetch(kid) or (self._lock.locked() and kid not in self._keys):
            async with self._lock:
                if self._needs_fetch(kid):  # not already done by the call we waited for
                    await self._refresh()
        if self._fetched_at is None:
            raise SigningKeysUnavailableError(
                "the identity provider's signing keys are unavailable"
            )
        return self._keys.get(kid)

    def trusted_until(self) -> float | None:
        """When the keys in use must be fetched again (on this object's clock): what a token
        verified with them may be trusted until without asking again. None with no keys."""
        if self._fetched_at is None:
            return None
        return self._fetched_at + self._settings.jwks_cache_seconds

    def now(self) -> float:
        return self._clock()

    @property
    def generation(self) -> object:
        """Changes whenever keys are fetched again: a token verified with the keys before is
        verified again (its key may be gone)."""
        return self._keys

    def _needs_fetch(self, kid: str) -> bool:
        now = self._clock()
        if self._tried_at is not None and now - self._tried_at < MIN_REFRESH_SECONDS:
            return False
        stale = (
            self._fetched_at is None or now - self._fetched_at >= self._settings.jwks_cache_seconds
        )
        return stale or kid not in self._keys

    async def _refresh(self) -> None:
        self._tried_at = self._clock()
        source = self._settings.jwks_url or str(self._settings.jwks_file)
        try:
            keys = await asyncio.to_thread(self._fetch)
        except Exception as exc:
            log.warning("jwks_fetch_failed", source=source, error=repr(exc))
            return
        self._keys, self._fetched_at = keys, self._clock()
        log.info("jwks_fetched", source=source, key_ids=sorted(keys))


class JwtVerifier:
    """Turns a JWT access token into an Identity, or refuses it (UNAUTHENTICATED) saying why:
    signature, algorithm, key id, issuer, audience, expiry, subject, role or team."""

    def __init__(self, settings: JwtSettings, keys: SigningKeys | None = None) -> None:
        self._settings = settings
        self._keys = keys or SigningKeys(settings)
        self._verified: dict[str, _Verified] = {}

    def verified(self, token: str) -> Identity | None:
        """The identity of a token verified before and still trustworthy: not expired (`exp`,
        without the leeway, which a full verification grants again), and its keys neither
        fetched again since nor due to be. None otherwise: then `identify` decides."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        if (
            time.time() < entry.expires_at
            and self._keys.now() < entry.keys_until
            and entry.generation is self._keys.generation
        ):
            return entry.identity
        del self._verified[token]
        return None

    async def identify(self, token: str) -> Identity:
        known = self.verified(token)
        if known is not None:
            return known
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthenticatedError("the bearer token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ACCEPTED_ALGORITHMS:
            raise UnauthenticatedError(f"JWT algorithm {str(algorithm)[:20]!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnauthenticatedError("the JWT names no signing key (kid)")
        key = await self._keys.key(kid)
        if key is None:
            raise UnauthenticatedError("the JWT's signing key (kid) is not the identity provider's")
        s = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("the access token has expired") from None
        except jwt.InvalidIssuerError:
            raise UnauthenticatedError("the access token is from another issuer") from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError("the access token is for another audience") from None
        except jwt.InvalidSignatureError:
            raise UnauthenticatedError("the access token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise UnauthenticatedError(f"the access token is not valid: {exc}") from None
        identity = self._identity(claims)
        self._remember(token, identity, claims)
        return identity

    def _remember(self, token: str, identity: Identity, claims: Mapping[str, Any]) -> None:
        keys_until = self._keys.trusted_until()
        expires_at = claims.get("exp")
        if (
            keys_until is None
            or isinstance(expires_at, bool)
            or not isinstance(expires_at, int | float)
        ):
            return
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = _Verified(
            identity, float(expires_at), keys_until, self._keys.generation
        )

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        s = self._settings
        subject = _claim(claims, s.subject_claim)
        if (
            not isinstance(subject, str)
            or not subject.strip()
            or len(subject) > MAX_SUBJECT_LENGTH
            or control_characters(subject)
        ):
            raise UnauthenticatedError(
                f"the access token has no usable subject ({s.subject_claim})"
            )
        role = _role(_claim(claims, s.role_claim), s.role_claim)
        team = _team(_claim(claims, s.team_claim), s.team_claim, role)
        return Identity(subject.strip(), role, team)


@dataclass(frozen=True, slots=True)
class _Verified:
    """A verified token's identity, and until when it may be trusted without a new check."""

    identity: Identity
    expires_at: float  # the token's exp, seconds since the epoch
    keys_until: float  # when its keys are due to be fetched again (SigningKeys' clock)
    generation: object  # the keys it was verified with


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by dotted path into nested objects (`realm_access.roles`) when no
    claim has the whole name (namespaced claims are URLs, full of dots)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _role(value: Any, claim: str) -> Role:
    """Exactly one of the CRM's roles; other values of a list claim (an identity provider's
    own roles) are ignored."""
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    known = {Role(v) for v in values if isinstance(v, str) and v in Role._value2member_map_}
    if len(known) != 1:
        names = ", ".join(r.value for r in Role)
        found = "several" if known else "none"
        raise UnauthenticatedError(
            f"the access token's {claim} claim must hold one of {names} ({found} found)"
        )
    return known.pop()


def _team(value: Any, claim: str, role: Role) -> str:
    """One team. A supervisor's token must name it: `*` for a supervisor of every team, so
    that a missing claim never widens what a supervisor may see."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or value == "":
        if role is Role.SUPERVISOR:
            raise UnauthenticatedError(
                f"a supervisor's access token must name the team in {claim} ('*' for every team)"
            )
        return ""
    if not isinstance(value, str) or len(value) > MAX_SUBJECT_LENGTH or control_characters(value):
        raise UnauthenticatedError(f"the access token's {claim} claim is not one team")
    if value == "*":
        if role is not Role.SUPERVISOR:
            raise UnauthenticatedError(f"only a supervisor's {claim} may be '*'")
        return ""
    return value.strip()


class Authenticator:
    """The interceptor's one question, who is this bearer token: a static token, else a JWT
    when the service trusts an identity provider."""

    def __init__(self, tokens: ApiTokens, *, keys: SigningKeys | None = None) -> None:
        self._static = dict(tokens.static)
        self._jwt = JwtVerifier(tokens.jwt, keys) if tokens.jwt is not None else None

    def known(self, token: str) -> Identity | None:
        """The answer without waiting, when there is one: a static token, or an access token
        verified before and still trustworthy. None: ask `identify`."""
        identity = self._static.get(token)
        if identity is None and self._jwt is not None:
            return self._jwt.verified(token)
        return identity

    async def identify(self, token: str) -> Identity:
        identity = self._static.get(token)
        if identity is not None:
            return identity
        if self._jwt is not None and token.count(".") == 2:
            return await self._jwt.identify(token)
        raise UnauthenticatedError("unknown bearer token")
