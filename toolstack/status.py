"""What the pool knows about each VM, seen from any host: the one view behind ``vm list``/``vm show``, the
API's VM bodies and the web page.

A VM placed on this host (or on no host) shows the live state of this host's hypervisor. A VM placed on
another host shows what that host last reported under ``hosts/<host>/domains/`` and when (``reported_at``):
this host's hypervisor knows nothing of it. A VM whose entry does not validate is listed as broken, with the
offending path and the error, and the others are listed as usual.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.models import DomainInfo, DomainState
from store import StoreError, Tree
from toolstack import layout
from toolstack.errors import InvalidInput, ToolstackError
from toolstack.models import VM, Observed
from toolstack.pending import FieldChange, pending_of, without_pending
from toolstack.reconcile import held_by_source
from toolstack.sync import pull

if TYPE_CHECKING:
    from toolstack.ops import Toolstack

UNKNOWN = "unknown"  # placed on a host that has reported nothing of it (yet)
BROKEN = "broken"  # its entry does not validate
ABSENT = "absent"  # placed here, and this host's hypervisor has no such domain


@dataclass(frozen=True)
class VMStatus:
    """One VM as the pool knows it.

    Attributes:
        uuid: The VM.
        name: Its name (for a broken entry: the name its config or ``names/`` gives, else "").
        vm: The VM as main describes it; None when its entry is broken.
        host: The host that runs it: its placement, or this host when it is placed on none.
        local: Whether ``host`` is this host (then ``state`` is the hypervisor's, read now).
        state: The live state (``absent`` if the hypervisor lacks it), the state ``host`` last reported,
            ``unknown`` (``host`` reported nothing of it) or ``broken``.
        reported_at: When ``host`` made that report (seconds since the epoch); None for a live state.
        domid: The domain id, live or reported.
        memory: MiB, live or reported.
        vcpus: vCPUs, live or reported.
        migrating_from: The source host of a migration that waits for that host to stop the VM.
        drift: How the running domain's memory or vCPUs differ from the desired values.
        pending: What the running domain gets only at its next boot, field by field (live, next-boot
            value); this host's domains only (:mod:`toolstack.pending`).
        error: For a broken entry: the offending path and what is wrong with it.
    """

    uuid: str
    name: str
    vm: VM | None
    host: str
    local: bool
    state: str
    reported_at: float | None = None
    domid: int | None = None
    memory: int | None = None
    vcpus: int | None = None
    migrating_from: str | None = None
    drift: list[str] = field(default_factory=list)
    pending: list[FieldChange] = field(default_factory=list)
    error: InvalidInput | None = None

    @property
    def broken(self) -> bool:
        return self.vm is None

    def age(self, now: float | None = None) -> float | None:
        """Seconds since ``host`` reported the state (None for a live state, or no report)."""
        if self.reported_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.reported_at)

    def describe(self, now: float | None = None) -> str:
        """The state for people: ``running`` here, ``running (h2, 12 s ago)`` elsewhere."""
        if self.broken:
            return f"{BROKEN}: {self.error}"
        text = self.state
        if not self.local:
            age = self.age(now)
            text += f" ({self.host}" + (f", {format_age(age)} ago)" if age is not None else ", no report)")
        if self.migrating_from:
            text += f", migrating from {self.migrating_from}"
        return text

    def settled(self) -> bool:
        """Whether the state (live or reported) is the desired one, with no migration still pending."""
        if self.vm is None or self.migrating_from is not None:
            return False
        try:
            return self.vm.desired.matches(DomainState(self.state))
        except ValueError:
            return False  # absent, unknown

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "host": self.host,
            "local": self.local,
            "state": self.state,
            "reported_at": self.reported_at,
            "age": self.age(now),
            "migrating_from": self.migrating_from,
            "drift": list(self.drift),
            "pending": [change.to_dict() for change in self.pending],
            "broken": self.broken,
            "error": None if self.error is None else broken_detail(self.uuid, self.error),
        }


def broken_detail(uuid: str, error: InvalidInput) -> dict[str, str]:
    """The structured form of a broken entry's error: the offending path and what is wrong."""
    path = getattr(error, "path", layout.vm_dir(uuid))
    return {"path": path, "message": getattr(error, "detail", str(error))}


def format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def resource_drift(vm: VM, state: str, memory: int | None, vcpus: int | None) -> list[str]:
    """How a running domain's memory and vCPUs differ from the desired values (none for a stopped one)."""
    try:
        active = DomainState(state).is_active
    except ValueError:
        return []
    if not active:
        return []
    found = []
    if memory is not None and memory != vm.spec.memory:
        found.append(f"memory {memory} MiB, desired {vm.spec.memory} MiB")
    if vcpus is not None and vcpus != vm.spec.vcpus:
        found.append(f"vcpus {vcpus}, desired {vm.spec.vcpus}")
    return found


def _broken_name(tree: Tree, uuid: str) -> str:
    """A broken VM's name, from whatever still says it: its config, else a ``names/`` record."""
    raw = tree.get(layout.config_path(uuid))
    try:
        name = json.loads(raw)["name"] if raw is not None else None
        if isinstance(name, str) and name:
            return name
    except (ValueError, TypeError, KeyError):
        pass
    mine = f"{uuid}\n".encode()
    return next((name for name, path in layout.name_records(tree) if tree.get(path) == mine), "")


def status_of(
    ts: Toolstack, uuid: str, tree: Tree | None = None, live: dict[str, DomainInfo] | None = None
) -> VMStatus:
    """The status of VM ``uuid`` in ``tree`` (default: main's).

    Args:
        live: This hypervisor's domains by uuid, when the caller listed them once for many VMs.
    """
    tree = tree if tree is not None else ts.main.tree
    try:
        vm = ts.inventory.read(tree, uuid)
    except InvalidInput as err:
        return VMStatus(
            uuid=uuid,
            name=_broken_name(tree, uuid),
            vm=None,
            host=ts.host,
            local=True,
            state=BROKEN,
            error=err,
        )
    host = vm.host or ts.host
    held = held_by_source(tree, vm)
    migrating_from = vm.migration.source if held is not None and vm.migration is not None else None
    if host == ts.host:
        info = live.get(uuid) if live is not None else ts.info(vm)
        if info is None:
            return VMStatus(uuid, vm.name, vm, host, True, ABSENT, migrating_from=migrating_from)
        state = info.state.value
        pending = pending_of(ts.driver, uuid, info)
        return VMStatus(
            uuid,
            vm.name,
            vm,
            host,
            True,
            state,
            domid=info.domid,
            memory=info.memory,
            vcpus=info.vcpus,
            migrating_from=migrating_from,
            drift=without_pending(resource_drift(vm, state, info.memory, info.vcpus), pending),
            pending=pending,
        )
    report = _report(tree, host, uuid)
    if report is None:
        return VMStatus(uuid, vm.name, vm, host, False, UNKNOWN, migrating_from=migrating_from)
    return VMStatus(
        uuid,
        vm.name,
        vm,
        host,
        False,
        report.state,
        reported_at=report.seen_at,
        domid=report.domid,
        memory=report.memory,
        vcpus=report.vcpus,
        migrating_from=migrating_from,
        drift=resource_drift(vm, report.state, report.memory, report.vcpus),
    )


def _report(tree: Tree, host: str, uuid: str) -> Observed | None:
    raw = layout.read_observed(tree, host, uuid)
    if raw is None:
        return None
    try:
        return Observed.model_validate_json(raw)
    except ValueError:
        return None  # a damaged report says nothing: the VM's state there is unknown


def listing(ts: Toolstack) -> list[VMStatus]:
    """Every VM of main, by name, broken ones included (one broken entry never hides the others)."""
    tree = ts.main.tree
    live = {str(info.uuid): info for info in ts.driver.list()}
    uuids = layout.vm_uuids(tree)
    found = [status_of(ts, uuid, tree, live) for uuid in uuids]
    ts.context.vms.keep_only(uuids)  # the VMs deleted since the last listing are parsed VMs no more
    return sorted(found, key=lambda status: (status.name, status.uuid))


def lookup(ts: Toolstack, ref: str) -> VMStatus:
    """One VM's status by name, uuid or unique uuid prefix (a broken one too).

    Raises:
        VMNotFound: no VM matches.
    """
    tree = ts.main.tree
    return status_of(ts, ts.resolve(ref, tree), tree)


class ReportTimeout(ToolstackError):
    """The host a VM is placed on did not report the desired state in time (its agent may be down, or
    not reached by this host's pushes).

    Attributes:
        host: The host waited for.
        state: What it last reported (``unknown``: nothing).
        waited: Seconds waited.
    """

    def __init__(self, vm: str, operation: str, host: str, state: str, waited: float) -> None:
        self.host = host
        self.state = state
        self.waited = waited
        super().__init__(
            f"vm {operation} {vm}: queued for {host}, but after {waited:g} s {host} reports it {state}: "
            f"is its agent running (toolstack agent --host {host}) and does it reach this pool?",
            vm=vm,
            operation=operation,
        )


def wait_for_report(
    ts: Toolstack,
    uuid: str,
    operation: str,
    timeout: float,
    interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> VMStatus:
    """Wait until the host a VM is placed on reports the VM's desired state.

    With a remote ``origin`` configured, each poll is a pull that also pushes main (the agents see the
    operation only once it reaches the shared repository); without one, this repository is the one the
    agents push to, and main is read again.

    Raises:
        ReportTimeout: the report did not match within ``timeout`` seconds.
    """
    try:
        ts.store.remote("origin")
        shared = True
    except StoreError:
        shared = False
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        if shared:
            pull(ts, "origin", push=True, reconcile=False)
        status = status_of(ts, uuid)
        if status.settled():
            return status
        if time.monotonic() >= deadline:
            raise ReportTimeout(
                status.name, operation, status.host, status.describe(), time.monotonic() - started
            )
        sleep(interval)
