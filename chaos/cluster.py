"""The system under fault: nats-server, MongoDB (SecantusDB) when asked, and the three services
as real processes on loopback, each of which a scenario may kill, stop, continue or restart.

Every child is registered the moment it starts and killed when the run ends by any route (its
end, an exception, Ctrl-C, SIGTERM): `Cluster.close()` in a `finally`, and `kill_strays()` at
interpreter exit for anything a crash left behind. Stopped processes are continued first, so
a SIGTERM or SIGKILL reaches them.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.listening import free_port
from devtools.mongoserver import MongoServer
from devtools.natsserver import NatsServer

REPO = Path(__file__).resolve().parent.parent

AGENT_TOKEN = "chaos-agent-token"
SUPERVISOR_TOKEN = "chaos-supervisor-token"
SERVICE_TOKEN = "chaos-service-token"
AGENT = "agent-ana"
TEAM = "madrid"
SUPERVISOR = "sup-sam"
TOKENS = (
    f"{AGENT_TOKEN}={AGENT}:agent:{TEAM},"
    f"{SUPERVISOR_TOKEN}={SUPERVISOR}:supervisor,"
    f"{SERVICE_TOKEN}=svc-followup:service"
)
# Short enough that a run of several faults fits in minutes, long enough that handling one
# batch never outlives it: the finding 5 is measured at this setting, not the default.
ACK_WAIT_SECONDS = 10.0
# A killed replica's claimed reminders fall due again after this; the issue measured with 10 s.
REMINDER_LEASE_SECONDS = 10.0
SCHEDULER_INTERVAL_SECONDS = 0.5

_children: list[subprocess.Popen[bytes]] = []


def _register(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    _children.append(proc)
    return proc


def kill_strays() -> None:
    """Every child still running gets SIGCONT then SIGKILL: the last line of defence."""
    for proc in _children:
        if proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    break
            proc.wait()
    _children.clear()


atexit.register(kill_strays)


def _healthy(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its type stub declares no methods
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ServiceProcess:
    """One replica of a service: `python -m <service>` with its own ports, restarted with the
    same environment (so on the same ports and the same store) after a kill."""

    service: str
    replica: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    root: Path = REPO  # the checkout whose services/ and gen/ run
    incarnations: int = 0
    stopped: bool = False  # SIGSTOPped and not continued yet

    @property
    def name(self) -> str:
        return f"{self.service}-{self.replica}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.env['CRM_GRPC_PORT']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['CRM_METRICS_PORT']}/metrics"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        pythonpath = os.pathsep.join(str(self.root / d) for d in ("services", "gen", "."))
        env = {**os.environ, **self.env, "PYTHONPATH": pythonpath}
        with self.log_path.open("ab") as log:
            log.write(f"--- chaos: start #{self.incarnations + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = _register(
                subprocess.Popen(
                    [sys.executable, "-m", self.service],
                    env=env,
                    cwd=self.root,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the harness only; it stops them
                )
            )
        self.incarnations += 1
        self.stopped = False

    def wait_serving(self, timeout: float = 60.0) -> float:
        """Blocks until grpc.health.v1 says SERVING; returns how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{_log_tail(self.log_path)}")
            if _healthy(self.address):
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not serving in {timeout}s:\n{_log_tail(self.log_path)}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def kill(self) -> None:
        """SIGKILL, reaped at once: nothing of it runs after this returns."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = False

    def terminate(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.stopped:
            self.signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Cluster:
    """nats-server (`sync_interval: always`), the store server for MongoDB runs, contacts and
    interactions once each, follow-up twice on one store."""

    store: str
    workdir: Path
    followup_replicas: int = 2
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    root: Path = REPO  # another checkout (e.g. `git worktree`) to measure its services
    nats: NatsServer | None = None
    mongo: MongoServer | None = None
    services: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    nats_restarts: int = 0

    def start(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.store == "mongodb":
            # In memory: the store server is never the process under fault here. A transaction
            # left open by a SIGKILLed service blocks the writes it conflicts with until the
            # server drops it: 5 s, shorter than the reminder lease (60 s by default, which
            # let R10's reminders wait minutes behind one); mongod's setting is
            # transactionLifetimeLimitSeconds.
            self.mongo = MongoServer(self.workdir / "mongodb", transaction_lifetime=5.0).start()
            _register_server(self.mongo)
        self.nats = NatsServer(self.workdir / "nats").start()
        _register_server(self.nats)
        contacts_port = free_port()
        for service, replicas in (
            ("contacts", 1),
            ("interactions", 1),
            ("followup", self.followup_replicas),
        ):
            grpc_ports = [contacts_port if service == "contacts" else free_port()]
            grpc_ports += [free_port() for _ in range(replicas - 1)]
            self.services[service] = [
                ServiceProcess(
                    service,
                    i,
                    self._env(service, grpc_ports[i], contacts_port),
                    self.workdir / f"{service}-{i}.log",
                    root=self.root,
                )
                for i in range(replicas)
            ]
        for proc in self.all():
            proc.start()
        for proc in self.all():
            proc.wait_serving()
        return self

    def _env(self, service: str, grpc_port: int, contacts_port: int) -> dict[str, str]:
        assert self.nats is not None
        env = {
            "CRM_NATS_URL": self.nats.url_for(service),  # as its own NATS user
            "CRM_API_TOKENS": TOKENS,
            "CRM_GRPC_HOST": "127.0.0.1",
            "CRM_GRPC_PORT": str(grpc_port),
            "CRM_METRICS_HOST": "127.0.0.1",
            "CRM_METRICS_PORT": str(free_port()),
            "CRM_SQLITE_PATH": str(self.workdir / f"{service}.db"),  # replicas share it
            "CRM_LOG_LEVEL": "info",
            "CRM_SHUTDOWN_GRACE_SECONDS": "2",
            "CRM_CONSUMER_ACK_WAIT_SECONDS": str(ACK_WAIT_SECONDS),
        }
        if self.mongo is not None:
            env |= {
                "CRM_STORE": "mongodb",
                "CRM_MONGODB_URI": self.mongo.uri,
                "CRM_MONGODB_DATABASE": f"chaos_{service}",
            }
        if service == "followup":
            env |= {
                "CRM_TEAM_SUPERVISORS": f"*={SUPERVISOR}",
                "CRM_SCHEDULER_INTERVAL_SECONDS": str(SCHEDULER_INTERVAL_SECONDS),
                "CRM_REMINDER_LEASE_SECONDS": str(REMINDER_LEASE_SECONDS),
                "CRM_CONTACTS_ADDRESS": f"127.0.0.1:{contacts_port}",
                "CRM_SERVICE_TOKEN": SERVICE_TOKEN,
            }
        return env | dict(self.extra_env.get(service, {}))

    def all(self) -> list[ServiceProcess]:
        return [proc for procs in self.services.values() for proc in procs]

    def one(self, service: str, replica: int = 0) -> ServiceProcess:
        return self.services[service][replica]

    @property
    def nats_server(self) -> NatsServer:
        assert self.nats is not None
        return self.nats

    def kill_nats(self) -> None:
        nats = self.nats_server
        os.kill(nats.pid, signal.SIGKILL)
        nats.stop()  # reaps it

    def restart_nats(self) -> float:
        """A new nats-server on the same port, store directory and passwords; returns how long
        it took to listen."""
        old = self.nats_server
        started = time.monotonic()
        passwords = {user: old.password(user) for user in old.users}
        self.nats = NatsServer(old.store_dir, port=old.port, passwords=passwords).start()
        _register_server(self.nats)
        self.nats_restarts += 1
        return time.monotonic() - started

    def heal(self) -> list[str]:
        """Between scenarios: anything stopped is continued, anything dead restarted."""
        healed = []
        for proc in self.all():
            if proc.stopped:
                proc.signal(signal.SIGCONT)
                healed.append(f"continued {proc.name}")
            if not proc.running:
                proc.start()
                proc.wait_serving()
                healed.append(f"restarted {proc.name}")
        return healed

    def close(self) -> None:
        """Services first (SIGTERM, so each flushes its outbox), then NATS, then MongoDB."""
        for proc in self.all():
            if proc.stopped and proc.running:
                proc.signal(signal.SIGCONT)
        for proc in self.all():
            if proc.running:
                assert proc.proc is not None
                proc.proc.terminate()
        for proc in self.all():
            proc.terminate(grace=10.0)
        if self.nats is not None:
            self.nats.stop()
        if self.mongo is not None:
            self.mongo.stop()
        kill_strays()


def _register_server(server: NatsServer | MongoServer) -> None:
    """The devtools servers keep their process to themselves; the run still must kill it."""
    proc = getattr(server, "_proc", None)
    if isinstance(proc, subprocess.Popen):
        _register(proc)
