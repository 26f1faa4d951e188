"""A real nats-server with JetStream for every test: streams and durable consumers are shared
state, so each test gets a server of its own (one starts in about 25 ms).

The server has Promesa's NATS users (devtools.natsserver): `nats_server.url` is the admin, for
a test's own reads and writes; a service under test connects as itself with
`nats_server.url_for("<service>")`, so its permissions are exercised by every test.

MongoDB: one server for the whole session, speaking the wire protocol (SecantusDB, a
development dependency), started before the test modules are read, so that every store
contract suite runs on MongoDB too. `CRM_TEST_MONGODB_URI` names a real mongod replica set
instead; each test uses a database of its own."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.mongoserver import MongoServer
from devtools.natsserver import NatsServer
from promesa.logging import configure_logging

MONGODB_URI = "CRM_TEST_MONGODB_URI"
_session_mongo: list[MongoServer] = []


def pytest_configure(config: pytest.Config) -> None:
    """Before collection: the test modules read CRM_TEST_MONGODB_URI when they are imported."""
    if os.environ.get(MONGODB_URI):
        return
    server = MongoServer(Path(tempfile.mkdtemp(prefix="promesa-mongo-"))).start()
    _session_mongo.append(server)
    os.environ[MONGODB_URI] = server.uri


def pytest_unconfigure(config: pytest.Config) -> None:
    while _session_mongo:
        _session_mongo.pop().stop()
        os.environ.pop(MONGODB_URI, None)


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
