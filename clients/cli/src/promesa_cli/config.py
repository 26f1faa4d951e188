"""Where the CLI and the desk connect, as whom, and in which time zone: one Profile, resolved
from flags, then the environment (PROMESA_*), then a profile in a TOML file.

The file is $PROMESA_CONFIG, or $XDG_CONFIG_HOME/promesa/config.toml, or
~/.config/promesa/config.toml::

    default = "local"

    [profiles.local]
    contacts = "127.0.0.1:50051"
    interactions = "127.0.0.1:50052"
    followup = "127.0.0.1:50053"
    token = "dev-agent-token"
    tls = false
    user = "agent-1"
    time_zone = "Europe/Madrid"

It holds a token, so it is written with mode 0600, and the token is never printed: a Profile's
repr leaves it out and `Profile.shown()` masks it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from promesa_client import Client

DEFAULT_PROFILE = "default"
ENV_PREFIX = "PROMESA_"
# The fields a flag, a PROMESA_<FIELD> variable or a profile entry can set.
SETTINGS = ("contacts", "interactions", "followup", "token", "tls", "user", "time_zone", "deadline")


class ConfigError(Exception):
    """A profile that cannot be used; the message names the variable, key or profile."""


def local_time_zone() -> str:
    """The machine's zone name (TZ, then /etc/localtime's target), UTC when it has none."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _valid_zone(tz):
        return tz
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    name = target.split("zoneinfo/", 1)[-1]
    return name if _valid_zone(name) else "UTC"


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def user_from_token(token: str) -> str:
    """The `sub` of a JWT (read, not verified: the services verify it), or "" for a token
    that is not a JWT, such as the development tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return ""
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else ""


@dataclass(frozen=True)
class Profile:
    """A resolved connection: targets, credentials, who "mine" means and the zone times are
    shown in. `user` is already resolved: a JWT's `sub` wins over a configured user, since
    that is who the services see."""

    name: str = DEFAULT_PROFILE
    contacts: str = "127.0.0.1:50051"
    interactions: str = "127.0.0.1:50052"
    followup: str = "127.0.0.1:50053"
    token: str = field(default="", repr=False)
    tls: bool = False
    user: str = ""
    time_zone: str = "UTC"
    deadline: float = 10.0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def client(self) -> Client:
        """An SDK client for this profile (async; `async with profile.client() as c:`)."""
        from promesa_client import Client

        if not self.token:
            raise ConfigError(
                f"profile {self.name!r} has no token: set PROMESA_TOKEN, pass --token,"
                " or `promesa config set token ...`"
            )
        return Client(
            contacts=self.contacts,
            interactions=self.interactions,
            followup=self.followup,
            token=self.token,
            tls=self.tls,
            deadline=self.deadline,
        )

    def shown(self) -> dict[str, Any]:
        """The profile as it may be printed: the token masked."""
        data = asdict(self)
        data["token"] = mask(self.token)
        return data

    def entries(self) -> dict[str, Any]:
        """What `save` writes: every setting but the name."""
        data = asdict(self)
        del data["name"]
        return data


def mask(token: str) -> str:
    """Enough to tell tokens apart, never enough to use one."""
    if not token:
        return "(none)"
    return f"{token[:3]}… ({len(token)} characters)"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("PROMESA_CONFIG"):
        return Path(env["PROMESA_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "promesa" / "config.toml"


@dataclass(frozen=True)
class ConfigFile:
    """The profiles in the file by name (raw entries, unresolved), and which one is the
    default."""

    path: Path
    default: str = ""
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def load_file(path: Path | None = None) -> ConfigFile:
    """The file's profiles; an empty ConfigFile when there is no file yet."""
    path = config_path() if path is None else path
    if not path.exists():
        return ConfigFile(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(f"{path}: [profiles.<name>] tables expected")
    for name, entries in profiles.items():
        unknown = set(entries) - set(SETTINGS)
        if unknown:
            raise ConfigError(f"{path}: profile {name!r} has unknown keys {sorted(unknown)}")
    default = data.get("default", "")
    if not isinstance(default, str):
        raise ConfigError(f"{path}: default must be a profile name")
    return ConfigFile(path, default, profiles)


def _coerce(key: str, value: Any, where: str) -> Any:
    """A setting from a file, a variable or a flag, as its Profile type."""
    kind = {f.name: f.type for f in fields(Profile)}[key]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: true or false expected, got {value!r}")
    if kind == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: a number of seconds expected, got {value!r}") from None
        if number <= 0:
            raise ConfigError(f"{where}: must be more than 0 seconds")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{where}: a string expected, got {value!r}")
    if key == "time_zone" and not _valid_zone(value):
        raise ConfigError(f"{where}: unknown time zone {value!r} (e.g. Europe/Madrid)")
    return value


def resolve(
    name: str | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Profile:
    """The profile to use: flags (None = not given) > PROMESA_<SETTING> > the file's profile
    `name` (or PROMESA_PROFILE, or the file's default) > built-in defaults (the `make run`
    addresses, the machine's time zone). A profile asked for by name must exist."""
    env = os.environ if environ is None else environ
    config = load_file(config_path(env) if path is None else path)
    chosen = name or env.get("PROMESA_PROFILE") or config.default or DEFAULT_PROFILE
    explicit = bool(name or env.get("PROMESA_PROFILE"))
    if chosen not in config.profiles and explicit:
        known = ", ".join(sorted(config.profiles)) or "none"
        raise ConfigError(f"no profile {chosen!r} in {config.path} (profiles: {known})")
    values: dict[str, Any] = {"name": chosen, "time_zone": local_time_zone()}
    for key, value in config.profiles.get(chosen, {}).items():
        values[key] = _coerce(key, value, f"{config.path} [profiles.{chosen}] {key}")
    for key in SETTINGS:
        variable = ENV_PREFIX + key.upper()
        if env.get(variable) is not None and env[variable] != "":
            values[key] = _coerce(key, env[variable], variable)
    for key, value in (flags or {}).items():
        if key not in SETTINGS:
            raise ValueError(f"not a setting: {key}")
        if value is not None:
            values[key] = _coerce(key, value, "--" + key.replace("_", "-"))
    profile = Profile(**values)
    sub = user_from_token(profile.token)
    return replace(profile, user=sub) if sub else profile


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def save(profile: Profile, path: Path | None = None, *, make_default: bool = False) -> Path:
    """Writes (or replaces) this profile in the file, keeping the others; the first profile
    written becomes the default. Mode 0600: the file holds tokens."""
    path = config_path() if path is None else path
    config = load_file(path)
    profiles = {n: dict(p) for n, p in config.profiles.items()}
    profiles[profile.name] = profile.entries()
    default = profile.name if make_default or not config.default else config.default
    lines = [f"default = {_toml_value(default)}"]
    for name, entries in profiles.items():
        lines += ["", f"[profiles.{json.dumps(name)}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entries.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(temporary, path)
    return path


def has_profile(name: str, path: Path | None = None) -> bool:
    return name in load_file(path).profiles


def stored(name: str, path: Path | None = None) -> Profile:
    """The profile as the file has it (no environment, no flags); a new one when missing."""
    config = load_file(path)
    values: dict[str, Any] = {"name": name, "time_zone": local_time_zone()}
    for key, value in config.profiles.get(name, {}).items():
        values[key] = _coerce(key, value, f"{config.path} [profiles.{name}] {key}")
    return Profile(**values)


def set_entry(name: str, key: str, value: Any, path: Path | None = None) -> Profile:
    """Sets one setting of a stored profile (creating it), checked as `resolve` checks it."""
    if key not in SETTINGS:
        raise ConfigError(f"unknown setting {key!r}; settings: {', '.join(SETTINGS)}")
    profile = replace(stored(name, path), **{key: _coerce(key, value, key)})
    save(profile, path)
    return profile


def use(name: str, path: Path | None = None) -> None:
    """Makes a stored profile the default."""
    if not has_profile(name, path):
        raise ConfigError(f"no profile {name!r} in {load_file(path).path}")
    save(stored(name, path), path, make_default=True)
