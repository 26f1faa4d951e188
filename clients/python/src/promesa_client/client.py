"""`Client`: one object for the three Promesa services, async first."""

from __future__ import annotations

from types import TracebackType

from promesa_client._connection import ChannelOptions, Connection, TlsOption, TokenSource
from promesa_client.contacts import Contacts
from promesa_client.interactions import Interactions
from promesa_client.promises import Promises

# Where `make run` puts the services.
LOCAL_TARGETS = {
    "contacts": "127.0.0.1:50051",
    "interactions": "127.0.0.1:50052",
    "followup": "127.0.0.1:50053",
}
DEFAULT_DEADLINE = 10.0


class Client:
    """The contacts, interactions and follow-up services, reached as `client.contacts`,
    `client.interactions` and `client.promises`.

    Every call sends the token, has a deadline (`deadline` seconds unless the call says
    `timeout=`) and is retried by gRPC on UNAVAILABLE. Channels open on first use, in the event
    loop that uses them; `async with client:` (or `await client.close()`) closes them.
    """

    def __init__(
        self,
        *,
        contacts: str,
        interactions: str,
        followup: str,
        token: TokenSource,
        tls: TlsOption = False,
        deadline: float | None = DEFAULT_DEADLINE,
        channel_options: ChannelOptions = (),
    ) -> None:
        self._connection = Connection(
            {"contacts": contacts, "interactions": interactions, "followup": followup},
            token,
            tls,
            deadline,
            channel_options,
        )
        self.contacts = Contacts(self._connection)
        self.interactions = Interactions(self._connection)
        self.promises = Promises(self._connection)

    @classmethod
    def local(
        cls,
        token: TokenSource = "dev-agent-token",
        *,
        deadline: float | None = DEFAULT_DEADLINE,
    ) -> Client:
        """The services of `make run` on this machine (127.0.0.1:50051-50053)."""
        return cls(
            contacts=LOCAL_TARGETS["contacts"],
            interactions=LOCAL_TARGETS["interactions"],
            followup=LOCAL_TARGETS["followup"],
            token=token,
            deadline=deadline,
        )

    @property
    def deadline(self) -> float | None:
        """Seconds every call may take unless it says otherwise (None: no deadline)."""
        return self._connection.deadline

    async def close(self) -> None:
        """Closes the channels; calls still in flight are cancelled."""
        await self._connection.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
