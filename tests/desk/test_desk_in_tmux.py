"""`promesa desk` in a real 80x24 terminal (tmux), driven as a person would: it reads the
screen, presses keys and types, and quits. The services run in this test's process; the desk is
the installed command, configured through the environment alone, as a new agent's would be
after `make run` wrote a profile."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from crm.followup.v1 import promise_pb2
from tests.desk.conftest import AGENT, DeskServices
from tests.support import AGENT_TOKEN, eventually

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (apt-get install tmux): the desk in a real terminal needs it",
)
PROMESA = Path(sys.executable).with_name("promesa")


class Terminal:
    """One tmux server of the test's own (its socket in the test's directory), so that nobody
    else's sessions are seen or touched, holding one 80x24 window."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "tmux.sock"

    async def tmux(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux",
            "-u",
            "-S",
            str(self.socket),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {err.decode().strip()}")
        return out.decode()

    async def start(self, command: str, env: dict[str, str]) -> None:
        settings = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        await self.tmux("new-session", "-d", "-x", "80", "-y", "24", *settings, command)

    async def screen(self) -> str:
        return await self.tmux("capture-pane", "-p")

    async def keys(self, *keys: str) -> None:
        await self.tmux("send-keys", *keys)

    async def type(self, text: str) -> None:
        await self.tmux("send-keys", "-l", text)

    async def shows(self, wanted: Callable[[str], bool], timeout: float = 20) -> str:
        """The screen once it shows what is wanted; on a timeout, the last screen is in the
        message, which is what a person would have seen."""
        last = [""]

        async def probe() -> str | None:
            last[0] = await self.screen()
            return last[0] if wanted(last[0]) else None

        try:
            return await eventually(probe, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"not shown in {timeout}s; the screen:\n{last[0]}") from None

    async def kill(self) -> None:
        """Ends this server (and the desk, if it still runs); a server that already ended,
        its last window closed, is what a clean quit leaves."""
        try:
            await self.tmux("kill-server")
        except RuntimeError as exc:
            gone = ("no server running", "error connecting", "server exited unexpectedly")
            if not any(reason in str(exc) for reason in gone):
                raise


async def test_an_agent_works_the_desk_in_a_real_terminal(
    services: DeskServices, tmp_path: Path
) -> None:
    maria = await services.customer("María García López", "María", "Europe/Madrid")
    call = await services.promise(maria.id, "Call María back", timedelta(minutes=30))
    await services.promise(maria.id, "Post the printed catalogue", timedelta(hours=3))
    await services.client.interactions.record(
        maria.id, channel="phone", type="inquiry", summary="Asked for the catalogue"
    )
    targets = services.targets()
    exit_file = tmp_path / "desk.exit"
    env = {
        "PROMESA_CONFIG": str(tmp_path / "no-profile.toml"),  # flags and environment only
        "PROMESA_CONTACTS": targets["contacts"],
        "PROMESA_INTERACTIONS": targets["interactions"],
        "PROMESA_FOLLOWUP": targets["followup"],
        "PROMESA_TOKEN": AGENT_TOKEN,
        "PROMESA_USER": AGENT,
        "PROMESA_TIME_ZONE": "Europe/Madrid",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "PATH": os.environ["PATH"],
    }
    terminal = Terminal(tmp_path)
    await terminal.start(f"{PROMESA} desk; echo $? > {exit_file}", env)
    try:
        # The desk opens on the agent's promises, soonest first, María's timeline, the keys
        screen = await terminal.shows(
            lambda s: all(
                seen in s
                for seen in ("2 open", "Call María back", "Asked for the catalogue", "Renegotiate")
            )
        )
        lines = screen.splitlines()
        assert len(lines) <= 24
        assert all(len(line) <= 80 for line in lines)
        assert "2 open" in lines[0]
        assert lines.index(next(x for x in lines if "Call María back" in x)) < lines.index(
            next(x for x in lines if "Post the printed catalogue" in x)
        )
        assert "k Keep" in lines[-1] and "r Renegotiate" in lines[-1]

        # When the promise falls due, its reminder shows up while the agent watches
        await services.fall_due(timedelta(minutes=30))
        await terminal.shows(lambda s: "at due" in s)

        # k keeps the selected (first) promise, with a note typed into the form
        await terminal.keys("k")
        await terminal.shows(lambda s: "Keep promise" in s)
        await terminal.type("Called her, all sorted")
        await terminal.keys("Enter")
        await terminal.shows(lambda s: "1 open" in s.splitlines()[0])
        kept = await services.client.promises.get(call.id)
        assert kept.status == promise_pb2.PROMISE_STATUS_KEPT
        assert kept.evidence.note == "Called her, all sorted"

        # q quits, cleanly
        await terminal.keys("q")

        async def exited() -> str | None:
            return exit_file.read_text().strip() if exit_file.exists() else None

        assert await eventually(exited, timeout=15) == "0"
    finally:
        await terminal.kill()
