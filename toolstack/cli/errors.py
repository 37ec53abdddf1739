"""How the CLI reports errors: one line and a documented exit code, or with ``--json`` one JSON object.

Exit codes: 0 success; 1 error (unknown VM, hypervisor failure, bad repository...); 2 usage (bad option or
value); 3 conflict (concurrent changes could not be merged, or histories with no common ancestor: another
pool's is ``HistoriesUnrelated``, naming what to check); 4 busy (another operation holds the VM); 5 rejected
(``pull`` reverted invalid edits, each named with commit, author, path and error: ``RejectedEdits``); 6
history rewritten (the remote's main was squashed by ``gc``, or a ``gc`` here never reached it; nothing
changed; run ``toolstack pull --resync``: ``HistoryRewritten``); 7 unrequested removal (a push would delete
VMs that no operation deleted; nothing pushed: ``UnrequestedRemoval``); 8 destructive plan refused
(``reconcile``, ``rollback`` or ``pull`` would stop or undefine domains and was not confirmed: the plan is
printed, nothing of it applied: ``DestructivePlanRefused``).

An error goes to stderr, as ``error: MESSAGE`` (click's usage errors keep click's own text), or with
``--json`` (before or after the subcommand) as one line ``{"error": {"code": EXIT_CODE, "message": ...,
"type": ...}}``, ``type`` naming the error (``VMNotFound``, ``NoSuchOption``...). Stdout keeps the command's
result only: a refused destructive plan (exit 8) is printed there, with ``"refused": true`` under ``--json``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import click

from toolstack.cli.context import Context, F
from toolstack.cli.output import dumps, emit

EXIT_ERROR, EXIT_USAGE, EXIT_CONFLICT, EXIT_BUSY = 1, 2, 3, 4
# The errors' own exit_code (toolstack.errors), for scripts: RejectedEdits, HistoryRewritten,
# UnrequestedRemoval, DestructivePlanRefused.
EXIT_REJECTED, EXIT_REWRITTEN, EXIT_UNREQUESTED_REMOVAL, EXIT_DESTRUCTIVE_REFUSED = 5, 6, 7, 8


class Failure(click.ClickException):
    """An error as the CLI reports it: its message, its exit code and its type (the error's class name)."""

    def __init__(self, message: str, exit_code: int, kind: str, as_json: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind
        self.as_json = as_json

    def record(self) -> dict[str, Any]:
        return {"error": {"code": self.exit_code, "message": self.message, "type": self.kind}}

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(dumps(self.record()) if self.as_json else f"error: {self.message}", file=file, err=True)


def handled(command: F) -> F:
    """Turn the layers' errors into one-line messages and documented exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as err:
            code = exit_code(err)
            if code is None:
                raise
            raise Failure(str(err), code, type(err).__name__) from err

    return wrapper  # type: ignore[return-value]


def exit_code(err: Exception) -> int | None:
    """The exit code of one of the layers' errors (None: not theirs, a bug to show with its traceback). A
    refused plan that nobody saw yet is printed first: it is the command's output."""
    # Imported here, where an error was raised: by then the command has loaded these layers.
    from drivers import DriverError
    from store import Conflict, HistoryLost, StoreError, UnrelatedHistories
    from toolstack.cli.plans import plan_lines
    from toolstack.errors import DestructivePlanRefused, ToolstackError

    if isinstance(err, DestructivePlanRefused) and not err.declined:
        state = click.get_current_context().find_object(Context)
        as_json = state is not None and state.json
        record = {**err.plan.to_dict(), "refused": True}
        if err.rejections:  # a refused pull still names the invalid edits it reverted
            record["rejections"] = [r.to_dict() for r in err.rejections]
        lines = [*plan_lines(err.plan, True), *(f"rejected {r.describe()}" for r in err.rejections)]
        emit(record, as_json, "\n".join(lines))
    if isinstance(err, ToolstackError):
        return err.exit_code
    if isinstance(err, HistoryLost):
        return EXIT_ERROR
    if isinstance(err, Conflict | UnrelatedHistories):  # histories that cannot be merged, as git refuses
        return EXIT_CONFLICT
    if isinstance(err, DriverError | StoreError | ValueError):
        return EXIT_ERROR
    return None


def json_requested(args: Sequence[str]) -> bool:
    """Whether a command line asks for ``--json`` (before ``--``), wherever it stands: read from the words,
    as a usage error may come before the option is parsed."""
    words = list(args)
    return "--json" in (words[: words.index("--")] if "--" in words else words)


@contextlib.contextmanager
def reporting(as_json: Callable[[], bool]) -> Iterator[None]:
    """Let the click errors raised inside through, as JSON :class:`Failure` (same exit code) when
    ``as_json()``: click shows them and exits."""
    try:
        yield
    except Failure as err:
        err.as_json = err.as_json or as_json()
        raise
    except click.ClickException as err:
        if not as_json():
            raise
        raise Failure(err.format_message(), err.exit_code, type(err).__name__, as_json=True) from err
