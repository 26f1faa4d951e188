"""`make run`: NATS with JetStream and every service that exists, on the embedded SQLite default.

Data lives under ./data, so it survives a restart. Ctrl-C stops the services (SIGTERM, so each
flushes its outbox) and then NATS.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.natsserver import NatsServer

SERVICES = {"contacts": (50051, 9101), "interactions": (50052, 9102), "followup": (50053, 9103)}
DEV_TOKENS = (
    "dev-agent-token=agent-1:agent,dev-supervisor-token=supervisor-1:supervisor,"
    "dev-service-token=service-1:service"
)


def _has_main(package: str) -> bool:
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec else None
    return bool(locations) and any((Path(p) / "__main__.py").exists() for p in locations or ())


def main() -> int:
    data = Path(os.environ.get("CRM_DATA_DIR", "data")).resolve()
    nats_port = int(os.environ.get("CRM_NATS_PORT", "4222"))
    tokens = os.environ.get("CRM_API_TOKENS", DEV_TOKENS)
    present = [s for s in SERVICES if _has_main(s)]
    nats = NatsServer(data / "nats", port=nats_port).start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    print(f"nats       {nats.url}  (JetStream store {data / 'nats'})")
    for name in present:
        grpc_port, metrics_port = SERVICES[name]
        env = {
            **os.environ,
            "CRM_NATS_URL": nats.url,
            "CRM_API_TOKENS": tokens,
            "CRM_GRPC_PORT": os.environ.get(f"CRM_{name.upper()}_GRPC_PORT", str(grpc_port)),
            "CRM_METRICS_PORT": str(metrics_port),
            "CRM_SQLITE_PATH": str(data / f"{name}.db"),
        }
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", name], env=env, start_new_session=True
        )
        print(f"{name:<10} grpc 127.0.0.1:{env['CRM_GRPC_PORT']}  metrics :{metrics_port}")
    if tokens == DEV_TOKENS:
        print(
            "tokens     dev-agent-token (agent), dev-supervisor-token (supervisor),"
            " dev-service-token (service)"
        )
    print("Ctrl-C stops everything.", flush=True)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    try:
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                    stopping, exit_code = True, 1
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats.stop()
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
