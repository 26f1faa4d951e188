"""`make run` as a person runs it: `python -m devtools.run` in an empty data directory, on free
ports. It says "ready" only once every service answers health, listens on loopback only, hands
out tokens with teams and a read-only NATS operator, and stops everything on Ctrl-C.
`CRM_STORE=mongodb make run` runs the same system on a local MongoDB-protocol server
(SecantusDB) that it starts, stops last, and whose data survives a restart."""

from __future__ import annotations

import ipaddress
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nats
import psutil  # type: ignore[import-untyped]
import pymongo
import pytest
from grpc_health.v1 import health_pb2

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from devtools.run import (
    DEV_TOKENS,
    SERVICES,
    banner,
    local_mongodb,
    service_env,
    token_lines,
)
from tests.contacts.test_contacts_api import a_person
from tests.support import bearer, health_status

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 60.0


def loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or 127.x as gRPC's dual-stack sockets show it (::ffff:127.0.0.1)."""
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


@dataclass
class MakeRun:
    proc: subprocess.Popen[str]
    data: Path
    log: Path
    nats_port: int
    grpc_ports: dict[str, int]
    metrics_ports: dict[str, int]
    lines: list[str] = field(default_factory=list)
    ready_at: int = -1  # index of the "ready" line

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.log.read_text()[-4000:]

    def line(self, prefix: str) -> str:
        found = [line for line in self.lines if line.strip().startswith(prefix)]
        assert found, f"no line starting {prefix!r} in:\n{self.output()}"
        return found[0]


def listening(pid: int) -> dict[str, set[tuple[str, int]]]:
    """Every (address, port) the processes started by `pid` listen on, by command."""
    found: dict[str, set[tuple[str, int]]] = {}
    for child in psutil.Process(pid).children(recursive=True):
        command = " ".join(child.cmdline()[1:3]) or child.name()
        sockets = {
            (conn.laddr.ip, conn.laddr.port)
            for conn in child.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        found.setdefault(command, set()).update(sockets)
    return found


def start_make_run(data: Path, **extra: str) -> MakeRun:
    """`python -m devtools.run` with its data in `data`, on free ports; returns once it says
    "ready" (fails the test if it exits or is not ready in time)."""
    grpc_ports = {name: free_port() for name in SERVICES}
    metrics_ports = {name: free_port() for name in SERVICES}
    nats_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CRM_RUN_HOST", "CRM_API_TOKENS", "CRM_TEAM_SUPERVISORS")
        and not key.startswith(("CRM_STORE", "CRM_MONGODB"))
    }
    env.update(
        PYTHONPATH=f"{ROOT / 'services'}:{ROOT / 'gen'}:{ROOT}",
        CRM_DATA_DIR=str(data),
        CRM_NATS_PORT=str(nats_port),
        CRM_RUN_READY_SECONDS=str(READY_WITHIN),
        CRM_LOG_LEVEL="info",
        # The `local` profile make run writes for the promesa CLI goes here, not into ~/.config.
        PROMESA_CONFIG=str(data / "promesa.toml"),
        **extra,
    )
    for name in SERVICES:
        env[f"CRM_{name.upper()}_GRPC_PORT"] = str(grpc_ports[name])
        env[f"CRM_{name.upper()}_METRICS_PORT"] = str(metrics_ports[name])
    data.mkdir(parents=True, exist_ok=True)
    log = data / "make-run.log"
    with log.open("a") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read(stream: object) -> None:
        for line in iter(proc.stdout.readline, ""):  # type: ignore[union-attr]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    run = MakeRun(proc, data, log, nats_port, grpc_ports, metrics_ports)
    deadline = time.monotonic() + READY_WITHIN + 10
    try:
        while run.ready_at < 0:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"make run was not ready in time:\n{run.output()}")
            if line is None:
                pytest.fail(f"make run exited with {proc.wait()}:\n{run.output()}")
            run.lines.append(line)
            if line.startswith("ready"):
                run.ready_at = len(run.lines) - 1
    except BaseException:
        kill_make_run(run)
        raise
    return run


def kill_make_run(run: MakeRun) -> None:
    """After a test that did not stop it: the launcher and everything it started."""
    if run.proc.poll() is None:
        children = psutil.Process(run.proc.pid).children(recursive=True)
        run.proc.kill()
        run.proc.wait()
        for child in children:
            if child.is_running():
                child.kill()


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeRun]:
    run = start_make_run(tmp_path_factory.mktemp("make-run"))
    try:
        yield run
    finally:
        kill_make_run(run)


async def test_make_run_says_ready_once_every_service_answers_health(make_run: MakeRun) -> None:
    # The ready line comes last, after the banner
    assert make_run.ready_at == len(make_run.lines) - 1
    for name in SERVICES:
        assert name in make_run.lines[make_run.ready_at]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{make_run.grpc_ports[name]}") as channel:
            status = await health_status(channel)
        assert status == health_pb2.HealthCheckResponse.SERVING, name


def test_make_run_serves_grpc_and_nats_on_loopback_only(make_run: MakeRun) -> None:
    sockets = listening(make_run.proc.pid)

    for name in SERVICES:
        (service,) = [s for command, s in sockets.items() if command == f"-m {name}"]
        grpc_sockets = [ip for ip, port in service if port == make_run.grpc_ports[name]]
        assert grpc_sockets, sockets
        assert all(loopback(ip) for ip in grpc_sockets), (name, grpc_sockets)
    (nats_sockets,) = [s for command, s in sockets.items() if "nats.conf" in command]
    assert all(loopback(ip) for ip, _ in nats_sockets), nats_sockets


def test_make_run_serves_metrics_on_loopback_only(make_run: MakeRun) -> None:
    sockets = listening(make_run.proc.pid)

    for name in SERVICES:
        (service,) = [s for command, s in sockets.items() if command == f"-m {name}"]
        assert all(loopback(ip) for ip, _ in service), (name, service)


def test_no_service_writes_a_nats_password_to_its_log(make_run: MakeRun) -> None:
    config = (make_run.data / "nats" / "nats.conf").read_text()
    passwords = re.findall(r'password: "([^"]+)"', config)
    assert len(passwords) == 5  # three services, the operator, the admin

    logged = make_run.log.read_text()
    assert "service_started" in logged
    assert not [p for p in passwords if p in logged]


def test_the_banner_lists_tokens_with_roles_and_teams(make_run: MakeRun) -> None:
    text = "\n".join(make_run.lines[: make_run.ready_at])

    assert make_run.line("dev-agent-token").split() == [
        "dev-agent-token",
        "agent-1",
        "agent",
        "team-a",
    ]
    assert make_run.line("dev-supervisor-token").split()[1:] == [
        "supervisor-1",
        "supervisor",
        "team-a",
    ]
    assert make_run.line("dev-lead-token").split()[1:] == ["lead-1", "supervisor", "every", "team"]
    assert "CRM_TEAM_SUPERVISORS=team-a=supervisor-1,*=lead-1" in text
    for name in SERVICES:
        assert f"grpc 127.0.0.1:{make_run.grpc_ports[name]}" in make_run.line(name)


async def test_the_banners_operator_url_reads_the_streams_but_cannot_publish(
    make_run: MakeRun,
) -> None:
    url = make_run.line("nats://operator:").strip()
    assert url.endswith(f"@127.0.0.1:{make_run.nats_port}")
    refusals: list[str] = []

    async def on_error(exc: Exception) -> None:
        refusals.append(str(exc).lower())

    nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info("CRM_CONTACTS")  # declared by contacts
        assert info.config.name == "CRM_CONTACTS"
        await nc.publish("crm.contacts.created.c1", b"forged")
        await nc.flush()
        deadline = time.monotonic() + 5
        while not refusals and time.monotonic() < deadline:
            await nc.flush()
        assert any("permissions violation for publish" in r for r in refusals), refusals
    finally:
        await nc.close()


def test_ctrl_c_stops_every_process(make_run: MakeRun) -> None:
    started = psutil.Process(make_run.proc.pid).children(recursive=True)
    assert len(started) == len(SERVICES) + 1  # and nats-server

    make_run.proc.send_signal(signal.SIGINT)

    assert make_run.proc.wait(60) == 0, make_run.output()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, alive


# ---------------------------------------------------------------------------------------------
# Without starting anything


def test_tokens_other_than_the_development_ones_are_never_printed_whole() -> None:
    lines = token_lines("s3cret-token-value=ana:agent:madrid,other-secret=sam:supervisor")

    assert [line.split() for line in lines] == [
        ["s3c…", "ana", "agent", "madrid"],
        ["oth…", "sam", "supervisor", "every", "team"],
    ]
    assert "s3cret-token-value" not in "\n".join(lines)


def test_each_service_gets_its_own_nats_user_loopback_and_a_dev_supervisor(tmp_path: Path) -> None:
    nats_server = NatsServer(tmp_path / "nats")  # not started: only its URLs are read
    environ = {"CRM_CONTACTS_GRPC_PORT": "6001"}

    envs = {
        name: service_env(name, environ, nats_server, tmp_path, "127.0.0.1", DEV_TOKENS)
        for name in SERVICES
    }

    for name, env in envs.items():
        assert env["CRM_NATS_URL"] == nats_server.url_for(name)
        assert env["CRM_GRPC_HOST"] == env["CRM_METRICS_HOST"] == "127.0.0.1"
        assert env["CRM_TEAM_SUPERVISORS"] == "team-a=supervisor-1,*=lead-1"
    assert envs["followup"]["CRM_CONTACTS_ADDRESS"] == "127.0.0.1:6001"
    assert envs["followup"]["CRM_SERVICE_TOKEN"] == "dev-service-token"
    assert "admin" not in "\n".join(banner(nats_server, tmp_path, "127.0.0.1", environ, DEV_TOKENS))


def test_a_local_mongodb_is_started_only_for_the_mongodb_store_without_a_uri(
    tmp_path: Path,
) -> None:
    assert local_mongodb({}, tmp_path) is None
    assert local_mongodb({"CRM_STORE": "sqlite"}, tmp_path) is None
    named = {"CRM_STORE": "mongodb", "CRM_MONGODB_URI": "mongodb://db.example:27017/"}
    assert local_mongodb(named, tmp_path) is None

    default = local_mongodb({"CRM_STORE": "mongodb"}, tmp_path)
    chosen = local_mongodb({"CRM_STORE": "mongodb", "CRM_MONGODB_PORT": "27999"}, tmp_path)

    assert default is not None and chosen is not None
    assert (default.host, default.port) == ("127.0.0.1", 27017)  # loopback: it has no users
    assert default.data_dir is not None and default.data_dir.is_relative_to(tmp_path / "mongodb")
    assert chosen.uri.startswith("mongodb://127.0.0.1:27999/")


def test_on_mongodb_each_service_gets_a_database_of_its_own(tmp_path: Path) -> None:
    nats_server = NatsServer(tmp_path / "nats")  # not started: only its URLs are read
    # A CRM_MONGODB_DATABASE meant for one service must not put all three in one database.
    environ = {
        "CRM_STORE": "mongodb",
        "CRM_MONGODB_DATABASE": "shared",
        "CRM_FOLLOWUP_MONGODB_DATABASE": "promises",
    }
    uri = "mongodb://127.0.0.1:27999/?directConnection=true"

    envs = {
        name: service_env(name, environ, nats_server, tmp_path, "127.0.0.1", DEV_TOKENS, uri)
        for name in SERVICES
    }

    assert {name: env["CRM_MONGODB_DATABASE"] for name, env in envs.items()} == {
        "contacts": "promesa_contacts",
        "interactions": "promesa_interactions",
        "followup": "promises",
    }
    assert all(env["CRM_MONGODB_URI"] == uri for env in envs.values())
    assert all(env["CRM_STORE"] == "mongodb" for env in envs.values())


def test_the_banner_names_the_store_and_never_a_mongodb_password(tmp_path: Path) -> None:
    nats_server = NatsServer(tmp_path / "nats")
    given = {"CRM_STORE": "mongodb", "CRM_MONGODB_URI": "mongodb://crm:s3cret@db.example:27017/"}

    on_sqlite = banner(nats_server, tmp_path, "127.0.0.1", {}, DEV_TOKENS)
    on_theirs = "\n".join(banner(nats_server, tmp_path, "127.0.0.1", given, DEV_TOKENS))

    assert [line for line in on_sqlite if line.startswith("store")] == [
        f"store        sqlite, a file per service in {tmp_path}"
    ]
    assert "mongodb://db.example:27017/  (CRM_MONGODB_URI)" in on_theirs
    assert "s3cret" not in on_theirs
    assert "promesa_contacts, promesa_interactions, promesa_followup" in on_theirs


def test_make_run_refuses_a_mongodb_port_that_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a mongod already on the port, say
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CRM_")},
            "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'gen'}:{ROOT}",
            "CRM_DATA_DIR": str(tmp_path),
            "CRM_STORE": "mongodb",
            "CRM_MONGODB_PORT": str(port),
        }

        done = subprocess.run(
            [sys.executable, "-m", "devtools.run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr
    assert "CRM_MONGODB_URI" in done.stderr
    assert not (tmp_path / "nats").exists()  # nothing was started


# ---------------------------------------------------------------------------------------------
# On MongoDB: the whole system, stopped and started again


async def create_contact(run: MakeRun, email: str) -> str:
    address = f"127.0.0.1:{run.grpc_ports['contacts']}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = contacts_grpc.ContactsServiceStub(channel)
        contact = a_person(owner_id="agent-1", team="team-a", emails=[email])
        reply = await stub.CreateContact(
            contacts_pb.CreateContactRequest(contact=contact), metadata=bearer("dev-agent-token")
        )
    return reply.contact.id


async def get_contact(run: MakeRun, contact_id: str) -> contacts_pb.GetContactResponse:
    address = f"127.0.0.1:{run.grpc_ports['contacts']}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub = contacts_grpc.ContactsServiceStub(channel)
        reply: contacts_pb.GetContactResponse = await stub.GetContact(
            contacts_pb.GetContactRequest(id=contact_id), metadata=bearer("dev-agent-token")
        )
    return reply


async def database_names(uri: str) -> set[str]:
    client: pymongo.AsyncMongoClient[dict[str, object]] = pymongo.AsyncMongoClient(
        uri, timeoutMS=10_000
    )
    try:
        return set(await client.list_database_names())
    finally:
        await client.close()


def ctrl_c(run: MakeRun) -> None:
    """Ctrl-C, as a person stops it: everything it started is gone when it returns."""
    started = psutil.Process(run.proc.pid).children(recursive=True)
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(60) == 0, run.output()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, alive


async def test_make_run_on_mongodb_keeps_a_contact_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    mongodb_port = free_port()
    # Given `CRM_STORE=mongodb make run`, with no CRM_MONGODB_URI,
    first = start_make_run(data, CRM_STORE="mongodb", CRM_MONGODB_PORT=str(mongodb_port))
    try:
        # it starts a server of its own on loopback, says where, and puts each service on it,
        uri = first.line("store").split()[2]
        assert uri.startswith(f"mongodb://127.0.0.1:{mongodb_port}/")
        started = psutil.Process(first.proc.pid).children(recursive=True)
        assert len(started) == len(SERVICES) + 2  # and nats-server, and secantusd-py
        databases = await database_names(uri)
        assert {f"promesa_{name}" for name in SERVICES} <= databases
        # when a contact is created and everything is stopped,
        contact_id = await create_contact(first, "kept.across.restarts@example.com")
        ctrl_c(first)
    finally:
        kill_make_run(first)
    assert not list(data.glob("*.db")), "no service used SQLite"

    # then, started again on the same data, the contact is there.
    again = start_make_run(data, CRM_STORE="mongodb", CRM_MONGODB_PORT=str(mongodb_port))
    try:
        found = await get_contact(again, contact_id)
        assert list(found.contact.emails) == ["kept.across.restarts@example.com"]
        ctrl_c(again)
    finally:
        kill_make_run(again)
