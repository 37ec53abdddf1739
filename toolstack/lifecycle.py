"""Lifecycle operations of the toolstack: create, start/stop/pause/resume/reboot, delete, and migrate.

A service over the context (like :class:`toolstack.devices.ConfigOperations`): each method is one task on the
state repository that drives the hypervisor, and returns that task. :class:`toolstack.ops.Toolstack` answers
with the VM after it.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from drivers import Disk, DomainSpec, Nic
from drivers.errors import DomainExists
from drivers.models import DomainInfo, DomainState
from toolstack import layout
from toolstack.devices import disk_from_path, free_id, free_mac, free_target
from toolstack.errors import GuestIgnoredShutdown, InvalidInput, OperationConflict, OperationFailed, VMExists
from toolstack.models import VM, Desired, Migration, Task, field_errors, managed, uuid_for_name, vm_files
from toolstack.tasks import Operation, OperationService, TaskObserver
from toolstack.volumes import VolumeRequest


class LifecycleOperations(OperationService):
    """Create, run-state, delete and migrate operations."""

    def create(
        self,
        name: str,
        memory: int | str,
        vcpus: int = 1,
        disks: Sequence[str | Disk | VolumeRequest] = (),
        nics: Sequence[str | Nic] = (),
        host: str | None = None,
        start: bool = False,
        *,
        observer: TaskObserver | None = None,
        autostart: bool = False,
        **spec_fields: Any,
    ) -> Task:
        """Define a new VM, stopped, or with ``start`` also booted in the same task (as ``xl create``
        does). Disks may be paths (or VolumeRequests: a path with its format), NICs network names.

        A VM created with ``start`` is one operation: one task, one commit on main with its desired state
        running. If the boot fails, the domain is undefined again and nothing is recorded on main.

        ``autostart`` records that the VM is to be started when its host boots (``vms/<xx>/<uuid>/autostart``,
        a toolstack setting that a boot-time reconcile applies; the hypervisor's own autostart is not set).

        With ``host`` naming another host, the VM is only recorded, placed there: that host's agent defines
        it (every later operation on it is likewise a desired-state change that its agent applies).

        Every operation here takes an ``observer`` (:class:`toolstack.tasks.TaskObserver`) that is told its
        task once the VM is claimed, and whose precondition is checked before the hypervisor is called.

        Raises:
            InvalidInput: the spec does not validate (the message names the field).
            VMExists: the name is taken (also when a concurrent create wins the race).
        """
        uuid = str(spec_fields.pop("uuid", None) or uuidlib.uuid4())
        try:
            disk_models, nic_models = _devices(uuid, disks, nics)
            spec = managed(
                DomainSpec(
                    uuid=uuid,
                    name=name,
                    memory=memory,
                    vcpus=vcpus,
                    disks=disk_models,
                    nics=nic_models,
                    **spec_fields,
                )
            )
        except ValidationError as err:
            raise InvalidInput(f"invalid VM {name!r}: {field_errors(err)}", vm=name) from err
        except ValueError as err:
            raise InvalidInput(f"invalid VM {name!r}: {err}", vm=name) from err
        if uuid_for_name(self.ctx.main.tree, name) is not None:
            raise VMExists(name)

        def act() -> None:
            self.driver.define(spec)
            if start:
                self.driver.start(uuid)

        def undo() -> None:
            self.driver.destroy(uuid)
            self.driver.undefine(uuid)

        files: dict[str, bytes | None] = dict(vm_files(spec, Desired.RUNNING if start else Desired.STOPPED))
        if host is not None:
            files[layout.host_path(uuid)] = f"{host}\n".encode()
        if autostart:
            files[layout.autostart_path(uuid)] = b"true\n"
        operation = Operation(
            "create",
            uuid,
            name,
            files,
            act=act,
            compensate=undo,
            detail={"start": True} if start else {},
        )
        try:
            return self.runner.run(operation, observer)
        except OperationConflict as err:
            if any(c.path == layout.name_path(name) for c in err.conflicts):
                raise VMExists(name) from err  # a concurrent create of the same name merged first
            raise
        except OperationFailed as err:
            if isinstance(err.cause, DomainExists):
                raise VMExists(name) from err  # the hypervisor already has a domain of that name
            raise

    def _lifecycle(
        self,
        ref: str,
        verb: str,
        desired: Desired,
        act: Callable[[VM], None],
        observer: TaskObserver | None,
        detail: dict[str, Any] | None = None,
    ) -> Task:
        vm = self.inventory.vm(ref)
        before = self.inventory.info(vm)
        operation = Operation(
            verb,
            vm.uuid,
            vm.name,
            {layout.desired_path(vm.uuid): f"{desired.value}\n".encode()},
            act=lambda: act(vm),
            compensate=lambda: self._restore_state(vm, before),
            detail=detail or {},
        )
        return self.runner.run(operation, observer)

    def start(self, ref: str, *, observer: TaskObserver | None = None) -> Task:
        return self._lifecycle(ref, "start", Desired.RUNNING, lambda vm: self.driver.start(vm.uuid), observer)

    def shutdown(
        self, ref: str, timeout: float = 60.0, force: bool = False, *, observer: TaskObserver | None = None
    ) -> Task:
        """Ask the guest to power off; with ``force``, destroy it if it has not within ``timeout``."""

        def act(vm: VM) -> None:
            if not self.driver.shutdown(vm.uuid, timeout=timeout):
                if not force:
                    raise GuestIgnoredShutdown(vm.uuid, vm.name, timeout)
                self.driver.destroy(vm.uuid)

        return self._lifecycle(ref, "shutdown", Desired.STOPPED, act, observer)

    def reboot(
        self,
        ref: str,
        *,
        apply: bool = False,
        timeout: float = 60.0,
        force: bool = False,
        observer: TaskObserver | None = None,
    ) -> Task:
        """Ask the guest to reboot; it keeps its live configuration.

        With ``apply``, restart the domain from its persistent definition instead, so that the changes waiting
        for its next boot (:mod:`toolstack.pending`) take effect: the guest is asked to power off (with
        ``force``, destroyed if it has not within ``timeout``), then the domain is started. A stopped domain
        is only started.
        """
        if not apply:
            return self._lifecycle(
                ref, "reboot", Desired.RUNNING, lambda vm: self.driver.reboot(vm.uuid), observer
            )

        def restart(vm: VM) -> None:
            # A guest reboot keeps the live definition: only a new boot of the domain reads the persistent.
            active = self.driver.info(vm.uuid).state.is_active
            if active and not self.driver.shutdown(vm.uuid, timeout=timeout):
                if not force:
                    raise GuestIgnoredShutdown(vm.uuid, vm.name, timeout)
                self.driver.destroy(vm.uuid)
            self.driver.start(vm.uuid)

        return self._lifecycle(ref, "reboot", Desired.RUNNING, restart, observer, detail={"apply": True})

    def pause(self, ref: str, *, observer: TaskObserver | None = None) -> Task:
        return self._lifecycle(ref, "pause", Desired.PAUSED, lambda vm: self.driver.pause(vm.uuid), observer)

    def resume(self, ref: str, *, observer: TaskObserver | None = None) -> Task:
        return self._lifecycle(
            ref, "resume", Desired.RUNNING, lambda vm: self.driver.resume(vm.uuid), observer
        )

    def destroy(self, ref: str, *, observer: TaskObserver | None = None) -> Task:
        return self._lifecycle(
            ref, "destroy", Desired.STOPPED, lambda vm: self.driver.destroy(vm.uuid), observer
        )

    def delete(self, ref: str, *, observer: TaskObserver | None = None) -> Task:
        """Destroy if running, then undefine, and remove the VM from the state repository."""
        vm = self.inventory.vm(ref)
        before = self.inventory.info(vm)
        host = self.ctx.host
        intended: dict[str, bytes | None] = {
            layout.vm_dir(vm.uuid): None,
            layout.name_path(vm.name): None,
            layout.observed_path(host, vm.uuid): None,
            layout.legacy_observed_path(host, vm.uuid): None,
        }

        def act() -> None:
            self.driver.destroy(vm.uuid)
            self.driver.undefine(vm.uuid)

        def undo() -> None:
            if self.inventory.info(vm) is None:
                self.driver.define(vm.spec)
            self._restore_state(vm, before)

        operation = Operation("delete", vm.uuid, vm.name, intended, act=act, compensate=undo)
        return self.runner.run(operation, observer)

    def _restore_state(self, vm: VM, before: DomainInfo | None) -> None:
        """Bring the domain back to the run state it had before a failed operation."""
        now = self.inventory.info(vm)
        if before is None or now is None or now.state == before.state:
            return
        if before.state == DomainState.RUNNING:
            if now.state == DomainState.PAUSED:
                self.driver.resume(vm.uuid)
            elif not now.state.is_active:
                self.driver.start(vm.uuid)
        elif before.state == DomainState.PAUSED:
            if not now.state.is_active:
                self.driver.start(vm.uuid)
            self.driver.pause(vm.uuid)
        elif not before.state.is_active and now.state.is_active:
            self.driver.destroy(vm.uuid)

    def migrate(
        self, ref: str, to_host: str, force: bool = False, *, observer: TaskObserver | None = None
    ) -> Task | None:
        """Move a VM to another host (no driver here can live-migrate): place it there and record the move.

        The move is a handshake through main, so that the VM never runs on two hosts at once: the source
        stops and undefines it and records that under ``hosts/<source>/`` (at once when the source is this
        host, else its agent does on its next round), and the destination's agent starts it only once that
        record shows it stopped or gone (:func:`toolstack.reconcile.held_by_source`).

        Args:
            force: The operator declares the source host down: the destination starts the VM without
                waiting for the source's record. Given again for a VM already placed on ``to_host``, it
                releases a migration that waits for an unreachable source.

        Returns:
            The task, or None when the VM is placed on ``to_host`` already (nothing to do).
        """
        vm = self.inventory.vm(ref)
        host = self.ctx.host
        if not to_host or "/" in to_host:
            raise InvalidInput(f"invalid host name {to_host!r}", vm=vm.name)
        if vm.host == to_host and not (force and vm.migration is not None and not vm.migration.forced):
            return None
        source = vm.migration.source if vm.host == to_host and vm.migration else vm.host or host
        here = source == host
        before = self.inventory.info(vm) if here else None

        def act() -> None:
            if before is not None:
                self.driver.destroy(vm.uuid)
                self.driver.undefine(vm.uuid)

        def undo() -> None:
            if before is not None and self.inventory.info(vm) is None:
                self.driver.define(vm.spec)
            self._restore_state(vm, before)

        migration = Migration(source=source, target=to_host, at=time.time(), forced=force)
        intended: dict[str, bytes | None] = {
            layout.host_path(vm.uuid): f"{to_host}\n".encode(),
            layout.migration_path(vm.uuid): migration.encode(),
        }
        if here:
            # The stop is recorded in the very commit that places the VM elsewhere: the destination may
            # start it as soon as it sees that commit.
            intended[layout.observed_path(host, vm.uuid)] = None
            intended[layout.legacy_observed_path(host, vm.uuid)] = None
        return self.runner.run(
            Operation(
                "migrate",
                vm.uuid,
                vm.name,
                intended,
                act=act,
                compensate=undo,
                detail={"to": to_host, "from": source, **({"forced": True} if force else {})},
                remote=not here,
            ),
            observer,
        )


def _devices(
    uuid: str, disks: Sequence[str | Disk | VolumeRequest], nics: Sequence[str | Nic]
) -> tuple[list[Disk], list[Nic]]:
    """The devices of a new VM: disks given as paths and NICs given as network names get the first id,
    target and MAC that the devices given whole leave free (disk0/vda, nic0 and the VM's default MACs when
    there are none), so that mixing the two forms never makes a duplicate of its own.

    Raises:
        ValueError: a path or network name is refused (the message names it).
    """
    used_ids = {device.id for device in (*disks, *nics) if isinstance(device, Disk | Nic)}
    used_targets = {disk.target for disk in disks if isinstance(disk, Disk)}
    used_macs = {nic.mac for nic in nics if isinstance(nic, Nic)}
    disk_models: list[Disk] = []
    for disk in disks:
        if isinstance(disk, VolumeRequest | str):
            path = disk.path if isinstance(disk, VolumeRequest) else disk
            model = disk_from_path(path, 0, free_target(used_targets), free_id("disk", used_ids))
            if isinstance(disk, VolumeRequest):
                model = model.model_copy(update={"format": disk.format})
            used_ids.add(model.id)
            used_targets.add(model.target)
            disk = model
        disk_models.append(disk)
    nic_models: list[Nic] = []
    for index, nic in enumerate(nics):
        if isinstance(nic, str):
            nic = Nic(id=free_id("nic", used_ids), mac=free_mac(uuid, index, used_macs), network=nic)
            used_ids.add(nic.id)
            used_macs.add(nic.mac)
        nic_models.append(nic)
    return disk_models, nic_models
