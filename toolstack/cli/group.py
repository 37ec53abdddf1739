"""The ``toolstack`` group: its global options, the table of its commands, and errors under ``--json``.

The group imports no command up front. It loads a command's module when the command runs, or when
``toolstack --help`` lists it (click's "lazy group"): ``toolstack log`` imports the history commands, the
toolstack and the store, never FastAPI (``serve``) nor libvirt (a libvirt URI's driver). A command with a
line in :data:`SUMMARIES` is listed from that line, its module not imported even then.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import click

from toolstack.cli.context import Context, accept_global_options, global_options
from toolstack.cli.errors import json_requested, reporting

# Each command of the group: the module and attribute that define it.
COMMANDS: Mapping[str, str] = {
    # VMs and their devices
    "vm": "toolstack.cli.vm:vm",
    "disk": "toolstack.cli.devices:disk",
    "nic": "toolstack.cli.devices:nic",
    "console": "toolstack.cli.console:console_command",
    # the history, plans, tasks and the raw store
    "log": "toolstack.cli.history:log_command",
    "show": "toolstack.cli.state:show_command",
    "diff": "toolstack.cli.state:diff_command",
    "rollback": "toolstack.cli.state:rollback_command",
    "reconcile": "toolstack.cli.state:reconcile_command",
    "task": "toolstack.cli.state:task",
    "store": "toolstack.cli.state:store_group",
    "fsck": "toolstack.cli.state:fsck_command",
    "events": "toolstack.cli.state:events_command",
    # the pool: creating and joining it, sync between hosts, the agent
    "init": "toolstack.cli.sync:init_command",
    "clone": "toolstack.cli.sync:clone_command",
    "pull": "toolstack.cli.sync:pull_command",
    "push": "toolstack.cli.sync:push_command",
    "gc": "toolstack.cli.sync:gc_command",
    "agent": "toolstack.cli.sync:agent_command",
    # the daemons
    "serve": "toolstack.cli.serve:serve",
    "xenstored": "xenstored.cli:xenstored",
    # the API's users
    "token": "toolstack.cli.tokens:token",
}

# `toolstack --help`'s line for commands whose modules are costly to import (xenstored.cli loads the
# daemon); tests/toolstack/test_cli_package.py checks each against the command's own help.
SUMMARIES: Mapping[str, str] = {
    "xenstored": "Serve the xenstore wire protocol on SOCKET, keeping the state in a git repository.",
}


class ToolstackGroup(click.Group):
    """A group whose commands are imported on use (``lazy``: name -> ``"module:attribute"``), each taking
    the global options after its name too, and whose errors are JSON under ``--json``."""

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, str] | None = None,
        summaries: Mapping[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.summaries = dict(summaries or {})
        self._listing = False

    # -- commands imported on use ----------------------------------------------------------------------
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            if self._listing and cmd_name in self.summaries:  # listed from its summary, not imported
                return click.Command(cmd_name, help=self.summaries[cmd_name])
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(accept_global_options(command), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with self._listed():
            super().format_commands(ctx, formatter)

    @contextlib.contextmanager
    def _listed(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.list_commands(ctx):
            for name in self.lazy:  # an unknown name: load them all, for click's "Did you mean ...?"
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    # -- errors under --json ---------------------------------------------------------------------------
    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        as_json = json_requested(args)  # from the words: parsing them may be what fails
        with reporting(lambda: as_json):
            ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[_JSON_REQUESTED] = as_json
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        def as_json() -> bool:  # also --json after the subcommand, parsed by then
            state = ctx.find_object(Context)
            return ctx.meta.get(_JSON_REQUESTED, False) or (state is not None and state.json)

        with reporting(as_json):
            return super().invoke(ctx)


_JSON_REQUESTED = "toolstack.cli.json_requested"


def _print_version(ctx: click.Context) -> None:
    from toolstack import __version__

    click.echo(f"toolstack {__version__}")  # as `git --version` prints "git version 2.39.2"
    ctx.exit()


@click.group(
    cls=ToolstackGroup,
    lazy=COMMANDS,
    summaries=SUMMARIES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Print the version and exit",
)
@global_options
@click.pass_context
def main(
    ctx: click.Context,
    repo: str | None,
    driver: str | None,
    host: str | None,
    author: str | None,
    as_json: bool,
    verbose: int,
    quiet: int,
    log_format: str | None,
) -> None:
    """A git-native toolstack: every VM change is a commit in a git repository."""
    state = Context(repo, driver, host, author, as_json, verbose, quiet, log_format)
    state.configure_logging()
    ctx.obj = state
    ctx.call_on_close(state.close)
