"""``toolstack reconcile --boot``: the boot-time reconcile that honours autostart (:mod:`toolstack.boot`),
run by ``toolstack-boot.service`` before ``serve`` and ``agent`` start."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from toolstack.cli.errors import EXIT_ERROR
from toolstack.cli.output import emit
from toolstack.cli.plans import confirmation, plan_lines

if TYPE_CHECKING:
    from toolstack.boot import BootPlan
    from toolstack.cli.context import Context


def boot_lines(boot: BootPlan, would: bool) -> list[str]:
    """What a boot reconcile did (or ``would`` do): its plan, then each VM by what became of it."""
    lines = plan_lines(boot.plan, would) if boot.plan.actions or boot.plan.errors else []
    verb = "would record" if would else "recorded"
    lines += [f"autostart: {name}" for name in boot.autostart]
    lines += [f"{verb} stopped: {name} (no autostart)" for name in boot.stopped]
    lines += [f"left: {name} (already running: not a fresh boot for it)" for name in boot.left]
    lines += [f"invalid: {i}" for i in boot.plan.invalid if not (boot.plan.actions or boot.plan.errors)]
    return lines or ["nothing to do at boot: no VM here is wanted running"]


def run_boot(c: Context, dry_run: bool, yes: bool) -> None:
    """Run the boot reconcile and print what it did; exit 1 if an action failed."""
    from toolstack.boot import boot_reconcile

    ts = c.toolstack()
    boot = boot_reconcile(ts.context, dry_run=dry_run, confirm=confirmation(yes))
    emit(boot.to_dict(), c.json, "\n".join(boot_lines(boot, would=dry_run)))
    if boot.plan.errors:
        sys.exit(EXIT_ERROR)
