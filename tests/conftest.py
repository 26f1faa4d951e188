"""A real nats-server with JetStream for every test: streams and durable consumers are shared
state, so each test gets a server of its own (one starts in about 25 ms).

The server has Promesa's NATS users (devtools.natsserver): `nats_server.url` is the admin, for
a test's own reads and writes; a service under test connects as itself with
`nats_server.url_for("<service>")`, so its permissions are exercised by every test."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.natsserver import NatsServer
from promesa.logging import configure_logging


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> None:
    configure_logging("warning")


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(Path(tmp_path_factory.mktemp("nats"))).start()
    yield server
    server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A server for a test that freezes it with SIGSTOP; thawed before it is stopped."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    os.kill(server.pid, signal.SIGCONT)
    server.stop()
