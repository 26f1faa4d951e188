"""Faults between the SDK and a real service, for the tests that prove what the SDK does about
them: a gRPC proxy that loses answers (UNAVAILABLE) or speaks TLS, and a TCP proxy whose
connections can be cut. They forward to the real services; they stand in for nothing of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Behaviour = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


@dataclass
class Attempt:
    """One call the proxy received: the full method name and the serialized request."""

    method: str
    request: bytes


@dataclass
class GrpcProxy:
    """Forwards every unary call, bytes as they are and the token with them, to `upstream`;
    the first `lose_answers` answers are thrown away and UNAVAILABLE sent instead, as when a
    connection breaks after the server did the work; `delay` seconds pass before each forward,
    as on a slow network."""

    upstream: str
    lose_answers: int = 0
    delay: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    _channel: grpc.aio.Channel | None = None

    def handler(self) -> grpc.GenericRpcHandler:
        proxy = self

        class Handler(grpc.GenericRpcHandler):
            def service(
                self, details: grpc.HandlerCallDetails
            ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
                method = details.method

                async def forward(
                    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
                ) -> bytes:
                    return await proxy._forward(method, request, context)

                return grpc.unary_unary_rpc_method_handler(forward)

        return Handler()

    async def _forward(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        self.attempts.append(Attempt(method, request))
        assert self._channel is not None
        if self.delay:
            await asyncio.sleep(self.delay)  # the slowness itself is what is under test
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if k == "authorization"]
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method)
        try:
            reply: bytes = await call(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
        if len(self.attempts) <= self.lose_answers:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: the answer was lost")
        return reply


@asynccontextmanager
async def running_grpc_proxy(
    proxy: GrpcProxy, tls: tuple[bytes, bytes] | None = None
) -> AsyncIterator[str]:
    """Serves the proxy on a free loopback port (with TLS when given (key, cert) PEMs) and
    yields its address."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((proxy.handler(),))
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        credentials = grpc.ssl_server_credentials([tls])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    proxy._channel = grpc.aio.insecure_channel(proxy.upstream)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)
        await proxy._channel.close()


def self_signed_certificate() -> tuple[bytes, bytes]:
    """A key and a certificate for 127.0.0.1 and localhost (PEM), valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


class TcpProxy:
    """Copies bytes between a client and `upstream`; `cut()` drops every open connection and
    refuses new ones until `restore()`, as a network that fails for a while."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusing = False
        self._server: asyncio.Server | None = None
        self.accepted = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    def cut(self) -> None:
        self._refusing = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self._refusing = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        for pump in pumps:
            pump.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A cut connection shows up here as a reset or an end of stream: both end the copy.
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()
