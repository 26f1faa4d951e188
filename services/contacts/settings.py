"""Settings of the contacts service: the shared ones plus its own lifecycle rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from promesa.settings import CommonSettings, ConfigError, Env

GRPC_PORT = 50051
METRICS_PORT = 9101


@dataclass(frozen=True)
class ContactsSettings:
    common: CommonSettings
    active_window: timedelta
    sweep_interval_seconds: float
    default_phone_region: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> ContactsSettings:
        env = env or Env()
        region = env.text("CRM_DEFAULT_PHONE_REGION", "US").upper()
        if len(region) != 2 or not region.isalpha():
            raise ConfigError(f"CRM_DEFAULT_PHONE_REGION={region!r} is not an ISO 3166 code")
        return cls(
            common=CommonSettings.from_env(
                "contacts", grpc_port=GRPC_PORT, metrics_port=METRICS_PORT, env=env
            ),
            active_window=timedelta(days=env.integer("CRM_ACTIVE_WINDOW_DAYS", 90, minimum=1)),
            sweep_interval_seconds=env.number("CRM_SWEEP_INTERVAL_SECONDS", 60.0, minimum=0.05),
            default_phone_region=region,
        )
