"""A real nats-server with JetStream for every test: streams and durable consumers are shared
state, so each test gets a server of its own (one starts in about 25 ms)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from promesa.logging import configure_logging
from promesa.natsserver import NatsServer


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> None:
    configure_logging("warning")


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(Path(tmp_path_factory.mktemp("nats"))).start()
    yield server
    server.stop()
