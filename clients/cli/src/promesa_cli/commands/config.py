"""`promesa config`: the profile file (targets, token, TLS, user, time zone); the token is never
printed, and typed at a hidden prompt rather than on the command line when asked."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from promesa_cli import config
from promesa_cli.exitcodes import ExitCode
from promesa_cli.render import print_json
from promesa_cli.session import fail, session, wants_json

app = typer.Typer(help="Profiles: where to connect, as whom, in which time zone.")

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]


def _target(ctx: typer.Context, profile: str | None) -> str:
    """The stored profile a change applies to: --profile here, the global one, the file's
    default, or "default"."""
    state = session(ctx)
    try:
        chosen = profile or state.profile_name or config.load_file().default
    except config.ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG, state.json_output)
    return chosen or config.DEFAULT_PROFILE


@app.command()
def show(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The profile in force, after flags and PROMESA_* variables (the token masked)."""
    state = wants_json(ctx, json_output)
    shown = state.profile.shown()
    if state.json_output:
        print_json(state.out, {**shown, "config_file": str(config.config_path())})
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in shown.items():
        grid.add_row(key, str(value) if value != "" else "-")
    grid.add_row("config file", str(config.config_path()))
    state.out.print(grid)


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """The profiles in the file; * marks the default."""
    state = wants_json(ctx, json_output)
    try:
        stored = config.load_file()
    except config.ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG, state.json_output)
    if state.json_output:
        print_json(state.out, {"default": stored.default, "profiles": sorted(stored.profiles)})
        return
    if not stored.profiles:
        state.out.print(f"No profiles in {stored.path} yet: `promesa config set token`.")
    for name in sorted(stored.profiles):
        state.out.print(("* " if name == stored.default else "  ") + name)


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help=", ".join(config.SETTINGS))],
    value: Annotated[
        str | None, typer.Argument(help="Omitted for the token: asked at a hidden prompt.")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Which stored profile.")] = None,
) -> None:
    """Set one setting of a stored profile (made if missing; the first one is the default)."""
    state = session(ctx)
    key = key.replace("-", "_")
    if value is None:
        if key != "token":
            raise typer.BadParameter("a value is needed", param_hint="VALUE")
        value = typer.prompt("Token", hide_input=True)
    name = _target(ctx, profile)
    try:
        config.set_entry(name, key, value)
    except config.ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG, state.json_output)
    shown = config.mask(value) if key == "token" else value
    state.out.print(f"profile {name}: {key} = {shown}  ({config.config_path()})")


@app.command()
def use(ctx: typer.Context, name: Annotated[str, typer.Argument(help="A stored profile.")]) -> None:
    """Make a stored profile the default."""
    state = session(ctx)
    try:
        config.use(name)
    except config.ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG, state.json_output)
    state.out.print(f"default profile: {name}")


@app.command()
def path() -> None:
    """Where the profile file is ($PROMESA_CONFIG to choose another)."""
    typer.echo(str(config.config_path()))
