"""The ``toolstack`` command line (``toolstack = "toolstack.cli:main"``; also ``python -m toolstack.cli``).

The modules, from the group down:

- :mod:`~toolstack.cli.group`: the ``toolstack`` group, its global options, and the table naming the module
  of each command; it imports a command's module only when that command runs (or ``--help`` lists it);
- :mod:`~toolstack.cli.vm`, :mod:`~toolstack.cli.devices`, :mod:`~toolstack.cli.history` (``log``, read
  without opening the toolstack), :mod:`~toolstack.cli.state` (show, diff, rollback, plans, tasks, the raw
  store, fsck, events), :mod:`~toolstack.cli.sync` (init, clone, pull, push, gc, agent) and
  :mod:`~toolstack.cli.serve`: the commands (``xenstored`` is :mod:`xenstored.cli`'s);
- :mod:`~toolstack.cli.context` (the shared options and the toolstack they open),
  :mod:`~toolstack.cli.errors` (exit codes, errors as text or JSON), :mod:`~toolstack.cli.plans`
  (printing and confirming plans), :mod:`~toolstack.cli.output` (tables and JSON) and
  :mod:`~toolstack.cli.config` (defaults): what the commands share.

A new command goes in the module of its kind (or a new one) as a plain ``@click.command``, taking
``@pass_ctx`` and ``@handled``; then one line in :data:`toolstack.cli.group.COMMANDS` names it. A command
module never imports the group, and imports at its top only click and these shared modules: the
toolstack, the store, the drivers, FastAPI are imported inside the command that uses them, so that
``toolstack --help`` imports none of them (tests/toolstack/test_cli_package.py).
"""

from toolstack.cli.group import main

__all__ = ["main"]
