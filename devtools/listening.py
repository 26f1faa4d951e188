"""Starting a server process and waiting until it listens, the same for every backing server
the tests and `make run` start (nats-server, secantusd-py)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_listening(
    args: Sequence[str], *, log: Path, host: str, port: int, timeout: float, name: str
) -> subprocess.Popen[bytes]:
    """Starts `args` in its own session (Ctrl-C reaches whoever started it, who stops it last)
    with its output appended to `log`, and returns once it accepts connections."""
    log_file = log.open("ab")
    proc = subprocess.Popen(list(args), stdout=log_file, stderr=log_file, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited; see {log}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise TimeoutError(f"{name} did not listen on {host}:{port} within {timeout}s")


def stop(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after the grace period."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
