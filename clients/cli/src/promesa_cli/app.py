"""The `promesa` command: the global options (profile, targets, token, output) and every
command group. Settings come from flags, then PROMESA_* variables, then the profile file."""

from __future__ import annotations

from typing import Annotated

import typer

from promesa_cli.commands import config as config_cmd
from promesa_cli.commands import contacts, interactions, promises
from promesa_cli.commands.demo import demo
from promesa_cli.commands.stats import stats
from promesa_cli.config import ConfigError
from promesa_cli.exitcodes import HELP as EXIT_HELP
from promesa_cli.exitcodes import ExitCode, exit_code
from promesa_cli.session import Session, describe, fail, session
from promesa_client import errors

app = typer.Typer(
    name="promesa",
    help="Promesa from the terminal: contacts, interactions, the promises made to customers.",
    epilog=EXIT_HELP,
    no_args_is_help=True,
    # Locals of a failing frame may hold the token: never print them.
    pretty_exceptions_show_locals=False,
)
app.add_typer(contacts.app, name="contacts")
app.add_typer(promises.app, name="promises")
app.add_typer(config_cmd.app, name="config")
app.command("log")(interactions.log)
app.command("rate")(interactions.rate)
app.command("stats")(stats)
app.command("demo")(demo)


@app.callback()
def main_options(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-P", help="A profile of the config file (PROMESA_PROFILE)."),
    ] = None,
    contacts_target: Annotated[
        str | None, typer.Option("--contacts", help="host:port of the contacts service.")
    ] = None,
    interactions_target: Annotated[
        str | None, typer.Option("--interactions", help="host:port of the interactions service.")
    ] = None,
    followup_target: Annotated[
        str | None, typer.Option("--followup", help="host:port of the follow-up service.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Bearer token (prefer PROMESA_TOKEN: a flag shows in `ps`).",
            show_default=False,
        ),
    ] = None,
    tls: Annotated[bool | None, typer.Option("--tls/--no-tls", help="TLS to the services.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", help='Your user id: whose promises are "mine".')
    ] = None,
    time_zone: Annotated[
        str | None, typer.Option("--time-zone", help="Show times in this IANA zone.")
    ] = None,
    deadline: Annotated[
        float | None, typer.Option("--deadline", help="Seconds each call may take.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")] = False,
) -> None:
    """Promesa from the terminal."""
    state = session(ctx)
    state.profile_name = profile
    state.json_output = json_output
    state.flags = {
        "contacts": contacts_target,
        "interactions": interactions_target,
        "followup": followup_target,
        "token": token,
        "tls": tls,
        "user": user,
        "time_zone": time_zone,
        "deadline": deadline,
    }


@app.command()
def desk(ctx: typer.Context) -> None:
    """The agent's desk: open promises with live countdowns, reminders as they arrive, the
    customer's timeline; keyboard only."""
    from promesa_cli.desk import run as run_desk

    state = session(ctx)
    try:
        run_desk(state.profile)
    except ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG, state.json_output)
    except errors.PromesaError as exc:  # the desk could not start (e.g. no service answers)
        fail(describe(exc), exit_code(exc), state.json_output, status=exc.code.name)


def main() -> None:
    """The console script: a fresh Session per run."""
    app(obj=Session(), prog_name="promesa")


__all__ = ["app", "main"]
