"""Settings of the interactions service: the shared ones, with its own ports."""

from __future__ import annotations

from dataclasses import dataclass

from promesa.settings import CommonSettings, Env

GRPC_PORT = 50052
# Events carry promise texts: kept as long as a consumer may need to catch up, no longer.
STREAM_MAX_AGE_DAYS = 90
METRICS_PORT = 9102


@dataclass(frozen=True)
class InteractionsSettings:
    common: CommonSettings

    @classmethod
    def from_env(cls, env: Env | None = None) -> InteractionsSettings:
        common = CommonSettings.from_env(
            "interactions",
            grpc_port=GRPC_PORT,
            metrics_port=METRICS_PORT,
            stream_max_age_days=STREAM_MAX_AGE_DAYS,
            env=env,
        )
        return cls(common=common)
