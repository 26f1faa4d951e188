"""Settings of the interactions service: the shared ones, with its own ports."""

from __future__ import annotations

from dataclasses import dataclass

from promesa.settings import CommonSettings, ConfigError, Env

GRPC_PORT = 50052
METRICS_PORT = 9102
MONGODB_NOT_BUILT = (
    "CRM_STORE=mongodb: the MongoDB adapter for interactions is not built yet; use CRM_STORE=sqlite"
)


@dataclass(frozen=True)
class InteractionsSettings:
    common: CommonSettings

    @classmethod
    def from_env(cls, env: Env | None = None) -> InteractionsSettings:
        common = CommonSettings.from_env(
            "interactions", grpc_port=GRPC_PORT, metrics_port=METRICS_PORT, env=env
        )
        if common.store == "mongodb":
            raise ConfigError(MONGODB_NOT_BUILT)  # at boot, not at the first request
        return cls(common=common)
