"""`make run`: NATS with JetStream and every service that exists, on the embedded SQLite default,
or on MongoDB with `CRM_STORE=mongodb make run`.

Safe by default: everything listens on 127.0.0.1 only (gRPC, metrics, NATS) unless
CRM_RUN_HOST says otherwise; each service reaches NATS as its own user; the development tokens
carry teams and a supervisor is configured for every team, so the whole policy, escalations
included, works out of the box. The banner lists the tokens, the read-only operator's NATS
credentials, and says "ready" only once every service answers gRPC health.

Data lives under ./data (CRM_DATA_DIR), so it survives a restart. Ctrl-C stops the services
(SIGTERM, so each flushes its outbox), then NATS, then the MongoDB server if it started one.

MongoDB: unless CRM_MONGODB_URI names a server, `make run` starts SecantusDB's `secantusd-py`
(a development dependency that speaks MongoDB's wire protocol, with transactions) on
127.0.0.1:CRM_MONGODB_PORT (27017), its data in data/mongodb. Each service gets a database of
its own (promesa_<service>, or CRM_<SERVICE>_MONGODB_DATABASE), as in production.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.mongoserver import MongoServer
from devtools.natsserver import OPERATOR, NatsServer
from promesa.auth import Identity, parse_tokens
from promesa.settings import without_credentials

SERVICES = {"contacts": (50051, 9101), "interactions": (50052, 9102), "followup": (50053, 9103)}
# token, subject, role, team ("" = none; a supervisor without a team supervises every team)
DEV_IDENTITIES = (
    ("dev-agent-token", "agent-1", "agent", "team-a"),
    ("dev-agent-b-token", "agent-2", "agent", "team-b"),
    ("dev-supervisor-token", "supervisor-1", "supervisor", "team-a"),
    ("dev-lead-token", "lead-1", "supervisor", ""),
    ("dev-service-token", "service-1", "service", ""),
)
DEV_TOKENS = ",".join(
    f"{token}={subject}:{role}" + (f":{team}" if team else "")
    for token, subject, role, team in DEV_IDENTITIES
)
# Escalations of team-a go to its supervisor, every other team's to the lead.
DEV_SUPERVISORS = "team-a=supervisor-1,*=lead-1"
DEV_SERVICE_TOKEN = "dev-service-token"
READY_SECONDS = 60.0
MONGODB_PORT = 27017


def _has_main(package: str) -> bool:
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec else None
    return bool(locations) and any((Path(p) / "__main__.py").exists() for p in locations or ())


def reachable(host: str) -> str:
    """Where to connect to a server listening on `host` (any interface: loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def ports(name: str, environ: Mapping[str, str]) -> tuple[int, int]:
    grpc_port, metrics_port = SERVICES[name]
    prefix = f"CRM_{name.upper()}"
    return (
        int(environ.get(f"{prefix}_GRPC_PORT", grpc_port)),
        int(environ.get(f"{prefix}_METRICS_PORT", metrics_port)),
    )


def mongodb_database(name: str, environ: Mapping[str, str]) -> str:
    """A database per service, as in production: a CRM_MONGODB_DATABASE meant for one service
    would otherwise put all three in one database, where their outboxes and inboxes collide."""
    return environ.get(f"CRM_{name.upper()}_MONGODB_DATABASE", f"promesa_{name}")


def local_mongodb(environ: Mapping[str, str], data: Path) -> MongoServer | None:
    """The server `CRM_STORE=mongodb make run` starts, unless CRM_MONGODB_URI names one: on
    loopback only (it has no users), on CRM_MONGODB_PORT, its data in data/mongodb."""
    if environ.get("CRM_STORE") != "mongodb" or environ.get("CRM_MONGODB_URI"):
        return None
    port = int(environ.get("CRM_MONGODB_PORT", MONGODB_PORT))
    return MongoServer(data / "mongodb", data_dir=data / "mongodb" / "db", port=port)


def port_taken(host: str, port: int) -> bool:
    """Whether something listens there already: a server that answered on its port (a local
    mongod on 27017, say) would otherwise be mistaken for the one just started."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def service_env(
    name: str,
    environ: Mapping[str, str],
    nats: NatsServer,
    data: Path,
    host: str,
    tokens: str,
    mongodb_uri: str = "",
) -> dict[str, str]:
    grpc_port, metrics_port = ports(name, environ)
    contacts_port, _ = ports("contacts", environ)
    env = {
        **environ,
        "CRM_NATS_URL": nats.url_for(name),
        "CRM_API_TOKENS": tokens,
        "CRM_GRPC_HOST": host,
        "CRM_GRPC_PORT": str(grpc_port),
        "CRM_METRICS_HOST": host,
        "CRM_METRICS_PORT": str(metrics_port),
        "CRM_SQLITE_PATH": str(data / f"{name}.db"),
        "CRM_TEAM_SUPERVISORS": environ.get("CRM_TEAM_SUPERVISORS", DEV_SUPERVISORS),
        "CRM_CONTACTS_ADDRESS": f"{reachable(host)}:{contacts_port}",
        "CRM_MONGODB_DATABASE": mongodb_database(name, environ),
    }
    if mongodb_uri:
        env["CRM_MONGODB_URI"] = mongodb_uri
    if tokens == DEV_TOKENS:
        env.setdefault("CRM_SERVICE_TOKEN", DEV_SERVICE_TOKEN)
    return env


def token_lines(tokens: str) -> list[str]:
    """The callers, by token: the development tokens in full (they are public), any other
    token only by its first characters."""
    identities: Mapping[str, Identity] = parse_tokens(tokens)
    lines = []
    for token, who in identities.items():
        shown = token if tokens == DEV_TOKENS else f"{token[:3]}…"
        team = who.team or ("every team" if who.role.value == "supervisor" else "-")
        lines.append(f"  {shown:<22} {who.subject:<14} {who.role.value:<11} {team}")
    return lines


def store_lines(environ: Mapping[str, str], data: Path, mongo: MongoServer | None) -> list[str]:
    """Where the services keep their data; a URI of the caller's only without credentials."""
    if environ.get("CRM_STORE") != "mongodb":
        return [f"store        sqlite, a file per service in {data}"]
    databases = ", ".join(mongodb_database(name, environ) for name in SERVICES)
    if mongo is None:
        where = f"{without_credentials(environ.get('CRM_MONGODB_URI', ''))}  (CRM_MONGODB_URI)"
    else:
        where = f"{mongo.uri}  (secantusd-py, data in {mongo.data_dir})"
    return [f"store        mongodb {where}", f"             databases {databases}"]


def banner(
    nats: NatsServer,
    data: Path,
    host: str,
    environ: Mapping[str, str],
    tokens: str,
    mongo: MongoServer | None = None,
) -> list[str]:
    at = reachable(host)
    operator = nats.url_for(OPERATOR)
    lines = [
        f"data         {data}",
        *store_lines(environ, data, mongo),
        f"nats         {nats.address}  (each service connects as its own NATS user)",
        f"  operator   user {OPERATOR}, password {nats.password(OPERATOR)}  (read-only:"
        " stream info, messages by sequence, live events on crm.>)",
        f"             {operator}",
        f"             e.g. nats --server {operator} stream get CRM_CONTACTS 1",
    ]
    for name in SERVICES:
        grpc_port, metrics_port = ports(name, environ)
        lines.append(
            f"{name:<12} grpc {at}:{grpc_port}  metrics http://{at}:{metrics_port}/metrics"
        )
    lines += observability_lines(environ)
    lines += ["tokens       authorization: Bearer <token>", *token_lines(tokens)]
    supervisors = environ.get("CRM_TEAM_SUPERVISORS", DEV_SUPERVISORS)
    lines.append(f"escalations  CRM_TEAM_SUPERVISORS={supervisors}")
    return lines


def observability_lines(environ: Mapping[str, str]) -> list[str]:
    """Where the metrics come from and how to see traces (README, Observability)."""
    refresh = environ.get("CRM_METRICS_REFRESH_SECONDS", "30")
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    traces = (
        f"exported by OTLP to {without_credentials(endpoint)}  (OTEL_EXPORTER_OTLP_ENDPOINT)"
        if endpoint
        else "set OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 (an OpenTelemetry"
        " collector or Jaeger) and restart"
    )
    return [
        f"gauges       promise counts, outbox age, consumer lag: refreshed every {refresh} s"
        " (CRM_METRICS_REFRESH_SECONDS); every metric in README, Observability",
        f"traces       {traces}",
    ]


def local_profile(environ: Mapping[str, str], host: str, tokens: str) -> list[str]:
    """The `promesa` CLI's `local` profile (dev-agent-token, user agent-1, this machine's time
    zone), written only when the profile file has none, so a new agent needs no setup; and
    how to use it. Nothing when the CLI is not installed or the tokens are not the dev ones."""
    try:
        from promesa_cli import config as cli_config
    except ImportError:
        return []
    if tokens != DEV_TOKENS:
        return []
    path = cli_config.config_path(environ)
    at = reachable(host)
    lines = []
    if not cli_config.has_profile("local", path):
        profile = cli_config.Profile(
            name="local",
            contacts=f"{at}:{ports('contacts', environ)[0]}",
            interactions=f"{at}:{ports('interactions', environ)[0]}",
            followup=f"{at}:{ports('followup', environ)[0]}",
            token="dev-agent-token",
            user="agent-1",
            time_zone=cli_config.local_time_zone(),
        )
        cli_config.save(profile, path)
        lines.append(f"promesa      wrote profile 'local' (agent-1, dev-agent-token) to {path}")
    else:
        lines.append(f"promesa      profile 'local' in {path}")
    default = cli_config.load_file(path).default
    cli = "promesa" if default == "local" else "promesa --profile local"
    lines.append(f"             in another terminal: {cli} demo; {cli} promises mine; {cli} desk")
    return lines


def serving(address: str) -> bool:
    """Whether the server at this address answers grpc.health.v1 with SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def stop_services(procs: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to all, so each flushes its outbox, then wait for each (a kill after 30 s)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def supervise(
    procs: Mapping[str, subprocess.Popen[bytes]],
    host: str,
    environ: Mapping[str, str],
    ready_seconds: float,
) -> int:
    """Says "ready" once every service answers health; returns on Ctrl-C (0), or when a
    service exits or is not ready in time (1)."""
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    waiting = {name: f"{reachable(host)}:{ports(name, environ)[0]}" for name in procs}
    deadline = time.monotonic() + ready_seconds
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                stopping, exit_code = True, 1
        if waiting and not stopping:
            waiting = {n: a for n, a in waiting.items() if not serving(a)}
            if not waiting:
                print(
                    f"ready: {', '.join(procs)} answer health. Ctrl-C stops everything.",
                    flush=True,
                )
            elif time.monotonic() > deadline:
                print(
                    f"not ready within {ready_seconds:g}s: {', '.join(waiting)}; stopping",
                    file=sys.stderr,
                )
                stopping, exit_code = True, 1
        time.sleep(0.1 if waiting else 0.2)
    return exit_code


def main() -> int:
    environ = dict(os.environ)
    data = Path(environ.get("CRM_DATA_DIR", "data")).resolve()
    host = environ.get("CRM_RUN_HOST", "127.0.0.1")
    tokens = environ.get("CRM_API_TOKENS", DEV_TOKENS)
    ready_seconds = float(environ.get("CRM_RUN_READY_SECONDS", READY_SECONDS))
    present = [s for s in SERVICES if _has_main(s)]
    # Stopped in reverse order on the way out: the services, then NATS, then MongoDB.
    with contextlib.ExitStack() as running:
        mongo = local_mongodb(environ, data)
        if mongo is not None:
            if port_taken(mongo.host, mongo.port):
                print(
                    f"port {mongo.port} is in use (a mongod?): set CRM_MONGODB_PORT to a free"
                    " port, or CRM_MONGODB_URI to use that server (a replica set member)",
                    file=sys.stderr,
                )
                return 1
            running.callback(mongo.stop)
            try:
                mongo.start()
            except (OSError, RuntimeError) as exc:  # not installed, exited, or not listening
                print(f"MongoDB did not start: {exc}", file=sys.stderr)
                return 1
        mongodb_uri = mongo.uri if mongo is not None else ""
        nats = NatsServer(data / "nats", port=int(environ.get("CRM_NATS_PORT", "4222")))
        running.callback(nats.stop)
        nats.start()
        procs: dict[str, subprocess.Popen[bytes]] = {}
        running.callback(stop_services, procs)
        for name in present:
            env = service_env(name, environ, nats, data, host, tokens, mongodb_uri)
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", name], env=env, start_new_session=True
            )
        lines = banner(nats, data, host, environ, tokens, mongo)
        lines += local_profile(environ, host, tokens)
        print("\n".join(lines), flush=True)
        return supervise(procs, host, environ, ready_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
