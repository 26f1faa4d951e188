"""The servers a bench talks to, as subprocesses that are always stopped; their CPU and memory.

Each server is an async context manager, so leaving the block by any route (an error, Ctrl-C,
SIGTERM, which cancels the run) stops it: a service gets SIGTERM (SIGKILL if it lingers) before
its NATS server stops, and the caller's temporary directory is removed after both.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.listening import free_port
from devtools.natsserver import NatsServer

REPO = Path(__file__).resolve().parent.parent
BENCH_TOKEN = "bench-token"
BENCH_SUBJECT = "bench"  # an agent of no team: what the bench makes is its own, unassigned
METADATA = (("authorization", f"Bearer {BENCH_TOKEN}"),)
# A service identity, for what agents may not do (erasing a contact).
SERVICE_TOKEN = "bench-service-token"
SERVICE_METADATA = (("authorization", f"Bearer {SERVICE_TOKEN}"),)
API_TOKENS = f"{BENCH_TOKEN}={BENCH_SUBJECT}:agent,{SERVICE_TOKEN}=bench-service:service"

Probe = Callable[[grpc.aio.Channel], Awaitable[bool]]  # True once the server answers


class ServerExitedError(RuntimeError):
    """A server process died; the message carries the end of its log."""


@dataclass(frozen=True)
class Server:
    """A gRPC server the bench can call, and the processes whose CPU it costs."""

    name: str
    address: str
    pid: int
    helpers: Mapping[str, int]  # e.g. its nats-server

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def watched(self) -> dict[str, int]:
        return {self.name: self.pid, **self.helpers}


class CpuMeter:
    """CPU used between `start` and `stop`, in % of one core: by each watched process, and by
    everything else on the machine ("others"), which tells whether a figure was disturbed."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._start: dict[str, float] = {}
        self._busy = 0.0
        self._t0 = 0.0

    @staticmethod
    def _used(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    @staticmethod
    def _machine_busy() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._busy = self._machine_busy()
        self._start = {name: self._used(p) for name, p in self._procs.items()}

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        used = {name: self._used(p) - self._start[name] for name, p in self._procs.items()}
        others = self._machine_busy() - self._busy - sum(used.values())
        used["others"] = max(0.0, others)
        return {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    pythonpath = os.pathsep.join(str(REPO / d) for d in ("services", "gen", "."))
    return {**os.environ, "PYTHONPATH": pythonpath, **extra}


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(
    module_args: list[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *module_args],
            env=_child_env(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            # Out of the terminal's process group: Ctrl-C reaches only the bench, which then
            # stops each server in order (a service before the NATS server it flushes into).
            start_new_session=True,
        )


@asynccontextmanager
async def _python_server(
    name: str,
    module_args: list[str],
    env: Mapping[str, str],
    log_path: Path,
    ready: Probe,
    address: str,
    timeout: float = 30.0,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Runs `python -m <module_args>` until the block exits; yields once `ready` says so."""
    proc = _spawn(module_args, env, log_path)
    try:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(address) as channel:
            while not await _probe(ready, channel):
                if proc.poll() is not None:
                    raise ServerExitedError(f"{name} exited:\n{_log_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{name} not ready within {timeout}s:\n{_log_tail(log_path)}"
                    )
                await asyncio.sleep(0.05)
        yield proc
    finally:
        _stop(proc)


async def _probe(ready: Probe, ch: grpc.aio.Channel) -> bool:
    try:
        return await asyncio.wait_for(ready(ch), 1.0)
    except (grpc.aio.AioRpcError, TimeoutError):
        return False


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Blocking on purpose: it must finish even while the event loop is being torn down."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _connects(channel: grpc.aio.Channel) -> bool:
    await channel.channel_ready()
    return True


async def _serving(channel: grpc.aio.Channel) -> bool:
    stub: Any = health_pb2_grpc.HealthStub(channel)  # its type stub declares no methods
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@asynccontextmanager
async def null_server(workdir: Path) -> AsyncIterator[Server]:
    """The null Contacts and Interactions services (bench.null_server) in their own process."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    async with _python_server(
        "null servicer",
        ["bench.null_server", str(port)],
        {},
        workdir / "null_server.log",
        _connects,
        address,
    ) as proc:
        yield Server("null servicer", address, proc.pid, {})


@asynccontextmanager
async def nats_server(workdir: Path) -> AsyncIterator[NatsServer]:
    """A nats-server with JetStream whose store lives under `workdir`, stopped on exit."""
    nats = NatsServer(workdir / "nats").start()
    try:
        yield nats
    finally:
        nats.stop()


@asynccontextmanager
async def service(
    name: str, workdir: Path, sqlite_path: Path, nats: NatsServer
) -> AsyncIterator[Server]:
    """`python -m <name>` (contacts, interactions or followup) on `sqlite_path`, connected to
    `nats`, with every other setting at its default (e.g. the follow-up scheduler's interval)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        "CRM_GRPC_HOST": "127.0.0.1",
        "CRM_GRPC_PORT": str(port),
        "CRM_METRICS_PORT": "0",
        "CRM_SQLITE_PATH": str(sqlite_path),
        "CRM_NATS_URL": nats.url,
        "CRM_API_TOKENS": API_TOKENS,
        "CRM_LOG_LEVEL": "warning",
        "CRM_SHUTDOWN_GRACE_SECONDS": "2",
    }
    async with _python_server(
        name, [name], env, workdir / f"{name}.log", _serving, address
    ) as proc:
        yield Server(name, address, proc.pid, {"nats-server": nats.pid})


@asynccontextmanager
async def standalone_service(name: str, workdir: Path, sqlite_path: Path) -> AsyncIterator[Server]:
    """One service with a nats-server of its own, both under `workdir`; the service is stopped
    before the NATS server it flushes its outbox into."""
    async with nats_server(workdir) as nats, service(name, workdir, sqlite_path, nats) as server:
        yield server
