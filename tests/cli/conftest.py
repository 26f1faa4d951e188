"""The `promesa` CLI under test: Typer's runner against the real services (tests/front_office.py:
subprocesses on free ports, a real nats-server, SQLite in a temporary directory).

A command runs `asyncio.run` itself, so the runner is called in a worker thread: the test's own
event loop (pytest's, shared by the session) is never asked to run a second one. Every command
gets a profile file of its own in the test's directory and no PROMESA_* variable from the
environment of the person running the tests, so nobody's real profile is read or written."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from promesa_cli.app import app
from promesa_cli.session import Session
from tests.front_office import AGENT, FrontOffice, running_front_office

TIME_ZONE = "Europe/Madrid"


@pytest.fixture(scope="package")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FrontOffice]:
    """One system for the whole directory; the scheduler looks for due reminders every 0.2 s
    so that the demo's reminder comes promptly."""
    async with running_front_office(
        tmp_path_factory.mktemp("cli-system"), CRM_SCHEDULER_INTERVAL_SECONDS="0.2"
    ) as running:
        yield running


@dataclass
class Outcome:
    """What a command did: its exit code, what it printed on each stream."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error(self) -> dict[str, Any]:
        """The JSON error object a failing `--json` command prints on stderr."""
        body: dict[str, Any] = json.loads(self.stderr.strip().splitlines()[-1])
        return body["error"]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


Invoke = Callable[..., Outcome]


def run_cli(args: list[str], env: Mapping[str, str | None], input: str | None = None) -> Outcome:
    """The command as a person types it, in a worker thread (see the module's docstring)."""

    def invoke() -> Result:
        runner = CliRunner()
        return runner.invoke(app, args, env=env, input=input, obj=Session())

    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(invoke).result(timeout=120)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not an exit code: show its traceback
    return Outcome(result.exit_code, result.stdout, result.stderr, result.exception)


def clean_env(config: Path, **settings: str) -> dict[str, str | None]:
    """No PROMESA_* of the outside world; the profile file in the test's directory."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROMESA_")}
    env["PROMESA_CONFIG"] = str(config)
    env.update(settings)
    return env


@pytest.fixture
def cli(system: FrontOffice, tmp_path: Path) -> Invoke:
    """`cli("promises", "mine", "--json")` as agent-1 against the test system;
    `token=` and `env=` change who calls and what else is set."""

    def invoke(
        *args: str,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> Outcome:
        settings = {**system.env(), "PROMESA_USER": AGENT, "PROMESA_TIME_ZONE": TIME_ZONE}
        if token is not None:
            settings["PROMESA_TOKEN"] = token
        settings.update(env or {})
        return run_cli(list(args), clean_env(tmp_path / "promesa.toml", **settings), input)

    return invoke
