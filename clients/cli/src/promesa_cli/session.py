"""What every command shares: the resolved profile, the output mode, and one way to run an SDK
call that turns its errors into a message naming the field and an exit code by class."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from promesa_cli.config import ConfigError, Profile, resolve
from promesa_cli.exitcodes import ExitCode, exit_code
from promesa_client import Client, errors

T = TypeVar("T")


@dataclass
class Session:
    """Set by the top-level callback; commands reach it through `ctx.obj`. The profile is
    resolved on first use, so `promesa config ...` works even with a broken profile."""

    profile_name: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    json_output: bool = False
    _profile: Profile | None = None

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            try:
                self._profile = resolve(self.profile_name, self.flags)
            except ConfigError as exc:
                fail(str(exc), ExitCode.CONFIG, self.json_output)
        return self._profile

    @property
    def out(self) -> Console:
        # Built per use: the runner (and a pipe) may replace sys.stdout between commands.
        return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def session(ctx: typer.Context) -> Session:
    obj = ctx.find_root().obj
    if not isinstance(obj, Session):
        obj = Session()
        ctx.find_root().obj = obj
    return obj


def wants_json(ctx: typer.Context, json_flag: bool) -> Session:
    """The session, switched to JSON when the command's own `--json` was given."""
    state = session(ctx)
    state.json_output = state.json_output or json_flag
    return state


def fail(message: str, code: ExitCode, json_output: bool, **extra: Any) -> NoReturn:
    """An error on stderr (a JSON object in JSON mode) and the exit code of its class."""
    if json_output:
        body = {"error": {"code": code.name, "exit_code": int(code), "message": message, **extra}}
        print(json.dumps(body, ensure_ascii=False), file=sys.stderr)
    else:
        err = Console(file=sys.stderr, highlight=False)
        # Text, not markup: a server's message may hold brackets.
        err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
        for violation in extra.get("field_violations", ()):
            if violation["description"] in message and not violation["flag"]:
                continue  # the message said it already
            shown = violation["field"]
            if violation["flag"]:
                shown = f"{violation['flag']} ({shown})"
            err.print(Text.assemble("  ", (shown, "bold"), f": {violation['description']}"))
    raise typer.Exit(int(code))


def describe(error: errors.PromesaError) -> str:
    """The server's message, plus which record was involved when it said so."""
    message = error.message or error.code.name
    if error.resource_name and error.resource_name not in message:
        kind = error.resource_type or "resource"
        message += f" ({kind} {error.resource_name})"
    return message


def flag_of(field: str, flags: Mapping[str, str]) -> str:
    """The flag that set a field the service named ("contact.emails[1]" → "--email"), or ""."""
    base = re.sub(r"\[\d+\]", "", field)
    return flags.get(base) or flags.get(base.split(".")[-1], "")


def run(
    state: Session,
    work: Callable[[Client], Awaitable[T]],
    flags: Mapping[str, str] | None = None,
) -> T:
    """Runs `work` with a connected client in an event loop of its own; SDK and profile errors
    end the command with their exit code, a refused field named by the flag that set it
    (`flags`: field path → flag). Anything else is a bug and is left to propagate."""
    profile = state.profile

    async def with_client() -> T:
        async with profile.client() as client:
            return await work(client)

    try:
        return asyncio.run(with_client())
    except ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG, state.json_output)
    except errors.PromesaError as exc:
        violations = [
            {"field": v.field, "description": v.description, "flag": flag_of(v.field, flags or {})}
            for v in exc.field_violations
        ]
        extra: dict[str, Any] = {"status": exc.code.name}
        if violations:
            extra["field_violations"] = violations
        if exc.resource_name:
            extra["resource"] = {"type": exc.resource_type, "name": exc.resource_name}
        fail(describe(exc), exit_code(exc), state.json_output, **extra)


def usage(message: str, param: str) -> NoReturn:
    """A flag the CLI itself refuses, named, with Click's usage exit code (2)."""
    raise typer.BadParameter(message, param_hint=param)
