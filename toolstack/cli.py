"""The ``toolstack`` command line.

Exit codes: 0 success; 1 error (unknown VM, hypervisor failure, bad repository...); 2 usage (bad option or
value); 3 conflict (concurrent changes could not be merged); 4 busy (another operation holds the VM).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from drivers import DriverError
from drivers.models import parse_memory
from store import Conflict, StoreError
from toolstack import layout
from toolstack.errors import ToolstackError
from toolstack.history import show as show_commit
from toolstack.models import VM, Task
from toolstack.output import emit, emit_lines, table, when

EXIT_ERROR, EXIT_USAGE, EXIT_CONFLICT, EXIT_BUSY = 1, 2, 3, 4
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


class Memory(click.ParamType):
    """Sizes such as 512M, 2G or 1024 (MiB)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_memory(value)
        except ValueError as err:
            self.fail(f"{value!r} is not a memory size (e.g. 512M, 2G): {err}", param, ctx)


class Context:
    """Options shared by every command; the toolstack is opened on first use."""

    def __init__(self, repo: str, driver: str | None, host: str | None, author: str | None, as_json: bool):
        self.repo = repo
        self.driver_uri = driver or default_driver(repo)
        self.host = host
        self.author = author
        self.json = as_json
        self._toolstack: Any = None

    def toolstack(self, create: bool = True) -> Any:
        from toolstack.ops import Toolstack  # imported on use: `--help` stays fast

        if self._toolstack is None:
            if not create and not os.path.exists(self.repo):
                raise ToolstackError(f"no state repository at {self.repo} (set --repo or TOOLSTACK_REPO)")
            self._toolstack = Toolstack.open(
                self.repo,
                self.driver_uri,
                host=self.host,
                author=self.author or operator_identity(),
                create=create,
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


def handled(command: F) -> F:
    """Turn the layers' errors into one-line messages and documented exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ToolstackError as err:
            _fail(str(err), err.exit_code)
        except Conflict as err:
            _fail(str(err), EXIT_CONFLICT)
        except (DriverError, StoreError, ValueError) as err:
            _fail(str(err), EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


pass_ctx = click.make_pass_decorator(Context)


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


# -- vm ----------------------------------------------------------------------------------------------------
@main.group()
def vm() -> None:
    """Create, inspect and drive VMs."""


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


@vm.command("create")
@click.argument("name")
@click.option("--memory", type=Memory(), required=True, help="e.g. 512M, 2G")
@click.option("--vcpus", type=click.IntRange(1, 512), default=1, show_default=True)
@click.option("--disk", "disks", multiple=True, type=click.Path(), help="Disk image path (repeatable)")
@click.option("--nic", "nics", multiple=True, help="Network name (repeatable)")
@click.option("--start", is_flag=True, help="Start it once created")
@pass_ctx
@handled
def vm_create(
    c: Context, name: str, memory: int, vcpus: int, disks: tuple[str, ...], nics: tuple[str, ...], start: bool
) -> None:
    """Define a new VM."""
    ts = c.toolstack()
    created = ts.create(name, memory=memory, vcpus=vcpus, disks=list(disks), nics=list(nics))
    if start:
        created = ts.start(created.uuid)
    emit(
        vm_record(created),
        c.json,
        f"created {created.name} ({created.uuid})" + (", started" if start else ""),
    )


@vm.command("list")
@pass_ctx
@handled
def vm_list(c: Context) -> None:
    """List VMs with their desired and actual state."""
    ts = c.toolstack(create=False)
    states = {str(info.uuid): info.state.value for info in ts.driver.list()}
    vms = ts.vms()
    records = [vm_record(v, states.get(v.uuid, "absent")) for v in vms]
    rows = [(r["name"], r["uuid"], r["memory"], r["vcpus"], r["desired"], r["state"]) for r in records]
    emit(records, c.json, table(["name", "uuid", "memory", "vcpus", "desired", "state"], rows))


@vm.command("show")
@click.argument("name")
@pass_ctx
@handled
def vm_show(c: Context, name: str) -> None:
    """Show one VM: configuration, devices, state and recent history."""
    ts = c.toolstack(create=False)
    found = ts.vm(name)
    info = ts.info(found)
    record = vm_record(found, info.state.value if info else "absent")
    history = ts.log(found.uuid, limit=5)
    record["history"] = [op.to_dict() for op in history]
    lines = [
        f"name:     {found.name}",
        f"uuid:     {found.uuid}",
        f"memory:   {found.spec.memory} MiB",
        f"vcpus:    {found.spec.vcpus}",
        f"desired:  {found.desired.value}",
        f"state:    {record['state']}"
        + (f" (domid {info.domid})" if info and info.domid is not None else ""),
        "devices:",
        *[
            f"  {d.id}: {d.kind} "
            + (f"{d.source} as {d.target}" if d.kind == "disk" else f"{d.mac} on {d.network or d.bridge}")
            for d in found.spec.devices
        ],
        "history:",
        *[f"  {op.commit[:10]}  {when(op.time)}  {op.author}  {op.subject}" for op in history],
    ]
    emit(record, c.json, "\n".join(lines))


def _lifecycle_command(verb: str, help_text: str) -> None:
    @vm.command(verb, help=help_text)
    @click.argument("name")
    @pass_ctx
    @handled
    def command(c: Context, name: str) -> None:
        ts = c.toolstack(create=False)
        if verb == "delete":
            ts.delete(name)
            emit({"name": name, "deleted": True}, c.json, f"deleted {name}")
            return
        result = getattr(ts, verb)(name)
        info = ts.info(result)
        emit(
            vm_record(result, info.state.value if info else "absent"),
            c.json,
            f"{verb} {result.name}: {info.state.value if info else 'absent'}",
        )


for _verb, _help in [
    ("start", "Boot a VM."),
    ("reboot", "Ask a VM's guest to reboot."),
    ("pause", "Pause a running VM."),
    ("resume", "Resume a paused VM."),
    ("destroy", "Power a VM off immediately."),
    ("delete", "Power off, undefine, and remove a VM from the state."),
]:
    _lifecycle_command(_verb, _help)


@vm.command("shutdown")
@click.argument("name")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the guest")
@click.option("--force", is_flag=True, help="Destroy the VM if the guest does not power off in time")
@pass_ctx
@handled
def vm_shutdown(c: Context, name: str, timeout: float, force: bool) -> None:
    """Ask a VM's guest to power off."""
    result = c.toolstack(create=False).shutdown(name, timeout=timeout, force=force)
    emit(vm_record(result), c.json, f"shutdown {result.name}: stopped")


@vm.command("set")
@click.argument("name")
@click.option("--memory", type=Memory(), default=None)
@click.option("--vcpus", type=click.IntRange(1, 512), default=None)
@pass_ctx
@handled
def vm_set(c: Context, name: str, memory: int | None, vcpus: int | None) -> None:
    """Change memory and/or vCPUs (live where the VM allows, persistently always)."""
    result = c.toolstack(create=False).set_resources(name, memory=memory, vcpus=vcpus)
    emit(
        vm_record(result),
        c.json,
        f"{result.name}: memory {result.spec.memory} MiB, vcpus {result.spec.vcpus}",
    )


# -- devices -----------------------------------------------------------------------------------------------
@main.group()
def disk() -> None:
    """Attach and detach disks."""


@disk.command("attach")
@click.argument("name")
@click.argument("path", type=click.Path())
@click.option("--target", default=None, help="Guest device, e.g. vdb")
@click.option("--id", "device_id", default=None)
@click.option("--readonly", is_flag=True)
@pass_ctx
@handled
def disk_attach(
    c: Context, name: str, path: str, target: str | None, device_id: str | None, readonly: bool
) -> None:
    result = c.toolstack(create=False).attach_disk(
        name, path, target=target, device_id=device_id, readonly=readonly
    )
    emit(vm_record(result), c.json, f"attached {path} to {result.name}")


@disk.command("detach")
@click.argument("name")
@click.argument("device_id")
@pass_ctx
@handled
def disk_detach(c: Context, name: str, device_id: str) -> None:
    result = c.toolstack(create=False).detach(name, device_id)
    emit(vm_record(result), c.json, f"detached {device_id} from {result.name}")


@main.group()
def nic() -> None:
    """Attach and detach network interfaces."""


@nic.command("attach")
@click.argument("name")
@click.argument("network", required=False)
@click.option("--bridge", default=None, help="Attach to a bridge instead of a network")
@click.option("--mac", default=None)
@click.option("--id", "device_id", default=None)
@pass_ctx
@handled
def nic_attach(
    c: Context, name: str, network: str | None, bridge: str | None, mac: str | None, device_id: str | None
) -> None:
    if (network is None) == (bridge is None):
        raise click.UsageError("give a NETWORK or --bridge (one of them)")
    result = c.toolstack(create=False).attach_nic(
        name, network=network, bridge=bridge, mac=mac, device_id=device_id
    )
    emit(vm_record(result), c.json, f"attached a nic to {result.name}")


@nic.command("detach")
@click.argument("name")
@click.argument("device_id")
@pass_ctx
@handled
def nic_detach(c: Context, name: str, device_id: str) -> None:
    result = c.toolstack(create=False).detach(name, device_id)
    emit(vm_record(result), c.json, f"detached {device_id} from {result.name}")


# -- history -----------------------------------------------------------------------------------------------
@main.command("log")
@click.argument("name", required=False)
@click.option("-n", "--limit", type=int, default=None, help="At most this many entries")
@pass_ctx
@handled
def log_command(c: Context, name: str | None, limit: int | None) -> None:
    """Operations newest first, on one VM or on all."""
    ops = c.toolstack(create=False).log(name, limit=limit)
    rows = [(op.commit[:10], when(op.time), op.author, op.subject) for op in ops]
    emit_lines([op.to_dict() for op in ops], c.json, table(["commit", "date", "author", "operation"], rows))


def _render_value(value: bytes | None) -> str:
    if value is None:
        return "-"
    text = value.decode("utf-8", "replace").strip()
    return text if len(text) < 200 else text[:200] + "…"


@main.command("show")
@click.argument("commit")
@pass_ctx
@handled
def show_command(c: Context, commit: str) -> None:
    """Show a commit and what it changed."""
    view = show_commit(c.toolstack(create=False), commit)
    info = view.info
    record = {
        "commit": info.id,
        "parents": list(info.parents),
        "author": info.author,
        "time": info.author_time,
        "message": info.message,
        "changes": [
            {"path": p, "old": _render_value(o), "new": _render_value(n)} for p, o, n in view.changes
        ],
    }
    lines = [
        f"commit {info.id}",
        f"Author: {info.author}",
        f"Date:   {when(info.author_time)}",
        "",
        *[f"    {line}" for line in info.message.rstrip().splitlines()],
        "",
    ]
    for path, old, new in view.changes:
        kind = "added" if old is None else "removed" if new is None else "changed"
        lines.append(f"{kind:8} {path}")
    emit(record, c.json, "\n".join(lines))


@main.command("diff")
@click.argument("a")
@click.argument("b")
@pass_ctx
@handled
def diff_command(c: Context, a: str, b: str) -> None:
    """What changed from revision A to revision B."""
    diff = c.toolstack(create=False).store.diff(a, b)
    records = [
        {"path": ch.path, "kind": ch.kind, "old": _render_value(ch.old), "new": _render_value(ch.new)}
        for ch in diff
    ]
    rows = [(r["kind"], r["path"], r["old"].replace("\n", " "), r["new"].replace("\n", " ")) for r in records]
    emit(records, c.json, table(["change", "path", "old", "new"], rows))


def _run_plan(
    c: Context, compute: Callable[[Callable[[Any], None] | None], Any], dry_run: bool, title: str
) -> None:
    if dry_run or c.json:
        plan = compute(None)
    else:
        with click.progressbar(length=1_000_000, label=title, file=sys.stderr, show_eta=False) as bar:
            plan = compute(lambda action: bar.update(1))
    record = plan.to_dict()
    lines = [f"{'would ' if dry_run else ''}{a.describe()}" for a in plan.actions] or ["nothing to do"]
    lines += [f"drift: {d}" for d in plan.drift] + [f"unknown: {u}" for u in plan.unknown]
    lines += [f"invalid: {i}" for i in plan.invalid] + [f"busy: {b}" for b in plan.busy]
    lines += [f"error: {e}" for e in plan.errors]
    emit(record, c.json, "\n".join(lines))
    if plan.errors:
        sys.exit(EXIT_ERROR)


@main.command("rollback")
@click.argument("commit")
@click.option("--vm", "vm_name", default=None, help="Roll back only this VM")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing")
@pass_ctx
@handled
def rollback_command(c: Context, commit: str, vm_name: str | None, dry_run: bool) -> None:
    """Restore the VM state of COMMIT in a new commit, then reconcile the hypervisor to it."""
    ts = c.toolstack(create=False)
    _run_plan(
        c,
        lambda progress: ts.rollback(commit, vm=vm_name, dry_run=dry_run, progress=progress),
        dry_run,
        f"rollback to {commit}",
    )


@main.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing")
@click.option("--adopt", is_flag=True, help="Import domains the toolstack does not know")
@pass_ctx
@handled
def reconcile_command(c: Context, dry_run: bool, adopt: bool) -> None:
    """Make the hypervisor match the desired state; record drift."""
    ts = c.toolstack()
    _run_plan(
        c,
        lambda progress: ts.reconcile(dry_run=dry_run, adopt=adopt, progress=progress),
        dry_run,
        "reconcile",
    )


# -- tasks -------------------------------------------------------------------------------------------------
@main.group()
def task() -> None:
    """Inspect tasks (each operation is one)."""


def _all_tasks(c: Context) -> list[Task]:
    ts = c.toolstack(create=False)
    found: dict[str, Task] = {}
    refs = ts.store.backend.list_refs(f"refs/heads/{layout.FAILED_PREFIX}/")
    refs.update(ts.store.backend.list_refs(f"refs/heads/{layout.LOCK_PREFIX}/"))
    trees = [ts.main.tree] + [ts.store.tree_at(commit) for commit in refs.values()]
    for tree in trees:
        for task_id in tree.list(layout.TASKS):
            raw = tree.get(layout.task_path(task_id))
            if raw is not None:
                record = Task.model_validate_json(raw)
                if task_id not in found or record.status != "running":
                    found[task_id] = record
    return sorted(found.values(), key=lambda t: t.started, reverse=True)


@task.command("list")
@click.option("-n", "--limit", type=int, default=50, show_default=True)
@pass_ctx
@handled
def task_list(c: Context, limit: int) -> None:
    tasks = _all_tasks(c)[:limit]
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
    matches = [t for t in _all_tasks(c) if t.id == task_id or t.id.endswith(task_id)]
    if len(matches) != 1:
        raise ToolstackError(f"no task {task_id!r}" if not matches else f"task id {task_id!r} is ambiguous")
    record = matches[0].model_dump(mode="json")
    emit(record, c.json, "\n".join(f"{k}: {v}" for k, v in record.items()))


# -- raw store access --------------------------------------------------------------------------------------
@main.group("store")
def store_group() -> None:
    """Raw access to the state repository."""


@store_group.command("get")
@click.argument("path")
@click.option("--rev", default="main", show_default=True)
@pass_ctx
@handled
def store_get(c: Context, path: str, rev: str) -> None:
    store = c.toolstack(create=False).store
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
    with ts.main.transaction(message=message or f"store set {path}", author=ts.runner.author) as tx:
        tx.set(path, value.encode())
    emit({"path": path, "commit": tx.commit_id}, c.json, tx.commit_id or "")


@store_group.command("ls")
@click.argument("path", default="")
@click.option("--rev", default="main", show_default=True)
@pass_ctx
@handled
def store_ls(c: Context, path: str, rev: str) -> None:
    names = c.toolstack(create=False).store.at(rev).list(path)
    emit(names, c.json, "\n".join(names))


@store_group.command("branches")
@pass_ctx
@handled
def store_branches(c: Context) -> None:
    store = c.toolstack(create=False).store
    records = [{"branch": b, "head": store.branch(b).head} for b in store.branches()]
    emit(records, c.json, table(["branch", "head"], [(r["branch"], r["head"]) for r in records]))


def _register_optional_commands() -> None:
    """Commands from optional subpackages (e.g. the xenstored daemon) join the CLI when present."""
    try:
        from toolstack.xenstored.cli import xenstored
    except ImportError:
        return
    main.add_command(xenstored)


_register_optional_commands()

if __name__ == "__main__":
    main()

__all__ = ["json", "main"]
