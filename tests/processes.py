"""Running a service as a real process for tests: start, wait for health, signal, kill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from tests.support import eventually, health_status

ROOT = Path(__file__).resolve().parents[1]


class ServiceProcess:
    """`python -m <module>` with the given environment; its output goes to a log file beside
    its SQLite file, which a failing test can point at."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.env = env
        self.port = int(env["CRM_GRPC_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.env["CRM_SQLITE_PATH"]).with_suffix(".log")

    def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'gen'}"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module], env=env, cwd=ROOT, stdout=log, stderr=log
            )

    async def wait_serving(self, channel: grpc.aio.Channel) -> None:
        async def serving() -> bool:
            try:
                status = await health_status(channel, timeout=0.5)
            except grpc.aio.AioRpcError:
                return False
            return status == health_pb2.HealthCheckResponse.SERVING

        await eventually(serving, timeout=20)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
