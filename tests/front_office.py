"""The three services running as `make run` runs them, for the front-office tests (SDK, CLI,
desk): real subprocesses on free loopback ports, a real nats-server, SQLite files in a temporary
directory, the development tokens (devtools.run.DEV_IDENTITIES), the real clock and the reminder
scheduler on, so that a promise due a few seconds ahead really gets its AT_DUE reminder.

Subprocesses, not in-process services: pytest runs every test on one event loop, and a CLI
command (or a SyncClient call) that blocks that loop would starve an in-process server.

A test module takes the shared system with `front_office` (one per module: starting it costs
about two seconds; tests keep to their own contacts, e.g. by a unique name) or starts its own
with `running_front_office(tmp_path)` when it stops or restarts a service.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from devtools.listening import free_port
from devtools.natsserver import NatsServer
from devtools.run import DEV_TOKENS, service_env
from promesa_client import Client, SyncClient, TokenSource
from tests.processes import ServiceProcess

SERVICES = ("contacts", "interactions", "followup")
AGENT_TOKEN = "dev-agent-token"  # agent-1, agent, team-a
AGENT_B_TOKEN = "dev-agent-b-token"  # agent-2, agent, team-b
SUPERVISOR_TOKEN = "dev-supervisor-token"  # supervisor-1, supervisor, team-a
LEAD_TOKEN = "dev-lead-token"  # lead-1, supervisor of every team
AGENT = "agent-1"
AGENT_B = "agent-2"


@dataclass
class FrontOffice:
    """A running system: its addresses, its processes, clients for it."""

    data: Path
    nats: NatsServer
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def targets(self) -> dict[str, str]:
        """Service name → "127.0.0.1:port", the keyword arguments of Client."""
        return {name: f"127.0.0.1:{proc.port}" for name, proc in self.processes.items()}

    def client(self, token: TokenSource = AGENT_TOKEN, **options: object) -> Client:
        """An async client for this system (close it, or use `async with`)."""
        t = self.targets
        return Client(
            contacts=t["contacts"],
            interactions=t["interactions"],
            followup=t["followup"],
            token=token,
            **options,  # type: ignore[arg-type]
        )

    def sync_client(self, token: TokenSource = AGENT_TOKEN, **options: object) -> SyncClient:
        """A blocking client for this system (close it, or use `with`)."""
        t = self.targets
        return SyncClient(
            contacts=t["contacts"],
            interactions=t["interactions"],
            followup=t["followup"],
            token=token,
            **options,  # type: ignore[arg-type]
        )

    def env(self) -> dict[str, str]:
        """PROMESA_* variables pointing the `promesa` CLI at this system (agent-1's token)."""
        t = self.targets
        return {
            "PROMESA_CONTACTS": t["contacts"],
            "PROMESA_INTERACTIONS": t["interactions"],
            "PROMESA_FOLLOWUP": t["followup"],
            "PROMESA_TOKEN": AGENT_TOKEN,
        }

    def start(self, name: str) -> None:
        """Starts (or starts again, on the same port and files) one service."""
        self.processes[name].start()

    async def wait_serving(self, name: str) -> None:
        async with grpc.aio.insecure_channel(self.targets[name]) as channel:
            await self.processes[name].wait_serving(channel)

    def stop(self, name: str) -> None:
        """SIGTERM, as an orchestrator stops a pod; the service flushes its outbox first."""
        self.processes[name].signal(signal.SIGTERM)

    def log(self, name: str) -> str:
        """What a service printed, for a failing test's message."""
        path = self.processes[name].log_path
        return path.read_text() if path.exists() else ""


def _environ(ports: Mapping[str, int], extra: Mapping[str, str]) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    for name, port in ports.items():
        environ[f"CRM_{name.upper()}_GRPC_PORT"] = str(port)
        environ[f"CRM_{name.upper()}_METRICS_PORT"] = "0"  # off: no port to collide on
    environ.update(
        {
            "CRM_SHUTDOWN_GRACE_SECONDS": "1",
            "CRM_LOG_LEVEL": "warning",
            "CRM_CONSUMER_ACK_WAIT_SECONDS": "2",
            **extra,
        }
    )
    return environ


@asynccontextmanager
async def running_front_office(data: Path, **extra: str) -> AsyncIterator[FrontOffice]:
    """Starts NATS and the three services (extra: more CRM_* settings for all of them), waits
    until each answers health, and stops everything on the way out."""
    nats = NatsServer(data / "nats").start()
    system = FrontOffice(data, nats)
    try:
        ports = {name: free_port() for name in SERVICES}
        environ = _environ(ports, extra)
        for name in SERVICES:
            env = service_env(name, environ, nats, data, "127.0.0.1", DEV_TOKENS)
            system.processes[name] = ServiceProcess(name, env)
            system.start(name)
        for name in SERVICES:
            await system.wait_serving(name)
        yield system
    finally:
        for proc in system.processes.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in system.processes.values():
            try:
                if proc.proc is not None:
                    proc.proc.wait(10)
            finally:
                proc.kill_if_running()
        nats.stop()


@pytest.fixture(scope="module")
async def front_office(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FrontOffice]:
    """The shared system of one test module."""
    async with running_front_office(tmp_path_factory.mktemp("front-office")) as system:
        yield system


def unique(name: str) -> str:
    """A name no other test of the shared system uses: `unique("María")` → "María 3f2a9c"."""
    return f"{name} {uuid.uuid4().hex[:6]}"
