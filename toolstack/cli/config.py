"""The CLI's defaults: the config files, the environment, and the built-in fallbacks.

Where each setting comes from, first found wins (as git: the command line, then the environment, then the
user's file, then the system's):

1. the option on the command line (``--repo``, ``--driver``, ``--host``, ``--author``; ``serve``'s own
   ``--host``, ``--port``, ``--token-file``, ``--users-file``, ``--max-body``, ``--log-level``,
   ``--metrics-textfile``; ``token``'s ``--users-file``;
   ``agent``'s ``--host``, ``--remote``, ``--interval``, ``--max-removal-share``, ``--metrics-file``);
2. the environment: ``$TOOLSTACK_REPO``, ``$TOOLSTACK_DRIVER``;
3. the user's file, ``$XDG_CONFIG_HOME/toolstack/config.toml`` (``~/.config/toolstack/config.toml``);
4. the system's file, ``/etc/toolstack/config.toml``;
5. the built-in default: ``./toolstack.git``, the simulator beside the repository, the hostname, git's
   ``user.name``/``user.email`` (else ``$USER``), ``serve`` on 127.0.0.1:8427; ``agent`` has no default
   remote.

``$TOOLSTACK_CONFIG=FILE`` reads that file instead of both (a service, a test); ``$TOOLSTACK_CONFIG=`` (empty)
reads none. A file is optional, but one that exists must be valid: an unknown key, a value of the wrong
type or bad TOML is refused with the file, the key and what was expected, before anything is done. A
relative path in a file (``repo``, ``serve.token_file``, ``serve.users_file``, ``serve.metrics_textfiles``,
``agent.metrics_file``) is relative to the file's directory.

```toml
repo = "/var/lib/toolstack/state.git"
driver = "qemu:///system"
host = "host-a"              # this host's name in the pool
author = "Ops <ops@example.org>"

[serve]
bind = "127.0.0.1"
port = 8427
token_file = "/etc/toolstack/api-token"
users_file = "/var/lib/toolstack/toolstack.api-users"  # `toolstack token add` writes it, serve reads it
max_body = 65536
log_level = "info"
# Other processes' Prometheus textfiles (or directories of *.prom) that /metrics appends:
metrics_textfiles = ["/var/lib/toolstack-xenstored/xenstore.prom", "/var/lib/toolstack/toolstack.agent.prom"]

[agent]
remote = "git://pool.example.org/state.git"   # the pool's shared state repository
interval = 1.0
max_removal_share = 0.5
metrics_file = "/var/lib/toolstack/toolstack.agent.prom"  # its Prometheus textfile [<repo>.agent.prom]
```
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

import click

REPO_ENV = "TOOLSTACK_REPO"
DRIVER_ENV = "TOOLSTACK_DRIVER"
CONFIG_ENV = "TOOLSTACK_CONFIG"
SYSTEM_CONFIG = "/etc/toolstack/config.toml"
REPO_NAME = "toolstack.git"  # in the working directory
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class ConfigFileError(click.ClickException):
    """A config file that exists but cannot be used: bad TOML, an unknown key, or a value of the wrong type.

    Attributes:
        path: The file.
        key: The dotted key at fault ("serve.port"), or None for the file as a whole.
    """

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path = path
        self.key = key

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)  # as every other CLI error


@dataclass(frozen=True)
class ServeSettings:
    """``toolstack serve``'s settings from the config files (None: not set there)."""

    bind: str | None = None
    port: int | None = None
    token_file: str | None = None
    users_file: str | None = None
    max_body: int | None = None
    log_level: str | None = None
    metrics_textfiles: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AgentSettings:
    """``toolstack agent``'s settings from the config files (None: not set there)."""

    remote: str | None = None
    interval: float | None = None
    max_removal_share: float | None = None
    metrics_file: str | None = None


@dataclass(frozen=True)
class Settings:
    """What the config files set (None: not set in any), and the files read, in the order read."""

    repo: str | None = None
    driver: str | None = None
    host: str | None = None
    author: str | None = None
    serve: ServeSettings = field(default_factory=ServeSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    files: tuple[str, ...] = ()


def _text(path: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigFileError(path, key, f"expected a non-empty string, got {value!r}")
    return value


def _path(path: str, key: str, value: Any) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(_text(path, key, value)))


def _paths(path: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigFileError(path, key, f"expected a list of paths, got {value!r}")
    return tuple(_path(path, key, item) for item in value)


def _integer(low: int, high: int) -> Any:
    def check(path: str, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigFileError(path, key, f"expected an integer from {low} to {high}, got {value!r}")
        return value

    return check


def _number(low: float, high: float) -> Any:
    def check(path: str, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ConfigFileError(path, key, f"expected a number from {low:g} to {high:g}, got {value!r}")
        return float(value)

    return check


def _log_level(path: str, key: str, value: Any) -> str:
    if value not in LOG_LEVELS:
        raise ConfigFileError(path, key, f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return str(value)


# Every key a file may hold, and how its value is checked (and read).
TOP_LEVEL = {"repo": _path, "driver": _text, "host": _text, "author": _text}
SERVE = {
    "bind": _text,
    "port": _integer(0, 65535),
    "token_file": _path,
    "users_file": _path,
    "max_body": _integer(1024, 1 << 30),
    "log_level": _log_level,
    "metrics_textfiles": _paths,
}
AGENT = {
    "remote": _text,
    "interval": _number(0.01, 86400),
    "max_removal_share": _number(0, 1),
    "metrics_file": _path,
}
TABLES = {"serve": SERVE, "agent": AGENT}


def _section(path: str, table: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    tables = set(TABLES) if not prefix else set()
    unknown = sorted(set(table) - set(schema) - tables)
    if unknown:
        known = ", ".join([*schema, *(f"[{name}]" for name in sorted(tables))])
        raise ConfigFileError(path, prefix + unknown[0], f"unknown key (known: {known})")
    return {key: schema[key](path, prefix + key, value) for key, value in table.items() if key in schema}


def read_config_file(path: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The checked top-level settings of one file, and those of each table (``serve``, ``agent``).

    Raises:
        ConfigFileError: The file cannot be read, is not TOML, or holds an unknown key or a bad value.
    """
    import tomllib  # only when a file exists: most commands run without one

    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as err:
        raise ConfigFileError(path, None, f"cannot read: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(path, None, f"not valid TOML: {err}") from err
    tables = {}
    for name, schema in TABLES.items():
        section = table.get(name, {})
        if not isinstance(section, dict):
            raise ConfigFileError(path, name, f"expected a table ([{name}])")
        tables[name] = _section(path, section, schema, f"{name}.")
    return _section(path, table, TOP_LEVEL), tables


def config_files() -> list[str]:
    """The files to read, lowest precedence first: ``$TOOLSTACK_CONFIG`` alone if set (it must exist unless
    empty), else the system's then the user's, those that exist."""
    named = os.environ.get(CONFIG_ENV)
    if named is not None:
        if named and not os.path.isfile(named):
            raise ConfigFileError(named, None, f"no such file (named by ${CONFIG_ENV})")
        return [named] if named else []
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    user = os.path.join(home, "toolstack", "config.toml")
    return [path for path in (SYSTEM_CONFIG, user) if os.path.isfile(path)]


@functools.cache
def _settings_for(files: tuple[str, ...]) -> Settings:
    top: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {name: {} for name in TABLES}
    for path in files:  # a later file overrides an earlier one, key by key
        file_top, file_tables = read_config_file(path)
        top.update(file_top)
        for name, values in file_tables.items():
            tables[name].update(values)
    return Settings(
        **top, serve=ServeSettings(**tables["serve"]), agent=AgentSettings(**tables["agent"]), files=files
    )


def settings() -> Settings:
    """What the config files set (read once per process and set of files).

    Raises:
        ConfigFileError: A file is invalid, or ``$TOOLSTACK_CONFIG`` names none.
    """
    return _settings_for(tuple(config_files()))


def default_repo() -> str:
    """``$TOOLSTACK_REPO``, else the config files' ``repo``, else ``./toolstack.git``."""
    return os.environ.get(REPO_ENV) or settings().repo or os.path.join(os.getcwd(), REPO_NAME)


def default_driver(repo: str) -> str:
    """``$TOOLSTACK_DRIVER``, else the config files' ``driver``, else the simulator kept beside the repository
    (``toolstack.git`` -> ``sim://.../toolstack.sim``)."""
    base = os.path.splitext(os.path.abspath(repo))[0]
    return os.environ.get(DRIVER_ENV) or settings().driver or f"sim://{base}.sim"


def default_host() -> str | None:
    """The config files' ``host`` (None: the toolstack takes the machine's hostname)."""
    return settings().host


def operator_identity() -> str:
    """The operator: the config files' ``author``, else git's configured user, else the login name."""
    configured = settings().author
    if configured:
        return configured
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True).stdout.strip()
        email = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip()
    except OSError:
        name = email = ""
    if name and email:
        return f"{name} <{email}>"
    return name or os.environ.get("USER") or "unknown"
