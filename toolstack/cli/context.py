"""The options every command shares (``--repo``, ``--driver``, ``--host``, ``--author``, ``--json``) and the
context that carries them to the commands.

The global options are the ``toolstack`` group's, and every command below it accepts them too, after its
name (``toolstack vm list --json``, as git and virsh users expect); there they are hidden from the
command's own help. Given twice, the last one wins: one after the subcommand overrides one before it. A
command with an option of the same name keeps its own (``serve --host`` is the address to listen on,
``agent --host`` this host's name, ``xenstored --repo`` the daemon's repository).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from toolstack.cli.config import default_driver, default_host, default_repo, operator_identity

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("toolstack.cli")

# (declarations, attributes) of each global option, in the order `toolstack --help` lists them.
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--repo",),
        {"type": click.Path(), "help": "State repository [$TOOLSTACK_REPO, config file, ./toolstack.git]"},
    ),
    (
        ("--driver",),
        {"help": "Hypervisor URI [$TOOLSTACK_DRIVER, config file, the simulator beside the repo]"},
    ),
    (("--host",), {"help": "This host's name in the state repository [config file, hostname]"}),
    (("--author",), {"help": "Operator recorded on commits [config file, git user, $USER]"}),
    (("--json", "as_json"), {"is_flag": True, "help": "Machine-readable output"}),
    (("-v", "--verbose"), {"count": True, "help": "Log more: -v info, -vv debug (to stderr)"}),
    (("-q", "--quiet"), {"count": True, "help": "Log less: -q errors only"}),
    (
        ("--log-format",),
        {"type": click.Choice(["text", "json"]), "help": "Log lines as text or one JSON object each [text]"},
    ),
)
LOGGING_OPTIONS = ("verbose", "quiet", "log_format")


# libvirt's test driver lives inside the process that opens it: each CLI command gets a fresh one, empty
# (test:///default) or loaded from the file the URI names (test:///abs/file.xml), which it never writes.
IN_PROCESS_NOTICE = (
    "note: {uri} is libvirt's in-process test hypervisor: it starts {start} in every toolstack command and "
    "forgets its domains when the command exits (a domain created by one command is not there for the "
    "next: 'no such domain'). For the CLI use sim:///DIR or qemu:///system; {uri} is for tests that open "
    "the driver in one process."
)


def in_process_notice(uri: str) -> str | None:
    """What the CLI says on stderr about ``uri`` if it is libvirt's in-process test driver, else None.

    ``test:///default`` and ``test:///FILE.xml`` are in-process; ``test+unix:///...`` (a daemon's test
    driver, which keeps its domains between connections) and ``test://host/...`` are not.
    """
    parts = urlsplit(uri)
    if parts.scheme != "test" or parts.netloc:
        return None
    start = "empty" if parts.path == "/default" else f"from {parts.path} (and never writes it)"
    return IN_PROCESS_NOTICE.format(uri=uri, start=start)


class Context:
    """Options shared by every command; the toolstack is opened on first use."""

    def __init__(
        self,
        repo: str | None = None,
        driver: str | None = None,
        host: str | None = None,
        author: str | None = None,
        as_json: bool = False,
        verbose: int = 0,
        quiet: int = 0,
        log_format: str | None = None,
    ):
        self.repo = os.path.abspath(repo or default_repo())
        self.driver = driver
        self.host = host
        self.author = author
        self.json = as_json
        self.verbose = verbose
        self.quiet = quiet
        self.log_format = log_format or "text"
        self._toolstack: Any = None
        self._bound = contextlib.ExitStack()  # the log fields bound while the toolstack is open

    @property
    def driver_uri(self) -> str:
        """``--driver``, else the default for the repository (:func:`toolstack.cli.config.default_driver`)."""
        return self.driver or default_driver(self.repo)

    def override(self, option: str, value: Any) -> None:
        """Take a global option given after the subcommand (its parameter name, e.g. ``as_json``)."""
        if option == "repo":
            self.repo = os.path.abspath(value)
        elif option in ("verbose", "quiet"):
            setattr(self, option, getattr(self, option) + value)  # `-v vm list -v` is -vv
        else:
            setattr(self, "json" if option == "as_json" else option, value)
        if option in LOGGING_OPTIONS:
            self.configure_logging()

    def configure_logging(self) -> None:
        """Log to stderr at the level -v/-q ask for, as text or JSON (``--log-format``)."""
        from toolstack import logs

        logs.configure(logs.level_for(self.verbose, self.quiet), self.log_format)

    def toolstack(self) -> Any:
        """The toolstack on this pool's state repository (never created here: ``toolstack init`` does)."""
        from toolstack import logs
        from toolstack.ops import Toolstack  # imported on use: `--help` stays fast

        if self._toolstack is None:
            notice = in_process_notice(self.driver_uri)
            if notice is not None:
                click.echo(notice, err=True)
            author = self.author or operator_identity()
            # Every line logged from here on says who acts, as serve's say the request's user: the author's
            # name, without the email (`Ops <ops@example.org>` logs as user=Ops).
            self._bound.enter_context(logs.bound(user=author.partition(" <")[0].strip() or author))
            log.debug("opening %s with driver %s as %s", self.repo, self.driver_uri, author)
            self._toolstack = Toolstack.open(
                self.repo, self.driver_uri, host=self.host or default_host(), author=author
            )
            for task in self._toolstack.recovered:
                click.echo(
                    f"recovered task {task.id} ({task.operation} {task.vm_name}): {task.status.value}",
                    err=True,
                )
        return self._toolstack

    def close(self) -> None:
        if self._toolstack is not None:
            self._toolstack.close()
        self._bound.close()


pass_ctx = click.make_pass_decorator(Context)


def global_options(group: F) -> F:
    """The global options, as the ``toolstack`` group's own (listed in its help)."""
    for declarations, attributes in reversed(GLOBAL_OPTIONS):
        group = click.option(*declarations, **attributes)(group)
    return group


def accept_global_options(command: click.Command) -> click.Command:
    """Let ``command`` and the commands below it take the global options after their names, hidden from
    their help; a value given there overrides the shared :class:`Context`'s. An option whose name the
    command already uses stays the command's own."""
    taken = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for declarations, attributes in GLOBAL_OPTIONS:
        if declarations[0] not in taken:
            command.params.append(
                click.Option(declarations, **attributes, hidden=True, expose_value=False, callback=_override)
            )
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            accept_global_options(subcommand)
    return command


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    state = ctx.find_object(Context)
    if state is not None and param.name is not None and value not in (None, False):
        state.override(param.name, value)
    return value
