"""The boot-time reconcile (``toolstack reconcile --boot``): after a host reboot the hypervisor runs nothing.

As xapi's auto_poweron does, it starts (and pauses, where desired) the VMs placed on this host (or on no
host) that main wants running or paused AND that have ``autostart``; the others that main wants running or
paused are recorded as stopped (their ``desired`` file), so that the next plain reconcile or the agent does
not start them either. Both happen in one commit whose subject says so (``boot on h1: started 2
(autostart), recorded 1 stopped (no autostart)``), with the names in its body.

It is for boot only, and safe to run again: it acts only on VMs whose domain is not active. A VM whose domain
runs already is left as it is, and listed as such (a toolstack restarted without a host reboot, a domain
the hypervisor kept). The host's difference from its last record (running then, shut off now) is what a
reboot does: it is not committed as drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.models import DomainInfo
from toolstack import layout
from toolstack.context import Context
from toolstack.models import VM, Desired
from toolstack.plan import Confirm, Plan, Progress
from toolstack.reconcile import apply_plan, confirm_plan, desired_vms, make_plan
from toolstack.vmsource import VMSource

SUBJECT_NAMES = 3  # names shown in the subject; all of them are in the body


@dataclass
class BootPlan:
    """What a boot-time reconcile does.

    Attributes:
        plan: The reconcile plan of the VMs to start (define where missing, start, pause where desired).
        autostart: Names of the VMs it starts: placed here, desired running or paused, with autostart.
        stopped: Names of the VMs it records as stopped: desired running or paused, without autostart.
        left: Names of the VMs whose domain is active already: left as they are.
        stopped_uuids: The uuids of ``stopped``.
    """

    plan: Plan
    autostart: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    stopped_uuids: list[str] = field(default_factory=list)

    def subject(self, host: str) -> str:
        """The commit's subject: what it started and what it recorded stopped, by count."""
        return (
            f"boot on {host}: started {len(self.autostart)} (autostart), "
            f"recorded {len(self.stopped)} stopped (no autostart)"
        )

    def body(self) -> str:
        lines = [f"started (autostart): {', '.join(self.autostart) or '-'}"]
        lines.append(f"recorded stopped (no autostart): {', '.join(self.stopped) or '-'}")
        if self.left:
            lines.append(f"left running (already active): {', '.join(self.left)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            **self.plan.to_dict(),
            "autostart": self.autostart,
            "stopped": self.stopped,
            "left": self.left,
        }


def _on_this_host(ctx: Context, vm: VM) -> bool:
    return vm.host is None or vm.host == ctx.host


def plan_boot(ctx: Context) -> BootPlan:
    """What booting this host's VMs would do (nothing is changed)."""
    found = Plan()
    vms, _ = desired_vms(VMSource(ctx.main.tree, ctx.host), ctx.vms, found)
    actual: dict[str, DomainInfo] = {str(info.uuid): info for info in ctx.driver.list()}
    boot = BootPlan(found)
    to_start: set[str] = set()
    for uuid, vm in sorted(vms.items(), key=lambda item: item[1].name):
        if not _on_this_host(ctx, vm) or vm.desired == Desired.STOPPED:
            continue
        info = actual.get(uuid)
        if info is not None and info.state.is_active:
            boot.left.append(vm.name)
        elif vm.autostart:
            boot.autostart.append(vm.name)
            to_start.add(uuid)
        else:
            boot.stopped.append(vm.name)
            boot.stopped_uuids.append(uuid)
    if to_start:
        boot.plan = make_plan(ctx, only=to_start)
        # A reboot explains the difference from the last record: it is not drift (as after an interrupted
        # task, whose rollback says so); the observed state is recorded in the boot commit.
        boot.plan.drift.clear()
    return boot


def boot_reconcile(
    ctx: Context, dry_run: bool = False, progress: Progress | None = None, confirm: Confirm = False
) -> BootPlan:
    """Start this host's autostart VMs and record its other wanted-running VMs stopped, in one commit.

    Args:
        confirm: As for reconcile: the plan only defines, starts and pauses, so nothing is asked of it unless
            the hypervisor changed in between (then it is refused unless ``confirm`` says yes).

    Raises:
        DestructivePlanRefused: the plan would stop or undefine domains and ``confirm`` did not say yes.
    """
    boot = plan_boot(ctx)
    if dry_run or not (boot.plan.actions or boot.stopped):
        return boot
    confirm_plan(boot.plan, confirm, "reconcile --boot")
    files: dict[str, bytes | None] = {
        layout.desired_path(uuid): f"{Desired.STOPPED.value}\n".encode() for uuid in boot.stopped_uuids
    }
    message = f"{boot.subject(ctx.host)}\n\n{boot.body()}"
    boot.plan = apply_plan(ctx, boot.plan, progress=progress, subject=message, files=files)
    return boot
