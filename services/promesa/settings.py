"""Configuration read once from the environment into frozen settings, validated at boot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from promesa.auth import Identity, parse_tokens


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

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if value < minimum:
            raise ConfigError(f"{name}={value} is below {minimum}")
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
    metrics_port: int
    store: str
    sqlite_path: Path
    sqlite_synchronous: str
    mongodb_uri: str
    mongodb_database: str
    nats_url: str
    stream_replicas: int
    api_tokens: Mapping[str, Identity] = field(repr=False)
    log_level: str
    shutdown_grace_seconds: float
    consumer_ack_wait_seconds: float
    consumer_max_deliver: int
    relay_batch_size: int
    promise_horizon: timedelta  # how far ahead a promise may be due

    @classmethod
    def from_env(
        cls, service: str, *, grpc_port: int, metrics_port: int, env: Env | None = None
    ) -> CommonSettings:
        env = env or Env()
        store = env.choice("CRM_STORE", "sqlite", ("sqlite", "mongodb"))
        mongodb_uri = env.text("CRM_MONGODB_URI", "")
        if store == "mongodb" and not mongodb_uri:
            raise ConfigError("CRM_MONGODB_URI is required when CRM_STORE=mongodb")
        try:
            tokens = parse_tokens(env.text("CRM_API_TOKENS", ""))
        except ValueError as exc:
            raise ConfigError(f"CRM_API_TOKENS: {exc}") from None
        if not tokens:
            raise ConfigError(
                "CRM_API_TOKENS is empty: set at least one token=subject:role "
                "(roles: agent, supervisor, service)"
            )
        return cls(
            service=service,
            grpc_host=env.text("CRM_GRPC_HOST", "0.0.0.0"),
            grpc_port=env.integer("CRM_GRPC_PORT", grpc_port, maximum=65535),
            metrics_port=env.integer("CRM_METRICS_PORT", metrics_port, maximum=65535),
            store=store,
            sqlite_path=Path(env.text("CRM_SQLITE_PATH", f"data/{service}.db")),
            sqlite_synchronous=env.choice(
                "CRM_SQLITE_SYNCHRONOUS", "full", ("full", "normal")
            ).upper(),
            mongodb_uri=mongodb_uri,
            mongodb_database=env.text("CRM_MONGODB_DATABASE", f"promesa_{service}"),
            nats_url=env.text("CRM_NATS_URL", "nats://127.0.0.1:4222"),
            stream_replicas=env.integer("CRM_STREAM_REPLICAS", 1, minimum=1, maximum=5),
            api_tokens=tokens,
            log_level=env.choice("CRM_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            shutdown_grace_seconds=env.number("CRM_SHUTDOWN_GRACE_SECONDS", 10.0),
            consumer_ack_wait_seconds=env.number(
                "CRM_CONSUMER_ACK_WAIT_SECONDS", 30.0, minimum=1.0
            ),
            consumer_max_deliver=env.integer("CRM_CONSUMER_MAX_DELIVER", 5, minimum=1, maximum=100),
            relay_batch_size=env.integer("CRM_RELAY_BATCH_SIZE", 500, minimum=1, maximum=10_000),
            promise_horizon=timedelta(
                days=env.integer("CRM_PROMISE_HORIZON_DAYS", 1826, minimum=1, maximum=36_500)
            ),
        )
