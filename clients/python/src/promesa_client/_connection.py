"""The channels, the token and the deadline every call shares; and the one place where a
failed call becomes an SDK exception.

Retries are gRPC's own: the channel carries a service config whose retry policy resends a call
that failed with UNAVAILABLE, with exponential backoff, before any answer arrived. No loop of
ours resends anything, so a create keeps the one request_id it was given for all attempts.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from promesa_client import errors

Response = TypeVar("Response")

# A static token, or a callable that returns a fresh one (e.g. an OIDC access token about to
# expire); called before every call, so it should cache.
TokenSource = str | Callable[[], str | Awaitable[str]]
# False: plaintext (loopback, a sidecar); True: TLS with the system's roots; or credentials.
TlsOption = bool | grpc.ChannelCredentials
ChannelOptions = Sequence[tuple[str, Any]]

SERVICE_NAMES = {
    "contacts": "crm.contacts.v1.ContactsService",
    "interactions": "crm.interactions.v1.InteractionsService",
    "followup": "crm.followup.v1.FollowupService",
}
# UNAVAILABLE only: the one status that says the call did not run (a connection refused or
# reset, a server draining). Up to 5 attempts, about 0.2 s, 0.4 s, 0.8 s, 1.6 s apart (gRPC
# randomises each wait up to that bound).
RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 5,
    "initialBackoff": "0.2s",
    "maxBackoff": "5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config(service: str) -> str:
    """The JSON service config of a channel to one Promesa service: the retry policy on all
    of its methods."""
    return json.dumps(
        {"methodConfig": [{"name": [{"service": service}], "retryPolicy": RETRY_POLICY}]}
    )


class Connection:
    """Lazily opened channels (a grpc.aio channel belongs to the event loop that opens it, so
    a Client may be built before `asyncio.run`), the caller's token, the default deadline."""

    def __init__(
        self,
        targets: dict[str, str],
        token: TokenSource,
        tls: TlsOption,
        deadline: float | None,
        options: ChannelOptions,
    ) -> None:
        self._targets = targets
        self._token = token
        self._tls = tls
        self.deadline = deadline
        self._options = tuple(options)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to `service` ("contacts", "interactions", "followup"), opened once."""
        found = self._channels.get(service)
        if found is not None:
            return found
        target = self._targets[service]
        # The caller's options win; one entry per key, so no doubt about which one gRPC reads.
        options = list(
            {
                "grpc.enable_retries": 1,
                "grpc.service_config": service_config(SERVICE_NAMES[service]),
                # After a service restart, try again within 10 s, not gRPC's default 120 s: a
                # desk waiting on its reminder stream should not sit idle for minutes.
                "grpc.max_reconnect_backoff_ms": 10_000,
                **dict(self._options),
            }.items()
        )
        if self._tls is False:
            channel = grpc.aio.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials() if self._tls is True else self._tls
            channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._channels[service] = channel
        return channel

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        """The bearer token as call metadata, fetched afresh from a callable source."""
        token = self._token
        if callable(token):
            produced = token()
            token = await produced if inspect.isawaitable(produced) else produced
        if not isinstance(token, str) or not token:
            raise errors.Unauthenticated(
                grpc.StatusCode.UNAUTHENTICATED, "the token source gave no token"
            )
        return (("authorization", f"Bearer {token}"),)

    def timeout(self, timeout: float | None) -> float | None:
        """The deadline of one call: the caller's, else the client's default."""
        return self.deadline if timeout is None else timeout

    async def call(
        self,
        method: Callable[..., Awaitable[Response]],
        request: object,
        timeout: float | None = None,
    ) -> Response:
        """One unary call with the token and the deadline; a failure raised as PromesaError."""
        metadata = await self.metadata()
        try:
            return await method(request, metadata=metadata, timeout=self.timeout(timeout))
        except grpc.aio.AioRpcError as exc:
            raise errors.from_rpc_error(exc) from exc

    async def close(self) -> None:
        """Closes every open channel; calls in flight are cancelled."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
