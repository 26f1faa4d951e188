"""`make run`: NATS with JetStream and every service that exists, on the embedded SQLite default.

Safe by default: everything listens on 127.0.0.1 only (gRPC, metrics, NATS) unless
CRM_RUN_HOST says otherwise; each service reaches NATS as its own user; the development tokens
carry teams and a supervisor is configured for every team, so the whole policy, escalations
included, works out of the box. The banner lists the tokens, the read-only operator's NATS
credentials, and says "ready" only once every service answers gRPC health.

Data lives under ./data (CRM_DATA_DIR), so it survives a restart. Ctrl-C stops the services
(SIGTERM, so each flushes its outbox) and then NATS.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.natsserver import OPERATOR, NatsServer
from promesa.auth import Identity, parse_tokens

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


def service_env(
    name: str, environ: Mapping[str, str], nats: NatsServer, data: Path, host: str, tokens: str
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
    }
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


def banner(
    nats: NatsServer, data: Path, host: str, environ: Mapping[str, str], tokens: str
) -> list[str]:
    at = reachable(host)
    operator = nats.url_for(OPERATOR)
    lines = [
        f"data         {data}",
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
    lines += ["tokens       authorization: Bearer <token>", *token_lines(tokens)]
    supervisors = environ.get("CRM_TEAM_SUPERVISORS", DEV_SUPERVISORS)
    lines.append(f"escalations  CRM_TEAM_SUPERVISORS={supervisors}")
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


def main() -> int:
    environ = dict(os.environ)
    data = Path(environ.get("CRM_DATA_DIR", "data")).resolve()
    host = environ.get("CRM_RUN_HOST", "127.0.0.1")
    tokens = environ.get("CRM_API_TOKENS", DEV_TOKENS)
    ready_seconds = float(environ.get("CRM_RUN_READY_SECONDS", READY_SECONDS))
    present = [s for s in SERVICES if _has_main(s)]
    nats = NatsServer(data / "nats", port=int(environ.get("CRM_NATS_PORT", "4222"))).start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in present:
        env = service_env(name, environ, nats, data, host, tokens)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", name], env=env, start_new_session=True
        )
    print("\n".join(banner(nats, data, host, environ, tokens)), flush=True)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    waiting = {name: f"{reachable(host)}:{ports(name, environ)[0]}" for name in present}
    deadline = time.monotonic() + ready_seconds
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    stopping, exit_code = True, 1
            if waiting and not stopping:
                waiting = {n: a for n, a in waiting.items() if not serving(a)}
                if not waiting:
                    print(
                        f"ready: {', '.join(present)} answer health. Ctrl-C stops everything.",
                        flush=True,
                    )
                elif time.monotonic() > deadline:
                    print(
                        f"not ready within {ready_seconds:g}s: {', '.join(waiting)}; stopping",
                        file=sys.stderr,
                    )
                    stopping, exit_code = True, 1
            time.sleep(0.1 if waiting else 0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        nats.stop()
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
