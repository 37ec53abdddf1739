"""The toolstack's objects as response bodies."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers import ConsoleDevice
from toolstack.api.schemas import (
    ActionOut,
    BrokenEntry,
    CommitOut,
    HistoryEntry,
    PathChange,
    PlanOut,
    VMOut,
)
from toolstack.api.schemas_pending import PendingOut
from toolstack.guest_info import accel_choice, consoles_of
from toolstack.history import CommitView, LogEntry
from toolstack.plan import Plan
from toolstack.status import VMStatus, broken_detail

if TYPE_CHECKING:
    from toolstack.ops import Toolstack

# Values in the state repository are small JSON documents; a huge one is cut rather than sent whole.
MAX_VALUE_CHARS = 64 * 1024


def vm_out(
    status: VMStatus,
    host_info: Mapping[str, str],
    now: float | None = None,
    consoles: list[ConsoleDevice] | None = None,
) -> VMOut:
    """A VM as the API shows it (see :mod:`toolstack.status`), given this host's driver's ``host_info``
    (which accelerator it chooses) and, but in the list, the VM's consoles."""
    vm = status.vm
    accel, reason = accel_choice(vm.spec, host_info, status.local) if vm is not None else (None, "")
    return VMOut(
        uuid=status.uuid,
        name=status.name,
        desired=vm.desired if vm is not None else None,
        state=status.state,
        domid=status.domid,
        spec=vm.spec if vm is not None else None,
        observed=vm.observed if vm is not None else None,
        host=status.host,
        local=status.local,
        reported_at=status.reported_at,
        age=status.age(now),
        migrating_from=status.migrating_from,
        drift=list(status.drift),
        pending=[PendingOut(**change.to_dict()) for change in status.pending],
        broken=status.broken,
        error=BrokenEntry(**broken_detail(status.uuid, status.error)) if status.error is not None else None,
        autostart=vm.autostart if vm is not None else False,
        accel=accel,
        accel_reason=reason,
        consoles=consoles,
    )


def vm_detail(ts: Toolstack, status: VMStatus) -> VMOut:
    """One VM as ``GET /vms/{vm}`` and operations answer it: with its consoles, as ``vm show`` gives them. It
    asks the hypervisor, so it runs in a worker thread where the driver's reads may wait."""
    vm = status.vm
    consoles = None if vm is None else consoles_of(ts.driver, status.uuid, vm.spec, status.local)
    return vm_out(status, ts.driver.host_info(), consoles=consoles)


def history_entry(op: LogEntry) -> HistoryEntry:
    return HistoryEntry(
        commit=op.commit,
        time=op.time,
        author=op.author,
        message=op.subject,
        vms=list(op.vms),
        edited_by=list(op.edited_by),
    )


def plan_out(plan: Plan, dry_run: bool) -> PlanOut:
    return PlanOut(
        actions=[ActionOut(kind=a.kind, uuid=a.uuid, name=a.name, reason=a.reason) for a in plan.actions],
        withheld=[ActionOut(kind=a.kind, uuid=a.uuid, name=a.name, reason=a.reason) for a in plan.withheld],
        drift=list(plan.drift),
        unknown=list(plan.unknown),
        foreign=list(plan.foreign),
        invalid=list(plan.invalid),
        busy=list(plan.busy),
        errors=list(plan.errors),
        applied=plan.applied,
        dry_run=dry_run,
    )


def _as_text(value: bytes | None) -> tuple[str | None, bool]:
    if value is None:
        return None, False
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")[:MAX_VALUE_CHARS], True
    return text[:MAX_VALUE_CHARS], False


def path_change(path: str, old: bytes | None, new: bytes | None) -> PathChange:
    old_text, old_binary = _as_text(old)
    new_text, new_binary = _as_text(new)
    kind = "added" if old is None else "removed" if new is None else "changed"
    diff = "".join(
        difflib.unified_diff(
            (old_text or "").splitlines(keepends=True),
            (new_text or "").splitlines(keepends=True),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null",
        )
    )
    return PathChange(
        path=path, kind=kind, old=old_text, new=new_text, diff=diff, binary=old_binary or new_binary
    )


def commit_out(view: CommitView) -> CommitOut:
    info = view.info
    return CommitOut(
        commit=info.id,
        parents=list(info.parents),
        author=info.author,
        time=info.author_time,
        message=info.message,
        changes=[path_change(path, old, new) for path, old, new in view.changes],
    )
