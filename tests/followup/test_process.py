"""`python -m followup` as a real process: it serves health, stops cleanly on SIGTERM, and
refuses a bad configuration with a message naming the variable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from crm.followup.v1 import followup_service_pb2 as followup_pb
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from followup.entrypoints.grpc_api import SERVICE_NAME
from tests.followup.conftest import followup_env
from tests.support import eventually, health_status

ROOT = Path(__file__).resolve().parents[2]


def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'gen'}"}
    return subprocess.Popen(
        [sys.executable, "-m", "followup"],
        env=full,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_the_service_serves_health_and_stops_cleanly_on_sigterm(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    proc = spawn(followup_env(nats_server, tmp_path, CRM_GRPC_PORT=str(port)))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:

        async def serving() -> bool:
            try:
                status = await health_status(channel, SERVICE_NAME, timeout=0.5)
            except grpc.aio.AioRpcError:
                return False
            return status == health_pb2.HealthCheckResponse.SERVING

        await eventually(serving, timeout=20)
        assert followup_pb.DESCRIPTOR.services_by_name["FollowupService"].full_name == SERVICE_NAME
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await channel.close(None)


def test_a_bad_setting_stops_the_service_with_the_variables_name(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    proc = spawn(followup_env(nats_server, tmp_path, CRM_TEAM_SUPERVISORS="madrid"))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"CRM_TEAM_SUPERVISORS" in err
