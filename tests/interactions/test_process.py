"""`python -m interactions` as a real process: nothing committed is lost to a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import grpc
from nats.aio.msg import Msg

from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from promesa.bus import INTERACTIONS_STREAM, EventBus
from promesa.ids import new_id
from tests.interactions.conftest import an_interaction, announce_contact, interactions_env
from tests.processes import ROOT, ServiceProcess
from tests.support import bearer, events_about, eventually


async def first_touch(
    stub: interactions_grpc.InteractionsServiceAsyncStub, contact_id: str
) -> str | None:
    """Records a touch once the process has the contact in its read model."""
    try:
        reply = await stub.RecordInteraction(
            interactions_pb.RecordInteractionRequest(interaction=an_interaction(contact_id)),
            metadata=bearer(),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return None
        raise
    return reply.interaction.id


async def test_a_touch_committed_before_a_crash_is_announced_once_after_restart(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    service = ServiceProcess(
        "interactions", interactions_env(own_nats, tmp_path, CRM_GRPC_PORT=str(free_port()))
    )
    service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    bus = EventBus(own_nats.url, name="test")
    await bus.connect()
    try:
        await service.wait_serving(channel)
        stub = interactions_grpc.InteractionsServiceStub(channel)
        contact_id = new_id()
        await announce_contact(bus, contact_id, datetime.now(UTC))
        await eventually(lambda: first_touch(stub, contact_id))
        # Given JetStream cannot answer, so the relay cannot publish what the RPC commits,
        os.kill(own_nats.pid, signal.SIGSTOP)
        reply = await stub.RecordInteraction(
            interactions_pb.RecordInteractionRequest(interaction=an_interaction(contact_id)),
            metadata=bearer(),
            timeout=5,
        )
        # when the service dies between the commit and the publish,
        service.signal(signal.SIGKILL)
        os.kill(own_nats.pid, signal.SIGCONT)
        # then after a restart the event is published, exactly once.
        service.start()
        await service.wait_serving(channel)

        async def published() -> list[Msg]:
            return await events_about(bus.js, INTERACTIONS_STREAM.name, reply.interaction.id)

        await eventually(published, timeout=20)
        assert service.signal(signal.SIGTERM) == 0  # a clean stop flushes the outbox too
        assert len(await published()) == 1
    finally:
        service.kill_if_running()
        await bus.close()
        await channel.close(None)


def test_a_missing_setting_stops_the_service_at_boot_naming_the_variable(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'gen'}",
        "CRM_API_TOKENS": "t=agent-ana:agent",
        "CRM_STORE": "mongodb",
        "CRM_MONGODB_URI": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "interactions"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert b"CRM_MONGODB_URI" in done.stderr
