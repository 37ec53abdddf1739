"""Configuration operations of the toolstack: memory and vCPUs, and device attach/detach.

A service over the context, like :class:`toolstack.lifecycle.LifecycleOperations`: each method is one task,
and returns it. Also the device helpers both use (default MACs, disk targets, free ids).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from drivers import Disk, DomainSpec, Nic
from drivers.devices import Bus
from drivers.models import Scope, parse_memory
from toolstack import layout
from toolstack.errors import InvalidInput
from toolstack.models import VM, Task, field_errors, vm_files
from toolstack.tasks import Operation, OperationService, TaskObserver


def default_mac(uuid: str, index: int) -> str:
    """A stable, locally administered MAC for a VM's n-th NIC (Xen's 00:16:3e prefix)."""
    digest = hashlib.sha1(f"{uuid}/{index}".encode()).digest()
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in (digest[0] & 0x7F, digest[1], digest[2]))


def disk_target(index: int) -> str:
    """The ``index``-th (from 0) virtio disk name, as Linux names them: vda..vdz, vdaa..vdzz, vdaaa..."""
    letters = ""
    number = index + 1  # bijective base 26: there is no zero digit, "z" is followed by "aa"
    while number:
        number, digit = divmod(number - 1, 26)
        letters = chr(ord("a") + digit) + letters
    return f"vd{letters}"


def disk_from_path(
    path: str, index: int, target: str | None = None, device_id: str | None = None, readonly: bool = False
) -> Disk:
    fmt = "qcow2" if path.endswith(".qcow2") else "raw"
    target = target or disk_target(index)
    return Disk(
        id=device_id or f"disk{index}",
        source=os.path.abspath(path),
        format=fmt,
        target=target,
        bus=bus_of_target(target),
        readonly=readonly,
    )


def bus_of_target(target: str) -> Bus:
    """The bus a disk given by path gets from its guest device name: ``xvd*`` is Xen's PV bus, else virtio.

    Without it a disk attached as ``--target xvdb`` was a virtio disk named xvdb, which xl refuses.
    """
    return "xen" if target.startswith("xvd") else "virtio"


CDROM_ID = "cdrom0"
CDROM_TARGET = "hdc"  # the IDE secondary master: a CD-ROM drive every x86 machine type (i440fx) has
# What ``vm set`` changes besides memory and vCPUs: DomainSpec fields (None resets cpu, accel, graphics),
# the CD-ROM's image (None removes the drive) and the toolstack's autostart setting.
SETTINGS = ("boot", "cpu", "accel", "graphics", "cdrom", "autostart")


def cdrom_disk(path: str) -> Disk:
    """A read-only IDE CD-ROM drive holding the image ``path``."""
    return Disk(id=CDROM_ID, source=os.path.abspath(path), target=CDROM_TARGET, bus="ide", device="cdrom")


def with_cdrom(spec: DomainSpec, path: str | None) -> DomainSpec:
    """``spec`` with its CD-ROM drive holding ``path`` (added if it had none), or without it (None)."""
    current = next((d for d in spec.disks if d.device == "cdrom"), None)
    if current is not None:
        spec = spec.without_device(current.id)
    if path is None:
        return spec
    disk = cdrom_disk(path)
    if current is not None:  # the drive keeps its place on the bus
        disk = disk.model_copy(update={"id": current.id, "target": current.target, "bus": current.bus})
    return spec.with_device(disk)


def free_id(prefix: str, used: set[str]) -> str:
    """The first of ``prefix``0, ``prefix``1... not in ``used``."""
    number = 0
    while f"{prefix}{number}" in used:
        number += 1
    return f"{prefix}{number}"


def free_target(used: set[str]) -> str:
    """The first of vda, vdb... vdaa... not in ``used``."""
    index = 0
    while disk_target(index) in used:
        index += 1
    return disk_target(index)


def free_mac(uuid: str, index: int, used: set[str]) -> str:
    """The VM's default MAC for its ``index``-th NIC, or the next default one not in ``used``."""
    while default_mac(uuid, index) in used:
        index += 1
    return default_mac(uuid, index)


class ConfigOperations(OperationService):
    """Memory, vCPU and device operations."""

    # -- configuration ---------------------------------------------------------------------------------------
    def set_resources(
        self,
        ref: str,
        memory: int | str | None = None,
        vcpus: int | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        observer: TaskObserver | None = None,
    ) -> Task:
        """Change memory and/or vCPUs (persistently, and live if the VM runs) and the ``settings`` given.

        Args:
            settings: Any of :data:`SETTINGS`: ``boot`` (a Boot, or its fields), ``cpu``, ``accel`` and
                ``graphics`` (None resets them to the default), ``cdrom`` (an image path; None removes the
                drive) and ``autostart``. They change the persistent definition only: a running domain
                gets them at its next boot.
        """
        vm = self.inventory.vm(ref)
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise InvalidInput(f"vm set {vm.name}: unknown settings {', '.join(unknown)}", vm=vm.name)
        changes: dict[str, Any] = {}
        try:
            if memory is not None:
                changes["memory"] = parse_memory(memory)
            if vcpus is not None:
                changes["vcpus"] = vcpus
            ceilings = {}
            # Growing past a ceiling raises the ceiling (in the persistent config: the next boot gets it).
            if "memory" in changes and changes["memory"] > vm.spec.effective_max_memory:
                ceilings["max_memory"] = None
            if "vcpus" in changes and changes["vcpus"] > vm.spec.effective_max_vcpus:
                ceilings["max_vcpus"] = None
            fields = {key: settings[key] for key in ("boot", "cpu", "accel", "graphics") if key in settings}
            spec = vm.spec.evolve(**changes, **ceilings, **fields)
            if "cdrom" in settings:
                spec = with_cdrom(spec, settings["cdrom"])
        except ValidationError as err:
            raise InvalidInput(f"vm set {vm.name}: {field_errors(err)}", vm=vm.name) from err
        except ValueError as err:
            raise InvalidInput(f"vm set {vm.name}: {err}", vm=vm.name) from err
        if not changes and not settings:
            raise InvalidInput("vm set: give what to change (--memory, --vcpus, --kernel...)", vm=vm.name)
        files = _device_changes(vm, spec)
        config = layout.config_path(vm.uuid)
        files[config] = vm_files(spec, vm.desired)[config]
        if "autostart" in settings:
            files[layout.autostart_path(vm.uuid)] = b"true\n" if settings["autostart"] else None
        detail = {**changes, **{key: _plain(value) for key, value in settings.items()}}
        old = vm.spec
        before = self.inventory.info(vm)
        live = before is not None and before.state.is_active

        def act() -> None:
            # Live where the running domain allows it (within its maxima); the persistent config always.
            if live and "memory" in changes and spec.memory <= old.effective_max_memory:
                self.driver.set_memory(vm.uuid, spec.memory, Scope.LIVE)
            if live and "vcpus" in changes and spec.vcpus <= old.effective_max_vcpus:
                self.driver.set_vcpus(vm.uuid, spec.vcpus, Scope.LIVE)
            self.driver.define(spec)

        def undo() -> None:
            self.driver.define(old)
            if live and before is not None:
                now = self.driver.info(vm.uuid)
                if now.state.is_active and now.memory != before.memory:
                    self.driver.set_memory(vm.uuid, before.memory, Scope.LIVE)
                if now.state.is_active and now.vcpus != before.vcpus:
                    self.driver.set_vcpus(vm.uuid, before.vcpus, Scope.LIVE)

        return self.runner.run(
            Operation("set", vm.uuid, vm.name, files, act=act, compensate=undo, detail={"changes": detail}),
            observer,
        )

    def attach(self, ref: str, device: Disk | Nic, *, observer: TaskObserver | None = None) -> Task:
        """Add a device, persistently and (if the VM runs) live."""
        vm = self.inventory.vm(ref)
        try:
            spec = vm.spec.with_device(device)
        except ValueError as err:
            raise InvalidInput(f"{device.kind} attach {vm.name}: {err}", vm=vm.name) from err
        path = layout.device_path(vm.uuid, device.id)

        def undo() -> None:
            if self.driver.get_spec(vm.uuid).device(device.id) is not None:
                self.driver.detach_device(vm.uuid, device.id)

        return self.runner.run(
            Operation(
                f"{device.kind} attach",
                vm.uuid,
                vm.name,
                {path: vm_files(spec, vm.desired)[path]},
                act=lambda: self.driver.attach_device(vm.uuid, device),
                compensate=undo,
                detail={"device": device.id},
            ),
            observer,
        )

    def attach_disk(
        self,
        ref: str,
        path: str,
        target: str | None = None,
        device_id: str | None = None,
        readonly: bool = False,
        *,
        observer: TaskObserver | None = None,
    ) -> Task:
        vm = self.inventory.vm(ref)
        target = target or free_target({d.target for d in vm.spec.disks})
        device_id = device_id or free_id("disk", {d.id for d in vm.spec.devices})
        try:
            disk = disk_from_path(path, 0, target, device_id, readonly)
        except ValueError as err:
            raise InvalidInput(f"disk attach {vm.name}: {err}", vm=vm.name) from err
        return self.attach(vm.uuid, disk, observer=observer)

    def attach_nic(
        self,
        ref: str,
        network: str | None = None,
        bridge: str | None = None,
        mac: str | None = None,
        device_id: str | None = None,
        *,
        observer: TaskObserver | None = None,
    ) -> Task:
        vm = self.inventory.vm(ref)
        device_id = device_id or free_id("nic", {d.id for d in vm.spec.devices})
        try:
            nic = Nic(
                id=device_id,
                mac=mac or default_mac(vm.uuid, len(vm.spec.nics) + 7),
                network=network,
                bridge=bridge,
            )
        except ValueError as err:
            raise InvalidInput(f"nic attach {vm.name}: {err}", vm=vm.name) from err
        return self.attach(vm.uuid, nic, observer=observer)

    def detach(self, ref: str, device_id: str, *, observer: TaskObserver | None = None) -> Task:
        """Remove a device by id, persistently and (if the VM runs) live."""
        vm = self.inventory.vm(ref)
        device = vm.spec.device(device_id)
        if device is None:
            raise InvalidInput(f"VM {vm.name} has no device {device_id!r}", vm=vm.name)

        def undo() -> None:
            if self.driver.get_spec(vm.uuid).device(device_id) is None:
                self.driver.attach_device(vm.uuid, device)

        return self.runner.run(
            Operation(
                f"{device.kind} detach",
                vm.uuid,
                vm.name,
                {layout.device_path(vm.uuid, device_id): None},
                act=lambda: self.driver.detach_device(vm.uuid, device_id),
                compensate=undo,
                detail={"device": device_id},
            ),
            observer,
        )


def _device_changes(vm: VM, spec: DomainSpec) -> dict[str, bytes | None]:
    """The device files that change from ``vm``'s spec to ``spec`` (None: removed)."""
    before = {d.id: d for d in vm.spec.devices}
    after = {d.id: d for d in spec.devices}
    files: dict[str, bytes | None] = {}
    for device_id in before.keys() | after.keys():
        if before.get(device_id) != after.get(device_id):
            path = layout.device_path(vm.uuid, device_id)
            files[path] = vm_files(spec, vm.desired)[path] if device_id in after else None
    return files


def _plain(value: Any) -> Any:
    """A setting as the task record's JSON holds it."""
    return value.model_dump(mode="json", exclude_none=True) if hasattr(value, "model_dump") else value
