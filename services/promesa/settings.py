"""Configuration read once from the environment into frozen settings, validated at boot."""

from __future__ import annotations

import ipaddress
import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import jwt

from promesa.auth import ApiTokens, JwtSettings, parse_tokens, read_jwks
from promesa.bus import DUPLICATE_WINDOW_SECONDS, longest_redelivery


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Env:
    """Typed reads of environment variables; every failure names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str, default: str) -> str:
        return self._environ.get(name, default).strip() or default

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value} is outside {minimum}..{maximum}")
        return value

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float = math.inf
    ) -> float:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}={raw!r} is not a finite number")
        if value < minimum:
            raise ConfigError(f"{name}={value} is below {minimum}")
        if value > maximum:
            raise ConfigError(f"{name}={value} is above {maximum}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not true or false")


@dataclass(frozen=True)
class CommonSettings:
    """What every service needs: where it listens, where its data and events live, who may call."""

    service: str
    grpc_host: str
    grpc_port: int
    metrics_host: str
    metrics_port: int
    store: str
    sqlite_path: Path
    sqlite_synchronous: str
    mongodb_uri: str
    mongodb_database: str
    nats_url: str = field(repr=False)  # may carry the service's NATS user and password
    stream_replicas: int
    api_tokens: ApiTokens
    log_level: str
    shutdown_grace_seconds: float
    consumer_ack_wait_seconds: float
    consumer_max_deliver: int
    relay_batch_size: int
    promise_horizon: timedelta  # how far ahead a promise may be due
    stream_max_age: timedelta  # how long the service's stream keeps an event; 0 = for ever
    consumer_batch: int = 50  # messages a busy consumer fetches at once
    stream_max_bytes: int = 0  # the size past which the stream drops its oldest events; 0 = none
    inbox_retention: timedelta = timedelta(days=30)  # how long a handled event's inbox row stays
    inbox_prune_interval_seconds: float = 3600.0
    metrics_refresh_seconds: float = 30.0  # how often gauges read from the store and JetStream

    @property
    def nats_address(self) -> str:
        """The NATS URL without its credentials: what may be logged."""
        return without_credentials(self.nats_url)

    @classmethod
    def from_env(
        cls,
        service: str,
        *,
        grpc_port: int,
        metrics_port: int,
        stream_max_age_days: int = 0,
        env: Env | None = None,
    ) -> CommonSettings:
        """`stream_max_age_days` is the service's default retention (CRM_STREAM_MAX_AGE_DAYS):
        0 keeps events for ever, right for contacts' fact-only events; events that carry
        personal data (promise texts) are kept only as long as consumers may need to catch up."""
        env = env or Env()
        store = env.choice("CRM_STORE", "sqlite", ("sqlite", "mongodb"))
        mongodb_uri = env.text("CRM_MONGODB_URI", "")
        if store == "mongodb" and not mongodb_uri:
            raise ConfigError("CRM_MONGODB_URI is required when CRM_STORE=mongodb")
        grpc_host = env.text("CRM_GRPC_HOST", "0.0.0.0")
        stream_max_age = timedelta(
            days=env.integer(
                "CRM_STREAM_MAX_AGE_DAYS", stream_max_age_days, minimum=0, maximum=36_500
            )
        )
        # Measured handling takes milliseconds (README, reliability): 10 s returns a killed
        # consumer's batch soon, and the heartbeat keeps a slower handler's messages alive.
        ack_wait = env.number("CRM_CONSUMER_ACK_WAIT_SECONDS", 10.0, minimum=1.0, maximum=3600.0)
        max_deliver = env.integer("CRM_CONSUMER_MAX_DELIVER", 5, minimum=1, maximum=100)
        return cls(
            service=service,
            grpc_host=grpc_host,
            grpc_port=env.integer("CRM_GRPC_PORT", grpc_port, maximum=65535),
            metrics_host=env.text("CRM_METRICS_HOST", grpc_host),
            metrics_port=env.integer("CRM_METRICS_PORT", metrics_port, maximum=65535),
            store=store,
            sqlite_path=Path(env.text("CRM_SQLITE_PATH", f"data/{service}.db")),
            sqlite_synchronous=env.choice(
                "CRM_SQLITE_SYNCHRONOUS", "full", ("full", "normal")
            ).upper(),
            mongodb_uri=mongodb_uri,
            mongodb_database=env.text("CRM_MONGODB_DATABASE", f"promesa_{service}"),
            nats_url=nats_url(env),
            stream_replicas=env.integer("CRM_STREAM_REPLICAS", 1, minimum=1, maximum=5),
            api_tokens=api_tokens(env),
            log_level=env.choice("CRM_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            shutdown_grace_seconds=env.number("CRM_SHUTDOWN_GRACE_SECONDS", 10.0),
            consumer_ack_wait_seconds=ack_wait,
            consumer_max_deliver=max_deliver,
            relay_batch_size=env.integer("CRM_RELAY_BATCH_SIZE", 500, minimum=1, maximum=10_000),
            stream_max_age=stream_max_age,
            promise_horizon=timedelta(
                days=env.integer("CRM_PROMISE_HORIZON_DAYS", 1826, minimum=1, maximum=36_500)
            ),
            consumer_batch=env.integer("CRM_CONSUMER_BATCH", 50, minimum=1, maximum=1000),
            stream_max_bytes=env.integer("CRM_STREAM_MAX_BYTES", 0, minimum=0, maximum=2**62),
            inbox_retention=inbox_retention(
                env, stream_max_age, ack_wait=ack_wait, max_deliver=max_deliver
            ),
            inbox_prune_interval_seconds=env.number(
                "CRM_INBOX_PRUNE_INTERVAL_SECONDS", 3600.0, minimum=1.0, maximum=7 * 86_400.0
            ),
            metrics_refresh_seconds=env.number(
                "CRM_METRICS_REFRESH_SECONDS", 30.0, minimum=1.0, maximum=3600.0
            ),
        )


DEFAULT_INBOX_RETENTION = timedelta(days=30)


def inbox_retention(
    env: Env, stream_max_age: timedelta, *, ack_wait: float, max_deliver: int
) -> timedelta:
    """CRM_INBOX_RETENTION_DAYS: how long a handled event's inbox row is kept, which is how
    long a second copy of the event is still recognised and changes nothing. A copy can come:
    - from a producer publishing again: within the stream's duplicate window JetStream drops
      it, after it the inbox must (bus.DUPLICATE_WINDOW_SECONDS);
    - from a redelivery: at most bus.longest_redelivery(ack_wait, max_deliver) after the first;
    - from a replay of the stream (a durable consumer reset or created again delivers all the
      stream still holds): up to the stream's max age after the event.
    So the retention must cover the first two, and the stream's max age when it has one (the
    default is the longer of 30 days and that max age). A stream kept for ever (max age 0)
    cannot be covered: replay it from a start time within the retention, never from the
    beginning."""
    default_days = max(DEFAULT_INBOX_RETENTION, stream_max_age).days
    days = env.integer("CRM_INBOX_RETENTION_DAYS", default_days, minimum=1, maximum=36_500)
    retention = timedelta(days=days)
    floor = timedelta(seconds=DUPLICATE_WINDOW_SECONDS + longest_redelivery(ack_wait, max_deliver))
    if retention < floor:
        raise ConfigError(
            f"CRM_INBOX_RETENTION_DAYS={days} is shorter than the duplicate window plus the"
            f" longest redelivery ({floor}, from CRM_CONSUMER_ACK_WAIT_SECONDS and"
            " CRM_CONSUMER_MAX_DELIVER): a redelivered event would be applied twice"
        )
    if stream_max_age and retention < stream_max_age:
        raise ConfigError(
            f"CRM_INBOX_RETENTION_DAYS={days} is shorter than CRM_STREAM_MAX_AGE_DAYS="
            f"{stream_max_age.days}: a replay of the stream would apply old events twice"
        )
    return retention


NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def nats_url(env: Env) -> str:
    """CRM_NATS_URL: `nats://user:password@host:port`; the user is the service's own NATS user
    (its permissions: the README's security section)."""
    url = env.text("CRM_NATS_URL", "nats://127.0.0.1:4222")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"CRM_NATS_URL={without_credentials(url)!r} is not a URL") from None
    if parts.scheme not in NATS_SCHEMES or not parts.hostname:
        raise ConfigError(
            f"CRM_NATS_URL={without_credentials(url)!r} is not a NATS URL"
            f" ({', '.join(s + '://' for s in NATS_SCHEMES)}user:password@host:port)"
        )
    if parts.username and parts.password is None:
        raise ConfigError(f"CRM_NATS_URL names NATS user {parts.username!r} without a password")
    return url


def without_credentials(url: str) -> str:
    """The URL with any user:password@ removed, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.rpartition("@")[2]
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def api_tokens(env: Env) -> ApiTokens:
    """CRM_API_TOKENS and CRM_JWT_*: at least one way to authenticate a caller."""
    try:
        static = parse_tokens(env.text("CRM_API_TOKENS", ""))
    except ValueError as exc:
        raise ConfigError(f"CRM_API_TOKENS: {exc}") from None
    trusted = jwt_settings(env)
    if not static and trusted is None:
        raise ConfigError(
            "CRM_API_TOKENS is empty and CRM_JWT_ISSUER is not set: set at least one "
            "token=subject:role (roles: agent, supervisor, service), or trust an identity "
            "provider with CRM_JWT_ISSUER, CRM_JWT_AUDIENCE and CRM_JWT_JWKS_URL"
        )
    return ApiTokens(static, trusted)


JWT_VARIABLES = (
    "CRM_JWT_AUDIENCE",
    "CRM_JWT_JWKS_URL",
    "CRM_JWT_JWKS_FILE",
    "CRM_JWT_SUBJECT_CLAIM",
    "CRM_JWT_ROLE_CLAIM",
    "CRM_JWT_TEAM_CLAIM",
    "CRM_JWT_LEEWAY_SECONDS",
    "CRM_JWT_JWKS_CACHE_SECONDS",
)


def jwt_settings(env: Env) -> JwtSettings | None:
    """CRM_JWT_*: None unless CRM_JWT_ISSUER is set; then the audience and exactly one key
    source are required, and a key file must hold at least one usable signing key."""
    issuer = env.text("CRM_JWT_ISSUER", "")
    if not issuer:
        stray = [name for name in JWT_VARIABLES if env.text(name, "")]
        if stray:
            raise ConfigError(
                f"{stray[0]} is set but CRM_JWT_ISSUER is not: set the issuer (the 'iss' of "
                "the identity provider's access tokens) to accept JWTs"
            )
        return None
    audience = env.text("CRM_JWT_AUDIENCE", "")
    if not audience:
        raise ConfigError(
            "CRM_JWT_AUDIENCE is required with CRM_JWT_ISSUER: the 'aud' the identity "
            "provider puts in access tokens meant for Promesa"
        )
    url = env.text("CRM_JWT_JWKS_URL", "")
    file = env.text("CRM_JWT_JWKS_FILE", "")
    if bool(url) == bool(file):
        raise ConfigError(
            "set exactly one of CRM_JWT_JWKS_URL (the identity provider's jwks_uri) and "
            "CRM_JWT_JWKS_FILE (a JWKS file) with CRM_JWT_ISSUER"
        )
    if url:
        _check_jwks_url(url)
    claims = {
        name: env.text(name, default)
        for name, default in (
            ("CRM_JWT_SUBJECT_CLAIM", "sub"),
            ("CRM_JWT_ROLE_CLAIM", "role"),
            ("CRM_JWT_TEAM_CLAIM", "team"),
        )
    }
    settings = JwtSettings(
        issuer=issuer,
        audience=audience,
        jwks_url=url,
        jwks_file=Path(file) if file else None,
        subject_claim=claims["CRM_JWT_SUBJECT_CLAIM"],
        role_claim=claims["CRM_JWT_ROLE_CLAIM"],
        team_claim=claims["CRM_JWT_TEAM_CLAIM"],
        leeway_seconds=env.number("CRM_JWT_LEEWAY_SECONDS", 30.0, maximum=300.0),
        jwks_cache_seconds=env.number("CRM_JWT_JWKS_CACHE_SECONDS", 300.0, minimum=1.0),
    )
    if settings.jwks_file is not None:
        _check_jwks_file(settings)
    return settings


def _check_jwks_url(url: str) -> None:
    """https, or http to this machine only (a sidecar, the tests): keys fetched in the clear
    over a network could be swapped on the way."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise ConfigError(f"CRM_JWT_JWKS_URL={url!r} is not a URL") from None
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and _is_loopback(host):
        return
    raise ConfigError(f"CRM_JWT_JWKS_URL={url!r} must be https (http only to localhost)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_jwks_file(settings: JwtSettings) -> None:
    try:
        keys = read_jwks(settings)
    except OSError as exc:
        raise ConfigError(f"CRM_JWT_JWKS_FILE={settings.jwks_file}: {exc.strerror}") from None
    except (ValueError, jwt.PyJWTError) as exc:
        raise ConfigError(f"CRM_JWT_JWKS_FILE={settings.jwks_file}: not a JWKS ({exc})") from None
    if not keys:
        raise ConfigError(
            f"CRM_JWT_JWKS_FILE={settings.jwks_file}: no signing key with a key id (kid) "
            "and an asymmetric algorithm"
        )
