"""Starts a server that speaks MongoDB's wire protocol for tests and `make run`: SecantusDB's
`secantusd-py` (PyPI `secantusdb`, a development dependency only: GPL-2.0, never in an
image). It answers as a one-member replica set primary with real multi-document
transactions, which is what the stores need; `standalone=True` starts it without, to prove
the stores refuse such a server at boot.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from devtools.listening import free_port, start_listening, stop


def secantusd_binary() -> str:
    local = Path(sys.executable).parent / "secantusd-py"
    found = str(local) if local.exists() else shutil.which("secantusd-py")
    if not found:
        raise FileNotFoundError("secantusd-py not found: run `make setup` (pip secantusdb)")
    return found


class MongoServer:
    """`data_dir` None keeps the data in memory (tests); a folder keeps it across restarts."""

    def __init__(
        self,
        log_dir: Path,
        *,
        data_dir: Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        standalone: bool = False,
        transaction_lifetime: float | None = None,
    ) -> None:
        """`transaction_lifetime` (seconds; default the server's 60) bounds how long a
        transaction abandoned by a killed client blocks others, as mongod's
        `transactionLifetimeLimitSeconds` does."""
        self.log_dir = log_dir
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port()
        self.standalone = standalone
        self.transaction_lifetime = transaction_lifetime
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        # One member: talk to it directly rather than discovering a set by name.
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def start(self, timeout: float = 30.0) -> MongoServer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        storage = ":memory:"
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = str(self.data_dir)
        launcher = [secantusd_binary()]
        if self.transaction_lifetime is not None:
            launcher = [
                sys.executable,
                "-m",
                "devtools.secantusd",
                "--transaction-lifetime-seconds",
                str(self.transaction_lifetime),
            ]
        args = [
            *launcher,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            storage,
            "--log-level",
            "WARNING",
            # A committed write is on disk, as the stores promise (nothing to sync in memory).
            *(["--sync-on-commit"] if self.data_dir is not None else []),
            *(["--standalone"] if self.standalone else []),
        ]
        self._proc = start_listening(
            args,
            log=self.log_dir / "secantusd.log",
            host=self.host,
            port=self.port,
            timeout=timeout,
            name="secantusd-py",
        )
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return int(self._proc.pid)

    def stop(self) -> None:
        """SIGINT first: secantusd-py shuts down cleanly on it (and ignores SIGTERM)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        stop(self._proc)
        self._proc = None
