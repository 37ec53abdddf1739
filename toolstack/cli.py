"""The ``toolstack`` command line: its main group, shared options and context, confirmation of destructive
plans, and the translation of errors into messages and exit codes. The commands live in ``cli_vm`` (VMs),
``cli_devices`` (disks and NICs), ``cli_state`` (history, plans, tasks, raw store) and ``cli_sync``.

Exit codes: 0 success; 1 error (unknown VM, hypervisor failure, bad repository...); 2 usage (bad option or
value); 3 conflict (concurrent changes could not be merged); 4 busy (another operation holds the VM);
5 rejected (``pull`` reverted invalid edits, each named with commit, author, path and error:
``RejectedEdits``); 6 history rewritten (the remote's main was squashed by ``gc``; nothing changed; run
``toolstack pull --resync``: ``HistoryRewritten``); 7 unrequested removal (a push would delete VMs that no
operation deleted; nothing pushed: ``UnrequestedRemoval``); 8 destructive plan refused (``reconcile``,
``rollback`` or ``pull`` would stop or undefine domains and was not confirmed: the plan is printed, nothing of
it applied: ``DestructivePlanRefused``).

The deletion guard: a plan that would stop or undefine domains is shown first; on a terminal (stdin and
stdout are TTYs) the command asks, ``--yes`` skips the question, and without a terminal and without ``--yes``
it refuses with exit code 8. Explicit single-VM requests (``vm delete``, ``vm destroy``, ``vm shutdown``)
are the operator's own order, as ``virsh undefine`` is, and are not asked about.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drivers import DriverError
from store import Conflict, HistoryLost, StoreError
from toolstack.errors import DestructivePlanRefused, ToolstackError
from toolstack.output import emit

if TYPE_CHECKING:
    from toolstack.models import VM
    from toolstack.reconcile import Confirm, Plan

EXIT_ERROR, EXIT_USAGE, EXIT_CONFLICT, EXIT_BUSY = 1, 2, 3, 4
EXIT_REJECTED, EXIT_REWRITTEN, EXIT_UNREQUESTED_REMOVAL = 5, 6, 7  # the errors' own exit_code, for scripts
EXIT_DESTRUCTIVE_REFUSED = DestructivePlanRefused.exit_code  # 8
F = TypeVar("F", bound=Callable[..., Any])


def default_repo() -> str:
    return os.environ.get("TOOLSTACK_REPO") or os.path.join(os.getcwd(), "toolstack.git")


def default_driver(repo: str) -> str:
    base = os.path.splitext(os.path.abspath(repo))[0]
    return os.environ.get("TOOLSTACK_DRIVER") or f"sim://{base}.sim"


def operator_identity() -> str:
    """The operator: git's configured user, else the login name."""
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True).stdout.strip()
        email = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip()
    except OSError:
        name = email = ""
    if name and email:
        return f"{name} <{email}>"
    return name or os.environ.get("USER") or "unknown"


class Context:
    """Options shared by every command; the toolstack is opened on first use."""

    def __init__(self, repo: str, driver: str | None, host: str | None, author: str | None, as_json: bool):
        self.repo = repo
        self.driver_uri = driver or default_driver(repo)
        self.host = host
        self.author = author
        self.json = as_json
        self._toolstack: Any = None

    def toolstack(self) -> Any:
        """The toolstack on this pool's state repository (never created here: ``toolstack init`` does)."""
        from toolstack.ops import Toolstack  # imported on use: `--help` stays fast

        if self._toolstack is None:
            self._toolstack = Toolstack.open(
                self.repo,
                self.driver_uri,
                host=self.host,
                author=self.author or operator_identity(),
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


def plan_lines(plan: Plan, would: bool) -> list[str]:
    """A plan for people: one line per action (``would ...`` when not applied), then what it found."""
    lines = [f"{'would ' if would else ''}{a.describe()}" for a in plan.actions] or ["nothing to do"]
    lines += [f"withheld: {a.describe()}" for a in plan.withheld]
    lines += [f"drift: {d}" for d in plan.drift] + [f"unknown: {u}" for u in plan.unknown]
    lines += [f"foreign: {f}" for f in plan.foreign]
    lines += [f"invalid: {i}" for i in plan.invalid] + [f"busy: {b}" for b in plan.busy]
    lines += [f"error: {e}" for e in plan.errors]
    return lines


def interactive() -> bool:
    """Whether someone can answer a question: stdin and stdout are terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def confirmation(yes: bool) -> Confirm:
    """How a command's destructive plan is confirmed: ``--yes``; else a terminal's prompt, which shows the
    plan and defaults to no; else (a script, a pipe) nobody is asked and the plan is refused."""
    if yes:
        return True
    if not interactive():
        return False

    def ask(plan: Plan) -> bool:
        # On stderr: stdout stays the command's result (its --json document included).
        click.echo("\n".join(plan_lines(plan, would=True)), err=True)
        return click.confirm(
            f"{len(plan.destructive)} of these actions stop or undefine domains. Apply the plan?",
            default=False,
            err=True,
        )

    return ask


def handled(command: F) -> F:
    """Turn the layers' errors into one-line messages and documented exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DestructivePlanRefused as err:
            if not err.declined:  # nobody saw it yet: the refused plan is the command's output
                state = click.get_current_context().find_object(Context)
                as_json = state is not None and state.json
                record = {**err.plan.to_dict(), "refused": True}
                if err.rejections:
                    record["rejections"] = [r.to_dict() for r in err.rejections]
                lines = [*plan_lines(err.plan, True), *(f"rejected {r.describe()}" for r in err.rejections)]
                emit(record, as_json, "\n".join(lines))
            _fail(str(err), err.exit_code)
        except ToolstackError as err:
            _fail(str(err), err.exit_code)
        except HistoryLost as err:
            _fail(str(err), EXIT_ERROR)
        except Conflict as err:
            _fail(str(err), EXIT_CONFLICT)
        except (DriverError, StoreError, ValueError) as err:
            _fail(str(err), EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


pass_ctx = click.make_pass_decorator(Context)


def vm_record(vm_: VM, state: str | None = None) -> dict[str, Any]:
    return {
        "uuid": vm_.uuid,
        "name": vm_.name,
        "memory": vm_.spec.memory,
        "vcpus": vm_.spec.vcpus,
        "desired": vm_.desired.value,
        "state": state if state is not None else (vm_.observed.state if vm_.observed else None),
        "devices": [d.model_dump(mode="json") for d in vm_.spec.devices],
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo", type=click.Path(), default=None, help="State repository [$TOOLSTACK_REPO, ./toolstack.git]"
)
@click.option(
    "--driver", default=None, help="Hypervisor URI [$TOOLSTACK_DRIVER, the simulator beside the repo]"
)
@click.option("--host", default=None, help="This host's name in the state repository [hostname]")
@click.option("--author", default=None, help="Operator recorded on commits [git user, $USER]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
@click.pass_context
def main(
    ctx: click.Context,
    repo: str | None,
    driver: str | None,
    host: str | None,
    author: str | None,
    as_json: bool,
) -> None:
    """A git-native toolstack: every VM change is a commit in a git repository."""
    state = Context(os.path.abspath(repo or default_repo()), driver, host, author, as_json)
    ctx.obj = state
    ctx.call_on_close(state.close)


# The commands live in their own modules; importing them registers them on `main`: VMs in cli_vm, disks and
# NICs in cli_devices, the history, plan, task and raw-store commands in cli_state, sync in cli_sync.
from toolstack import cli_devices, cli_state, cli_sync, cli_vm  # noqa: E402, F401

# The daemons join the CLI (their modules import click only; FastAPI and asyncio load when they start).
from toolstack.api.cli import serve  # noqa: E402
from xenstored.cli import xenstored  # noqa: E402

main.add_command(serve)
main.add_command(xenstored)

if __name__ == "__main__":
    # Run as `python -m toolstack.cli`: use the importable module's group, on which cli_state registered.
    from toolstack.cli import main as toolstack_main

    toolstack_main()

__all__ = ["json", "main"]
