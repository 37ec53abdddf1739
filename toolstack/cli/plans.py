"""Plans on the command line: how a plan reads for people, how a destructive plan is confirmed, and how a
command prints or carries out a plan (``reconcile``, ``rollback``; ``pull`` confirms its reconcile too).

The deletion guard: a plan that would stop or undefine domains is shown first; on a terminal (stdin and
stdout are TTYs) the command asks, ``--yes`` skips the question, and without a terminal and without ``--yes``
it refuses with exit code 8. Explicit single-VM requests (``vm delete``, ``vm destroy``, ``vm shutdown``)
are the operator's own order, as ``virsh undefine`` is, and are not asked about.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from toolstack.cli.errors import EXIT_ERROR
from toolstack.cli.output import emit

if TYPE_CHECKING:
    from toolstack.cli.context import Context
    from toolstack.plan import Action, Confirm, Plan, Progress

YES = click.option(
    "--yes", "-y", is_flag=True, help="Apply a plan that stops or undefines domains without asking"
)


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


def run_plan(
    c: Context,
    compute: Callable[[bool, Progress | None, Confirm], Plan],
    dry_run: bool,
    yes: bool,
    title: str,
) -> None:
    """Print a plan (``dry_run``), or carry it out with a progress bar over its actions.

    The plan is made once: the bar is sized by the plan being applied, which each step hands it. A
    destructive plan is confirmed first (:func:`confirmation`): the bar starts after the question, with the
    first action applied. A plan with errors exits 1 once printed.
    """
    if dry_run or c.json:
        plan = compute(dry_run, None, confirmation(yes))
    else:
        with contextlib.ExitStack() as stack:
            bars: list[Any] = []

            def progress(action: Action, applying: Plan) -> None:
                if not bars:
                    bars.append(
                        stack.enter_context(
                            click.progressbar(
                                length=max(len(applying.actions), 1),
                                label=title,
                                file=sys.stderr,
                                show_eta=False,
                            )
                        )
                    )
                bars[0].update(1)

            plan = compute(False, progress, confirmation(yes))
    emit(plan.to_dict(), c.json, "\n".join(plan_lines(plan, would=dry_run)))
    if plan.errors:
        sys.exit(EXIT_ERROR)
