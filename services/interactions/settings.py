"""Settings of the interactions service: the shared ones, with its own ports."""

from __future__ import annotations

from dataclasses import dataclass

from promesa.settings import CommonSettings, Env

GRPC_PORT = 50052
METRICS_PORT = 9102


@dataclass(frozen=True)
class InteractionsSettings:
    common: CommonSettings

    @classmethod
    def from_env(cls, env: Env | None = None) -> InteractionsSettings:
        common = CommonSettings.from_env(
            "interactions", grpc_port=GRPC_PORT, metrics_port=METRICS_PORT, env=env
        )
        return cls(common=common)
