"""CLI commands on VMs: ``vm list/show``, the lifecycle commands and ``vm migrate``.

``vm create`` is in :mod:`toolstack.cli.vm_create`, ``vm set`` in :mod:`toolstack.cli.vm_set`, ``vm define``
and ``vm dumpxml`` in :mod:`toolstack.cli.vm_xml`: they add themselves to this group, imported at the end of
this module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from toolstack.cli.context import Context, F, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit, table, vm_record, when

if TYPE_CHECKING:
    from drivers import ConsoleDevice
    from toolstack.models import VM
    from toolstack.status import VMStatus


class Memory(click.ParamType):
    """Sizes such as 512M, 2G or 1024 (MiB)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from drivers.models import parse_memory

        try:
            return parse_memory(value)
        except ValueError as err:
            self.fail(f"{value!r} is not a memory size (e.g. 512M, 2G): {err}", param, ctx)


# -- vm ----------------------------------------------------------------------------------------------------
@click.group()
def vm() -> None:
    """Create, inspect and drive VMs."""


def status_record(status: VMStatus, host_info: Mapping[str, str]) -> dict[str, Any]:
    """A VM as ``vm list``/``vm show --json`` give it: its configuration (none for a broken entry), the
    accelerator it gets and why (given this host's driver's ``host_info``), and its state, live or as its
    host last reported it."""
    record = (
        vm_record(status.vm) if status.vm is not None else {"memory": None, "vcpus": None, "desired": None}
    )
    record.setdefault("devices", [])
    if status.vm is not None:
        from toolstack.guest_info import accel_choice

        record["accel"], record["accel_reason"] = accel_choice(status.vm.spec, host_info, status.local)
    return {**record, **status.to_dict()}


@vm.command("list")
@pass_ctx
@handled
def vm_list(c: Context) -> None:
    """List VMs with their desired state and their state: live for this host's VMs, as last reported by
    their host for the others (with its age); a VM whose entry does not validate is marked broken."""
    from toolstack.status import listing

    ts = c.toolstack()
    now = time.time()
    statuses = listing(ts)
    if c.json:
        info = ts.driver.host_info()
        emit([status_record(s, info) for s in statuses], True)
        return
    # The table needs three fields of each record: not the records (a dump of every device of every VM).
    rows = [(s.name or "?", s.uuid, *_configured(s.vm), s.describe(now) + _marker(s)) for s in statuses]
    text = table(["name", "uuid", "memory", "vcpus", "desired", "state"], rows)
    if any(s.pending for s in statuses):
        text += f"\n{PENDING_MARKER}: changes wait for the next boot (vm show NAME; vm reboot NAME --apply)"
    emit(None, False, text)


PENDING_MARKER = "[pending reboot]"


def _marker(status: VMStatus) -> str:
    """``vm list``'s mark on a VM whose running domain has changes waiting for its next boot."""
    return f" {PENDING_MARKER}" if status.pending else ""


def _configured(vm_: VM | None) -> tuple[int | None, int | None, str | None]:
    """Memory, vCPUs and desired state as ``status_record`` gives them (None for a broken entry)."""
    return (None, None, None) if vm_ is None else (vm_.spec.memory, vm_.spec.vcpus, vm_.desired.value)


@vm.command("show")
@click.argument("name")
@pass_ctx
@handled
def vm_show(c: Context, name: str) -> None:
    """Show one VM: configuration, devices, state (live, or as its host reported it), drift and recent
    history; for a broken entry, the offending path and the error."""
    from toolstack.status import BROKEN, broken_detail, lookup

    ts = c.toolstack()
    status = lookup(ts, name)
    record = status_record(status, ts.driver.host_info())
    history = ts.log(status.uuid, limit=5)
    record["history"] = [op.to_dict() for op in history]
    found = status.vm
    consoles = None if found is None else consoles_of(ts, found, status.local)
    record["consoles"] = [c.model_dump() for c in consoles or []]
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
            *guest_lines(ts, found, consoles, (record["accel"], record["accel_reason"])),
            f"desired:  {found.desired.value}",
            f"state:    {status.describe()}"
            + (f" (domid {status.domid})" if status.local and status.domid is not None else ""),
            *[f"drift:    {d} (changed outside the toolstack)" for d in status.drift],
            *pending_lines(status),
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
    from toolstack.status import status_of, wait_for_report

    ts = c.toolstack()
    status = status_of(ts, result.uuid)
    if not status.local and wait is not None:
        status = wait_for_report(ts, result.uuid, verb, wait)
        text = f"{verb} {result.name}: {status.describe()}"
    elif not status.local:
        text = f"{verb} {result.name}: queued for {status.host} (its agent applies it)"
    else:
        text = f"{verb} {result.name}: {status.describe()}"
    emit(
        {**status_record(status, ts.driver.host_info()), "queued": not status.local and wait is None},
        c.json,
        text,
    )


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


@vm.command("reboot")
@click.argument("name")
@click.option(
    "--apply",
    "apply_pending",
    is_flag=True,
    help="Restart the domain from its next-boot definition (power off, then start) to apply the pending "
    "changes; a plain reboot is the guest's and keeps the running configuration",
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="With --apply: seconds to wait")
@click.option("--force", is_flag=True, help="With --apply: destroy the VM if the guest does not power off")
@wait_option
@pass_ctx
@handled
def vm_reboot(
    c: Context, name: str, apply_pending: bool, timeout: float, force: bool, wait: float | None
) -> None:
    """Ask a VM's guest to reboot (it keeps its running configuration), or with --apply restart it from its
    next-boot definition, so that the changes ``vm show`` lists as pending take effect."""
    result = c.toolstack().reboot(name, apply=apply_pending, timeout=timeout, force=force)
    report_outcome(c, "reboot", result, wait)


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
    from toolstack.status import status_of

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
    emit(
        {**status_record(status_of(ts, result.uuid), ts.driver.host_info()), "queued": True, "from": source},
        c.json,
        text,
    )


def pending_lines(status: VMStatus) -> list[str]:
    """``vm show``'s lines on what the running domain gets only at its next boot."""
    if not status.pending:
        return []
    return [f"pending:  {change.describe('live ', 'next boot ')}" for change in status.pending] + [
        f"          (vm reboot {status.name} --apply restarts it from its next-boot definition)"
    ]


def consoles_of(ts: Any, found: VM, local: bool) -> list[ConsoleDevice]:
    """A VM's consoles (see :func:`toolstack.guest_info.consoles_of`)."""
    from toolstack.guest_info import consoles_of as read_consoles

    return read_consoles(ts.driver, found.uuid, found.spec, local)


def guest_lines(
    ts: Any,
    found: VM,
    consoles: list[ConsoleDevice] | None = None,
    accel: tuple[str | None, str] | None = None,
) -> list[str]:
    """``vm show``'s lines on how the VM boots and runs: boot, accelerator, CPU, consoles, autostart.

    Args:
        ts: The toolstack.
        found: The VM.
        consoles: Its consoles as :func:`consoles_of` gives them (read here when None).
        accel: Its accelerator and why, as its record has them (``status_record``; chosen here when None).
    """
    from toolstack.guest_info import accel_choice

    local = found.host in (None, ts.host)
    if consoles is None:
        consoles = consoles_of(ts, found, local)
    if accel is None:
        accel = accel_choice(found.spec, ts.driver.host_info(), local)
    spec = found.spec
    boot = spec.boot
    if boot.kernel:
        booted = f"kernel {boot.kernel}" + (f", initrd {boot.initrd}" if boot.initrd else "")
        booted += f", cmdline {boot.cmdline!r}" if boot.cmdline is not None else ""
    else:
        booted = f"from {boot.device}"
    return [
        f"boot:     {booted}",
        f"accel:    {accel[0] or 'none'} ({accel[1]})",
        f"cpu:      {spec.cpu or 'the hypervisor default'}",
        "consoles: " + (", ".join(c.describe() for c in consoles) or "none"),
        f"autostart: {'yes' if found.autostart else 'no'}",
    ]


# Commands of this group defined in their own modules (imported last: they take `vm` from here).
import toolstack.cli.vm_create  # noqa: E402
import toolstack.cli.vm_set  # noqa: E402
import toolstack.cli.vm_xml  # noqa: E402, F401
