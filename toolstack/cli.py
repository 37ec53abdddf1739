"""The ``toolstack`` command line.

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
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drivers import DriverError
from drivers.models import parse_memory
from store import Conflict, HistoryLost, StoreError
from toolstack.errors import DestructivePlanRefused, ToolstackError
from toolstack.models import VM
from toolstack.output import emit, table, when
from toolstack.status import BROKEN, VMStatus, broken_detail, listing, lookup, status_of, wait_for_report

if TYPE_CHECKING:
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
                emit({**err.plan.to_dict(), "refused": True}, as_json, "\n".join(plan_lines(err.plan, True)))
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
@click.option("--max-memory", type=Memory(), default=None, help="Ballooning ceiling (default: --memory)")
@click.option(
    "--max-vcpus", type=click.IntRange(1, 512), default=None, help="Hotplug ceiling (default: --vcpus)"
)
@click.option("--disk", "disks", multiple=True, type=click.Path(), help="Disk image path (repeatable)")
@click.option("--nic", "nics", multiple=True, help="Network name (repeatable)")
@click.option("--start", is_flag=True, help="Boot it too, in the same task (as xl create does)")
@click.option("--on", "placement", default=None, help="Place it on this pool host (its agent runs it)")
@pass_ctx
@handled
def vm_create(
    c: Context,
    name: str,
    memory: int,
    vcpus: int,
    max_memory: int | None,
    max_vcpus: int | None,
    disks: tuple[str, ...],
    nics: tuple[str, ...],
    start: bool,
    placement: str | None,
) -> None:
    """Define a new VM."""
    ts = c.toolstack()
    ceilings = {k: v for k, v in (("max_memory", max_memory), ("max_vcpus", max_vcpus)) if v is not None}
    created = ts.create(
        name,
        memory=memory,
        vcpus=vcpus,
        disks=list(disks),
        nics=list(nics),
        host=placement,
        start=start,
        **ceilings,
    )
    emit(
        vm_record(created),
        c.json,
        f"created {created.name} ({created.uuid})" + (", started" if start else ""),
    )


def status_record(status: VMStatus) -> dict[str, Any]:
    """A VM as ``vm list``/``vm show --json`` give it: its configuration (none for a broken entry) and its
    state, live or as its host last reported it."""
    record = (
        vm_record(status.vm) if status.vm is not None else {"memory": None, "vcpus": None, "desired": None}
    )
    record.setdefault("devices", [])
    return {**record, **status.to_dict()}


@vm.command("list")
@pass_ctx
@handled
def vm_list(c: Context) -> None:
    """List VMs with their desired state and their state: live for this host's VMs, as last reported by
    their host for the others (with its age); a VM whose entry does not validate is marked broken."""
    ts = c.toolstack()
    now = time.time()
    statuses = listing(ts)
    records = [status_record(s) for s in statuses]
    rows = [
        (s.name or "?", s.uuid, r["memory"], r["vcpus"], r["desired"], s.describe(now))
        for s, r in zip(statuses, records, strict=True)
    ]
    emit(records, c.json, table(["name", "uuid", "memory", "vcpus", "desired", "state"], rows))


@vm.command("show")
@click.argument("name")
@pass_ctx
@handled
def vm_show(c: Context, name: str) -> None:
    """Show one VM: configuration, devices, state (live, or as its host reported it), drift and recent
    history; for a broken entry, the offending path and the error."""
    ts = c.toolstack()
    status = lookup(ts, name)
    record = status_record(status)
    history = ts.log(status.uuid, limit=5)
    record["history"] = [op.to_dict() for op in history]
    found = status.vm
    lines = [f"name:     {status.name or '?'}", f"uuid:     {status.uuid}"]
    if found is None:
        assert status.error is not None
        detail = broken_detail(status.uuid, status.error)
        lines += [f"state:    {BROKEN}", f"path:     {detail['path']}", f"error:    {detail['message']}"]
    else:
        lines += [
            f"host:     {status.host}" + ("" if status.local else " (its agent runs it)"),
            f"memory:   {found.spec.memory} MiB",
            f"vcpus:    {found.spec.vcpus}",
            f"desired:  {found.desired.value}",
            f"state:    {status.describe()}"
            + (f" (domid {status.domid})" if status.local and status.domid is not None else ""),
            *[f"drift:    {d} (changed outside the toolstack)" for d in status.drift],
            "devices:",
            *[
                f"  {d.id}: {d.kind} "
                + (f"{d.source} as {d.target}" if d.kind == "disk" else f"{d.mac} on {d.network or d.bridge}")
                for d in found.spec.devices
            ],
        ]
    lines += [
        "history:",
        *[f"  {op.commit[:10]}  {when(op.time)}  {op.author}  {op.subject}" for op in history],
    ]
    emit(record, c.json, "\n".join(lines))


def wait_option(command: F) -> F:
    """``--wait [SECONDS]``: for a VM placed on another host, wait for that host's report to match."""
    return click.option(
        "--wait",
        type=click.FloatRange(0),
        default=None,
        is_flag=False,
        flag_value=60.0,
        metavar="[SECONDS]",
        help="For a VM placed on another host: wait (default 60 s) until that host reports the desired state",
    )(command)


def report_outcome(c: Context, verb: str, result: VM, wait: float | None) -> None:
    """Print what an operation did: the live state here, or, for a VM placed on another host, that the
    operation is queued for that host's agent (and, with ``--wait``, what that host then reported)."""
    ts = c.toolstack()
    status = status_of(ts, result.uuid)
    if not status.local and wait is not None:
        status = wait_for_report(ts, result.uuid, verb, wait)
        text = f"{verb} {result.name}: {status.describe()}"
    elif not status.local:
        text = f"{verb} {result.name}: queued for {status.host} (its agent applies it)"
    else:
        text = f"{verb} {result.name}: {status.describe()}"
    emit({**status_record(status), "queued": not status.local and wait is None}, c.json, text)


def _lifecycle_command(verb: str, help_text: str) -> None:
    @vm.command(verb, help=help_text)
    @click.argument("name")
    @wait_option
    @pass_ctx
    @handled
    def command(c: Context, name: str, wait: float | None) -> None:
        ts = c.toolstack()
        if verb == "delete":
            target = ts.vm(name)
            ts.delete(name)
            where = target.host if target.host not in (None, ts.host) else None
            text = f"deleted {name}" + (
                f" (queued for {where}: its agent removes the domain)" if where else ""
            )
            emit({"name": name, "deleted": True, "queued_for": where}, c.json, text)
            return
        report_outcome(c, verb, getattr(ts, verb)(name), wait)


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
@wait_option
@pass_ctx
@handled
def vm_shutdown(c: Context, name: str, timeout: float, force: bool, wait: float | None) -> None:
    """Ask a VM's guest to power off."""
    report_outcome(c, "shutdown", c.toolstack().shutdown(name, timeout=timeout, force=force), wait)


@vm.command("migrate")
@click.argument("name")
@click.option("--to", "to_host", required=True, help="The pool host to move it to")
@click.option(
    "--force",
    is_flag=True,
    help="The source host is down: let the destination start the VM without waiting for the source to "
    "report it stopped (it must really be down, or the VM runs twice)",
)
@wait_option
@pass_ctx
@handled
def vm_migrate(c: Context, name: str, to_host: str, force: bool, wait: float | None) -> None:
    """Move a VM to another pool host: its source stops it and records that, then the destination's agent
    starts it (never on two hosts at once)."""
    ts = c.toolstack()
    before = ts.vm(name)
    result = ts.migrate(name, to_host, force=force)
    source = result.migration.source if result.migration is not None else before.host or ts.host
    if wait is not None and to_host != ts.host:
        report_outcome(c, "migrate", result, wait)
        return
    if to_host == ts.host:
        text = (
            f"migrate {result.name}: placed here; reconcile (or this host's agent) starts it once {source} "
        )
        text += "reports it stopped"
    elif force:
        text = f"migrate {result.name}: queued for {to_host}, which starts it without waiting for {source}"
    elif source == ts.host:
        text = f"migrate {result.name}: stopped here; queued for {to_host} (its agent starts it)"
    else:
        text = (
            f"migrate {result.name}: queued: {source}'s agent stops it, then {to_host}'s starts it "
            f"(if {source} is down: --force)"
        )
    emit({**status_record(status_of(ts, result.uuid)), "queued": True, "from": source}, c.json, text)


@vm.command("set")
@click.argument("name")
@click.option("--memory", type=Memory(), default=None)
@click.option("--vcpus", type=click.IntRange(1, 512), default=None)
@pass_ctx
@handled
def vm_set(c: Context, name: str, memory: int | None, vcpus: int | None) -> None:
    """Change memory and/or vCPUs (live where the VM allows, persistently always)."""
    result = c.toolstack().set_resources(name, memory=memory, vcpus=vcpus)
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
    result = c.toolstack().attach_disk(name, path, target=target, device_id=device_id, readonly=readonly)
    emit(vm_record(result), c.json, f"attached {path} to {result.name}")


@disk.command("detach")
@click.argument("name")
@click.argument("device_id")
@pass_ctx
@handled
def disk_detach(c: Context, name: str, device_id: str) -> None:
    result = c.toolstack().detach(name, device_id)
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
    result = c.toolstack().attach_nic(name, network=network, bridge=bridge, mac=mac, device_id=device_id)
    emit(vm_record(result), c.json, f"attached a nic to {result.name}")


@nic.command("detach")
@click.argument("name")
@click.argument("device_id")
@pass_ctx
@handled
def nic_detach(c: Context, name: str, device_id: str) -> None:
    result = c.toolstack().detach(name, device_id)
    emit(vm_record(result), c.json, f"detached {device_id} from {result.name}")


# The history, plan, task and raw-store commands live in cli_state; importing it registers them on `main`.
from toolstack import cli_state, cli_sync  # noqa: E402, F401

# The daemons join the CLI (their modules import click only; FastAPI and asyncio load when they start).
from toolstack.api.cli import serve  # noqa: E402
from toolstack.xenstored.cli import xenstored  # noqa: E402

main.add_command(serve)
main.add_command(xenstored)

if __name__ == "__main__":
    # Run as `python -m toolstack.cli`: use the importable module's group, on which cli_state registered.
    from toolstack.cli import main as toolstack_main

    toolstack_main()

__all__ = ["json", "main"]
