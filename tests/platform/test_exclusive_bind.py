"""A service binds its ports exclusively: a second process on a port already in use refuses
to start, with a message naming the address, instead of silently taking part of the calls
into another database (gRPC's default SO_REUSEPORT allowed exactly that)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from contacts.bootstrap import build
from contacts.settings import ContactsSettings
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from promesa.clock import ManualClock
from promesa.runtime import PortInUseError
from promesa.settings import Env
from tests.contacts.conftest import contacts_env, running_contacts
from tests.processes import ServiceProcess


async def test_a_second_process_on_the_same_grpc_port_refuses_to_start(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    first = tmp_path / "first"
    async with running_contacts(nats_server, first, ManualClock(), CRM_GRPC_PORT=str(port)):
        second = ServiceProcess(
            "contacts", contacts_env(nats_server, tmp_path / "second", CRM_GRPC_PORT=str(port))
        )
        second.start()
        try:
            assert second.proc is not None
            code = second.proc.wait(30)
        finally:
            second.kill_if_running()
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in second.log_path.read_text()


async def test_a_second_service_in_process_gets_an_error_naming_the_address(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    async with running_contacts(
        nats_server, tmp_path / "first", ManualClock(), CRM_GRPC_PORT=str(port)
    ):
        env = contacts_env(nats_server, tmp_path / "second", CRM_GRPC_PORT=str(port))
        app = await build(ContactsSettings.from_env(Env(env)), ManualClock())
        try:
            with pytest.raises(PortInUseError, match=f"CRM_GRPC_PORT: .*127.0.0.1:{port}"):
                await app.runtime.start()
        finally:
            await app.runtime.close()


async def test_a_metrics_port_in_use_refuses_the_start_and_names_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = contacts_env(nats_server, tmp_path, CRM_METRICS_PORT=str(taken))
        app = await build(ContactsSettings.from_env(Env(env)), ManualClock())
        try:
            with pytest.raises(PortInUseError, match=f"CRM_METRICS_PORT: .*127.0.0.1:{taken}"):
                await app.runtime.start()
        finally:
            await app.runtime.close()
