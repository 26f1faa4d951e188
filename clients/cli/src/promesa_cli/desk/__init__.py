"""`promesa desk`: the agent's day in the terminal (a Textual app), started from a Profile."""

from __future__ import annotations

import asyncio

from promesa_cli.config import ConfigError, Profile


def run(profile: Profile) -> None:
    """Opens the desk for the profile's user until the agent quits. Raises ConfigError when
    the profile cannot say whose promises to show."""
    if not profile.user:
        raise ConfigError(
            f"profile {profile.name!r} names no user: set PROMESA_USER, pass --user,"
            " or `promesa config set user ...` (a JWT's sub is used when the token is one)"
        )
    asyncio.run(_run(profile))


async def _run(profile: Profile) -> None:
    # Imported here so that `promesa --help` does not pay for loading Textual.
    from promesa_cli.desk.app import DeskApp

    async with profile.client() as client:
        await DeskApp(client, user=profile.user, zone=profile.zone).run_async()


__all__ = ["run"]
