"""CLI commands about the state repository: show, diff, rollback, reconcile, tasks, raw store access, fsck
and events (``log`` is :mod:`toolstack.cli.history`'s)."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import EXIT_ERROR, handled
from toolstack.cli.output import emit, emit_lines, table, when
from toolstack.cli.plans import YES, run_plan

# -- history -----------------------------------------------------------------------------------------------
ALL = click.option(
    "--all", "everything", is_flag=True, help="Also observed state, task records and the name index"
)


def _changes_text(groups: list[Any], hidden: int) -> list[str]:
    """Per VM, its field changes: "web1 (281f0a2b):" then "  memory: 1024 → 2048 MiB"."""
    lines = []
    for group in groups:
        lines.append(f"{group.name} ({group.vm[:8]}):" if group.vm else "other:")
        lines.extend(f"  {change.describe()}" for change in group.changes)
    if not groups:
        lines.append("no change to the desired configuration")
    if hidden:
        lines.append(f"({hidden} change(s) to observed state, task records and names not shown: --all)")
    return lines


def _changes_record(groups: list[Any], hidden: int) -> dict[str, Any]:
    return {"vms": [group.to_dict() for group in groups], "hidden": hidden}


@click.command("show")
@click.argument("commit", default="main", required=False)
@ALL
@pass_ctx
@handled
def show_command(c: Context, commit: str, everything: bool) -> None:
    """Show COMMIT [main: the last one, as `git show`] and what it changed: field by field, per VM, the
    desired configuration first."""
    from toolstack.history import changes_by_vm
    from toolstack.history import show as show_commit

    ts = c.toolstack()
    view = show_commit(ts.context, commit)
    info = view.info
    before = ts.store.tree_at(info.parents[0] if info.parents else None)
    groups, hidden = changes_by_vm(view.changes, before, ts.store.tree_at(info.id), everything)
    record = {
        "commit": info.id,
        "parents": list(info.parents),
        "author": info.author,
        "time": info.author_time,
        "message": info.message,
        **_changes_record(groups, hidden),
    }
    lines = [
        f"commit {info.id}",
        f"Author: {info.author}",
        f"Date:   {when(info.author_time)}",
        "",
        *[f"    {line}" for line in info.message.rstrip().splitlines()],
        "",
        *_changes_text(groups, hidden),
    ]
    emit(record, c.json, "\n".join(lines))


@click.command("diff")
@click.argument("a")
@click.argument("b")
@ALL
@pass_ctx
@handled
def diff_command(c: Context, a: str, b: str, everything: bool) -> None:
    """What changed from revision A to revision B: field by field, per VM, the desired configuration first."""
    from toolstack.history import changes_by_vm

    store = c.toolstack().store
    changes = [(ch.path, ch.old, ch.new) for ch in store.diff(a, b)]
    groups, hidden = changes_by_vm(
        changes, store.tree_at(store.resolve(a)), store.tree_at(store.resolve(b)), everything
    )
    record = {"from": store.resolve(a), "to": store.resolve(b), **_changes_record(groups, hidden)}
    emit(record, c.json, "\n".join(_changes_text(groups, hidden)))


@click.command("rollback")
@click.argument("commit")
@click.option("--vm", "vm_name", default=None, help="Roll back only this VM")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing")
@YES
@pass_ctx
@handled
def rollback_command(c: Context, commit: str, vm_name: str | None, dry_run: bool, yes: bool) -> None:
    """Restore the VM state of COMMIT in a new commit, then reconcile the hypervisor to it.

    A rollback that would stop or undefine domains (one to before a VM existed deletes it) asks first on a
    terminal; elsewhere it needs --yes, or it prints the plan, writes nothing and exits 8.
    """
    ts = c.toolstack()
    run_plan(
        c,
        lambda dry, progress, confirm: ts.rollback(
            commit, vm=vm_name, dry_run=dry, progress=progress, confirm=confirm
        ),
        dry_run,
        yes,
        f"rollback to {commit}",
    )


@click.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing")
@click.option("--adopt", is_flag=True, help="Import domains the toolstack does not know")
@click.option(
    "--boot",
    is_flag=True,
    help="At host boot: start only the VMs with autostart; record the others wanted running as stopped",
)
@YES
@pass_ctx
@handled
def reconcile_command(c: Context, dry_run: bool, adopt: bool, boot: bool, yes: bool) -> None:
    """Make the hypervisor match the desired state; record drift.

    A plan that would stop or undefine domains asks first on a terminal; elsewhere it needs --yes, or it
    prints the plan, changes nothing and exits 8. With --boot (toolstack-boot.service): start this host's
    VMs that have autostart, record its other VMs wanted running as stopped, in one commit, and leave the
    domains that run already alone.
    """
    if boot:
        from toolstack.cli.boot import run_boot

        if adopt:
            raise click.UsageError("--boot and --adopt do not go together: adopt with a plain reconcile")
        run_boot(c, dry_run, yes)
        return
    ts = c.toolstack()
    run_plan(
        c,
        lambda dry, progress, confirm: ts.reconcile(
            dry_run=dry, adopt=adopt, progress=progress, confirm=confirm
        ),
        dry_run,
        yes,
        "reconcile",
    )


# -- tasks -------------------------------------------------------------------------------------------------
@click.group()
def task() -> None:
    """Inspect tasks (each operation is one)."""


@task.command("list")
@click.option("-n", "--limit", type=int, default=50, show_default=True)
@pass_ctx
@handled
def task_list(c: Context, limit: int) -> None:
    from toolstack.task_records import list_tasks

    tasks, _ = list_tasks(c.toolstack().context, limit=limit)
    rows = [
        (
            t.id,
            t.operation,
            t.vm_name,
            t.status.value,
            t.who,
            when(t.started),
            "-" if t.duration is None else f"{t.duration:.2f}s",
        )
        for t in tasks
    ]
    emit_lines(
        [t.model_dump(mode="json") for t in tasks],
        c.json,
        table(["id", "operation", "vm", "status", "who", "started", "took"], rows),
    )


@task.command("show")
@click.argument("task_id")
@pass_ctx
@handled
def task_show(c: Context, task_id: str) -> None:
    from toolstack.errors import ToolstackError
    from toolstack.task_records import get_task

    found = get_task(c.toolstack().context, task_id)
    if found is None:
        raise ToolstackError(f"no task {task_id!r}")
    record = found.model_dump(mode="json")
    emit(record, c.json, "\n".join(f"{k}: {v}" for k, v in record.items()))


# -- raw store access --------------------------------------------------------------------------------------
@click.group("store")
def store_group() -> None:
    """Raw access to the state repository."""


@store_group.command("get")
@click.argument("path")
@click.option("--rev", default="main", show_default=True)
@pass_ctx
@handled
def store_get(c: Context, path: str, rev: str) -> None:
    from toolstack.errors import ToolstackError

    store = c.toolstack().store
    value = store.at(rev).get(path)
    if value is None:
        raise ToolstackError(f"{path}: no value at {rev}")
    if c.json:
        emit({"path": path, "value": value.decode("utf-8", "replace")}, True)
    else:
        sys.stdout.buffer.write(value)


@store_group.command("set")
@click.argument("path")
@click.argument("value")
@click.option("-m", "--message", default=None)
@pass_ctx
@handled
def store_set(c: Context, path: str, value: str, message: str | None) -> None:
    ts = c.toolstack()
    with ts.main.transaction(message=message or f"store set {path}", author=ts.author) as tx:
        tx.set(path, value.encode())
    emit({"path": path, "commit": tx.commit_id}, c.json, tx.commit_id or "")


@store_group.command("ls")
@click.argument("path", default="")
@click.option("--rev", default="main", show_default=True)
@pass_ctx
@handled
def store_ls(c: Context, path: str, rev: str) -> None:
    names = c.toolstack().store.at(rev).list(path)
    emit(names, c.json, "\n".join(names))


@store_group.command("branches")
@pass_ctx
@handled
def store_branches(c: Context) -> None:
    store = c.toolstack().store
    records = [{"branch": b, "head": store.branch(b).head} for b in store.branches()]
    emit(records, c.json, table(["branch", "head"], [(r["branch"], r["head"]) for r in records]))


@click.command("fsck")
@click.option("--no-git", is_flag=True, help="Skip git's own object check (git fsck --full)")
@pass_ctx
@handled
def fsck_command(c: Context, no_git: bool) -> None:
    """Check the state repository: git's objects, then the toolstack's invariants. Writes nothing.

    Exit code 0 when no error was found (warnings allowed), 1 otherwise.
    """
    from store import NotARepository, Store
    from toolstack.errors import ToolstackError
    from toolstack.fsck import fsck

    try:
        store = Store.open(c.repo, create=False)
    except NotARepository as err:
        raise ToolstackError(str(err)) from err
    with store:
        report = fsck(store, run_git=not no_git)
    counts = ", ".join(f"{n} {what}" for what, n in report.counts.items())
    lines = [f"{f.severity}: [{f.check}] {f.message}" for f in report.findings]
    errors = sum(f.severity == "error" for f in report.findings)
    lines.append(
        f"{'ok' if report.ok else 'damaged'}: {errors} errors, {len(report.findings) - errors} warnings"
        + (f" ({counts} checked)" if counts else "")
    )
    emit(report.to_dict(), c.json, "\n".join(lines))
    if not report.ok:
        sys.exit(EXIT_ERROR)


@click.command("events")
@click.option("--since", "token", default=None, help="Resume after this token (a commit id)")
@click.option("--follow", is_flag=True, help="Keep streaming new events")
@pass_ctx
@handled
def events_command(c: Context, token: str | None, follow: bool) -> None:
    """VM events (created, started, stopped, config changed, ...) derived from main's history."""
    from toolstack import layout
    from toolstack.events import events_since
    from toolstack.events import follow as follow_events

    store = c.toolstack().store
    # A full commit id is taken as is: one squashed away is reported as lost events, not as a bad argument.
    since = token if token is None or re.fullmatch(r"[0-9a-f]{40}", token) else store.resolve(token)

    def show(event: Any) -> None:
        if c.json:
            emit(event.to_dict(), True)
        else:
            detail = " ".join(f"{k}={v}" for k, v in event.detail.items())
            click.echo(
                f"{event.token[:12]}  {when(event.time)}  {event.kind:15} {event.name or event.vm}  {detail}"
            )
        sys.stdout.flush()

    for event in events_since(store, since):
        show(event)
    if follow:
        head = store.branch(layout.MAIN).head
        try:
            for event in follow_events(store, head):
                show(event)
        except KeyboardInterrupt:
            pass
