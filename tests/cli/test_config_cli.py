"""Configuration: flags > PROMESA_* > the profile file, the token never printed, the `local`
profile `make run` writes once; and shell completion."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from devtools.run import DEV_TOKENS, local_profile
from promesa_cli import config
from tests.cli.conftest import clean_env, run_cli

SECRET = "s3cr3t-token-value"


def jwt_for(subject: str) -> str:
    """A token shaped like a JWT (unsigned: the CLI only reads its subject)."""
    claims = base64.urlsafe_b64encode(json.dumps({"sub": subject}).encode()).decode()
    return f"eyJhbGciOiJub25lIn0.{claims.rstrip('=')}.signature"


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config.save(
        config.Profile(
            name="work",
            contacts="files:1",
            followup="files:3",
            token=SECRET,
            user="agent-7",
            time_zone="Europe/London",
        ),
        path,
    )
    env = {"PROMESA_CONTACTS": "env:1", "PROMESA_INTERACTIONS": "env:2"}

    profile = config.resolve(flags={"contacts": "flag:1", "user": None}, environ=env, path=path)

    assert profile.name == "work"  # the file's default: the first profile saved
    assert profile.contacts == "flag:1"
    assert profile.interactions == "env:2"
    assert profile.followup == "files:3"
    assert profile.user == "agent-7"
    assert profile.time_zone == "Europe/London"
    assert SECRET not in repr(profile)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_user_of_a_jwt_is_its_subject(tmp_path: Path) -> None:
    profile = config.resolve(
        flags={"token": jwt_for("agent-9"), "user": "someone-else"},
        environ={},
        path=tmp_path / "none.toml",
    )

    assert profile.user == "agent-9"


def test_a_wrong_setting_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="PROMESA_TIME_ZONE"):
        config.resolve(environ={"PROMESA_TIME_ZONE": "Mars/Olympus"}, path=tmp_path / "x.toml")
    with pytest.raises(config.ConfigError, match="no profile 'nope'"):
        config.resolve("nope", environ={}, path=tmp_path / "x.toml")


def test_config_set_show_and_use_never_print_the_token(tmp_path: Path) -> None:
    path = tmp_path / "promesa.toml"
    env = clean_env(path)

    typed = run_cli(["config", "set", "token"], env, input=SECRET + "\n")  # a hidden prompt
    assert typed.exit_code == 0, typed
    assert run_cli(["config", "set", "user", "agent-1"], env).exit_code == 0
    assert run_cli(["config", "set", "time-zone", "Europe/Madrid"], env).exit_code == 0
    assert run_cli(["--profile", "lead", "config", "set", "token", "other"], env).exit_code == 0

    shown = run_cli(["config", "show", "--json"], env)
    human = run_cli(["config", "show"], env)
    listed = run_cli(["config", "list", "--json"], env)

    assert shown.exit_code == 0, shown
    assert shown.json()["user"] == "agent-1"
    assert shown.json()["time_zone"] == "Europe/Madrid"
    assert shown.json()["token"] == "s3c… (18 characters)"
    assert shown.json()["config_file"] == str(path)
    assert listed.json() == {"default": "default", "profiles": ["default", "lead"]}
    for out in (typed, shown, human, listed):
        assert SECRET not in out.stdout + out.stderr
    assert SECRET in path.read_text()  # stored, for the commands to use

    assert run_cli(["config", "use", "lead"], env).exit_code == 0
    assert run_cli(["config", "list", "--json"], env).json()["default"] == "lead"
    unknown = run_cli(["config", "use", "nobody"], env)
    assert unknown.exit_code == 10, unknown
    assert "no profile 'nobody'" in unknown.stderr


def test_a_broken_profile_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "promesa.toml"
    path.write_text("default = [\n")

    done = run_cli(["promises", "mine", "--json"], clean_env(path))

    assert done.exit_code == 10, done
    assert done.error()["code"] == "CONFIG"
    assert str(path) in done.error()["message"]


def test_mine_without_a_user_says_how_to_set_one(tmp_path: Path) -> None:
    done = run_cli(
        ["promises", "mine"], clean_env(tmp_path / "p.toml", PROMESA_TOKEN="dev-agent-token")
    )

    assert done.exit_code == 10, done
    assert "promesa config set user" in done.stderr


def test_make_run_writes_the_local_profile_only_once(tmp_path: Path) -> None:
    path = tmp_path / "promesa" / "config.toml"
    environ = {"PROMESA_CONFIG": str(path), "CRM_CONTACTS_GRPC_PORT": "6001"}

    first = local_profile(environ, "127.0.0.1", DEV_TOKENS)
    config.set_entry("local", "user", "agent-2", path)  # the agent changes it
    second = local_profile(environ, "127.0.0.1", DEV_TOKENS)

    assert "wrote profile 'local'" in first[0]
    assert "promesa demo" in first[1] and "promesa desk" in first[1]
    assert "wrote" not in second[0]
    profile = config.resolve(environ={"PROMESA_CONFIG": str(path)})
    assert profile.name == "local"
    assert profile.contacts == "127.0.0.1:6001"
    assert profile.followup == "127.0.0.1:50053"
    assert profile.token == "dev-agent-token"
    assert profile.user == "agent-2"  # kept: written only when missing
    assert local_profile(environ, "127.0.0.1", "my-token=me:agent") == []  # not the dev tokens


def test_shell_completion_is_offered(tmp_path: Path) -> None:
    done = run_cli(["--show-completion", "bash"], clean_env(tmp_path / "p.toml"))

    assert done.exit_code == 0, done
    assert "_PROMESA_COMPLETE" in done.stdout

    values = run_cli(
        [],
        clean_env(
            tmp_path / "p.toml",
            _PROMESA_COMPLETE="complete_bash",
            COMP_WORDS="promesa log some-contact --type com",
            COMP_CWORD="4",
        ),
    )
    assert values.stdout.split() == ["complaint"]


def test_a_command_without_a_token_says_how_to_give_one(tmp_path: Path) -> None:
    done = run_cli(["contacts", "find", "Lucía", "--json"], clean_env(tmp_path / "p.toml"))

    assert done.exit_code == 10, done
    assert "PROMESA_TOKEN" in done.error()["message"]
