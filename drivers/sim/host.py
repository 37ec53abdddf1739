"""The simulated hypervisor itself, with libvirt's raw rules.

Like libvirt's own API, and unlike the Driver contract above it, the host is strict: starting an active
domain, destroying an inactive one or suspending a shut-off one are errors. ``SimDriver`` turns these into
the contract's idempotent behaviour, exactly as ``LibvirtDriver`` does on top of libvirt.
"""

from __future__ import annotations

import contextlib
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator

from drivers.base import check_device_free, check_resource, existing_device, not_found
from drivers.errors import (
    DomainExists,
    InvalidArgument,
    InvalidState,
)
from drivers.models import Disk, DomainEvent, DomainSpec, DomainState, EventKind, Nic, Resource
from drivers.sim.store import SimDomain, StateStore, Transaction

EventSink = Callable[[DomainEvent], None]


class SimHost:
    """A host whose domains live in a StateStore.

    Args:
        store: Memory or directory storage.
        sink: Receives every event, after the change is stored.
    """

    def __init__(self, store: StateStore, sink: EventSink, origin: str = "") -> None:
        self.store = store
        self._origin = origin
        self._sink = sink
        self._pending = threading.local()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Transaction]:
        """A write transaction whose events are logged inside the lock and delivered after it is released.

        Delivering outside the lock lets callbacks take their time without blocking the host.
        """
        events: list[DomainEvent] = []
        self._pending.events = events
        try:
            with self.store.transaction() as tx:
                yield tx
                for event in events:
                    self.store.append_event(event, self._origin)
        finally:
            self._pending.events = None
        for event in events:
            self._sink(event)

    # -- queries -------------------------------------------------------------------------------------------

    def lookup(self, uuid: uuidlib.UUID, operation: str) -> SimDomain:
        """The stored domain; DomainNotFound if absent."""
        with self.store.transaction(write=False) as tx:
            return self._get(tx, uuid, operation)

    def all(self) -> list[SimDomain]:
        """Every domain, active or defined."""
        with self.store.transaction(write=False) as tx:
            return tx.all()

    # -- configuration -------------------------------------------------------------------------------------

    def define(self, spec: DomainSpec) -> None:
        """Store ``spec`` as the persistent config (libvirt defineXML: a same-uuid redefinition updates)."""
        with self._writing() as tx:
            holder = tx.uuid_for_name(spec.name)
            if holder is not None and holder != spec.uuid:
                raise DomainExists(
                    f"domain name {spec.name!r} is already used by {holder}",
                    uuid=spec.uuid,
                    operation="define",
                )
            old = tx.get(spec.uuid)
            if old is not None and old.name != spec.name:
                raise DomainExists(
                    f"domain {old.name!r} already exists with uuid {spec.uuid}; renaming is not supported",
                    uuid=spec.uuid,
                    operation="define",
                )
            domain = (
                SimDomain(uuid=spec.uuid, config=spec)
                if old is None
                else old.model_copy(update={"config": spec})
            )
            tx.put(domain)
            self._event(domain, EventKind.DEFINED, "added" if old is None else "updated")

    def undefine(self, uuid: uuidlib.UUID) -> None:
        """Drop the persistent config; an active domain becomes transient (libvirt's rule)."""
        with self._writing() as tx:
            domain = self._get(tx, uuid, "undefine")
            if domain.config is None:
                raise InvalidState("cannot undefine a transient domain", uuid=uuid, operation="undefine")
            if domain.state.is_active:
                domain = domain.model_copy(update={"config": None})
                tx.put(domain)
            else:
                tx.delete(uuid)
            self._event(domain, EventKind.UNDEFINED, "removed")

    # -- lifecycle -----------------------------------------------------------------------------------------

    def create(self, uuid: uuidlib.UUID) -> int:
        """Start an inactive domain; returns its new domid."""
        with self._writing() as tx:
            domain = self._get(tx, uuid, "start")
            if domain.state.is_active:
                raise InvalidState(f"domain {domain.name!r} is already running", uuid=uuid, operation="start")
            domid = tx.next_domid()
            domain = domain.model_copy(
                update={"state": DomainState.RUNNING, "domid": domid, "live": domain.config}
            )
            tx.put(domain)
            self._event(domain, EventKind.STARTED, "booted")
            return domid

    def request_shutdown(self, uuid: uuidlib.UUID) -> None:
        """Send the ACPI power button; a cooperative simulated guest powers off at once."""
        with self._writing() as tx:
            domain = self._get(tx, uuid, "shutdown")
            if not domain.state.is_active:
                raise InvalidState("domain is not running", uuid=uuid, operation="shutdown")
            if domain.ignores_shutdown:
                return
            self._event(domain, EventKind.SHUTDOWN, "guest")
            self._stop(tx, domain, DomainState.SHUTOFF, "shutdown")

    def destroy(self, uuid: uuidlib.UUID) -> None:
        """Hard power-off; an inactive domain is an error (libvirt's VIR_ERR_OPERATION_INVALID)."""
        with self._writing() as tx:
            domain = self._get(tx, uuid, "destroy")
            if not domain.state.is_active:
                raise InvalidState("domain is not running", uuid=uuid, operation="destroy")
            self._stop(tx, domain, DomainState.SHUTOFF, "destroyed")

    def reboot(self, uuid: uuidlib.UUID) -> None:
        """Reboot a running domain: it keeps its domid, like QEMU; the live config is kept."""
        with self._writing() as tx:
            domain = self._get(tx, uuid, "reboot")
            if domain.state != DomainState.RUNNING:
                raise InvalidState(f"domain is {domain.state}, not running", uuid=uuid, operation="reboot")
            self._event(domain, EventKind.REBOOTED, "")

    def set_run_state(self, uuid: uuidlib.UUID, wanted: DomainState, operation: str) -> None:
        """Suspend (``PAUSED``) a running domain or resume (``RUNNING``) a paused one, strictly."""
        required = DomainState.RUNNING if wanted == DomainState.PAUSED else DomainState.PAUSED
        with self._writing() as tx:
            domain = self._get(tx, uuid, operation)
            if domain.state != required:
                raise InvalidState(
                    f"domain is {domain.state}, not {required}", uuid=uuid, operation=operation
                )
            domain = domain.model_copy(update={"state": wanted})
            tx.put(domain)
            kind = EventKind.SUSPENDED if wanted == DomainState.PAUSED else EventKind.RESUMED
            self._event(domain, kind, "")

    # -- devices and resources -----------------------------------------------------------------------------

    def attach(self, uuid: uuidlib.UUID, device: Disk | Nic, live: bool, config: bool) -> None:
        """Add ``device`` to the live and/or persistent config; both are checked before either changes."""
        with self._writing() as tx:
            domain = self._require(tx, uuid, "attach_device", live, config)
            updates = {}
            for field in self._fields(live, config):
                spec = getattr(domain, field)
                check_device_free(spec, device, uuid)
                updates[field] = spec.with_device(device)
            domain = domain.model_copy(update=updates)
            tx.put(domain)
            if live:
                self._event(domain, EventKind.DEVICE_ADDED, device.id)

    def detach(self, uuid: uuidlib.UUID, device_id: str, live: bool, config: bool) -> None:
        """Remove ``device_id`` from the live and/or persistent config; the simulated guest complies."""
        with self._writing() as tx:
            domain = self._require(tx, uuid, "detach_device", live, config)
            updates = {}
            for field in self._fields(live, config):
                spec: DomainSpec = getattr(domain, field)
                existing_device(spec, device_id, uuid, _label(field))
                updates[field] = spec.without_device(device_id)
            domain = domain.model_copy(update=updates)
            tx.put(domain)
            if live:
                self._event(domain, EventKind.DEVICE_REMOVED, device_id)

    def set_resource(
        self, uuid: uuidlib.UUID, resource: Resource, value: int, live: bool, config: bool
    ) -> None:
        """Set ``vcpus`` or ``memory`` (MiB) within the domain's maximum."""
        with self._writing() as tx:
            domain = self._require(tx, uuid, f"set_{resource}", live, config)
            updates = {}
            for field in self._fields(live, config):
                spec: DomainSpec = getattr(domain, field)
                check_resource(spec, resource, value, uuid)
                updates[field] = spec.evolve(**{resource: value})
            domain = domain.model_copy(update=updates)
            tx.put(domain)
            if live:
                kind = EventKind.VCPUS_CHANGED if resource == "vcpus" else EventKind.MEMORY_CHANGED
                self._event(domain, kind, str(value))

    # -- out-of-band changes (drift) -----------------------------------------------------------------------

    def force(
        self,
        uuid: uuidlib.UUID,
        operation: str,
        change: Callable[[SimDomain], SimDomain],
        event: tuple[EventKind, str] | None = None,
    ) -> None:
        """Apply an arbitrary change, bypassing the rules, and optionally report it as an event."""
        with self._writing() as tx:
            changed = change(self._get(tx, uuid, operation))
            tx.put(changed)
            if event is not None:
                self._event(changed, *event)

    def kill(self, uuid: uuidlib.UUID, crashed: bool) -> None:
        """The domain dies behind our back (host OOM killer, admin's ``virsh destroy``, guest crash)."""
        with self._writing() as tx:
            domain = self._get(tx, uuid, "oob_kill")
            if not domain.state.is_active:
                raise InvalidState("domain is not running", uuid=uuid, operation="oob_kill")
            if crashed:
                self._event(domain, EventKind.CRASHED, "panicked")
            self._stop(tx, domain, DomainState.CRASHED if crashed else DomainState.SHUTOFF, "killed")

    def adopt(self, spec: DomainSpec, running: bool, persistent: bool) -> None:
        """A domain appears that nobody defined through us (created with virsh/xl by hand)."""
        with self._writing() as tx:
            if tx.get(spec.uuid) is not None or tx.uuid_for_name(spec.name) is not None:
                raise DomainExists("uuid or name already used", uuid=spec.uuid, operation="oob_create")
            if not running and not persistent:
                raise InvalidArgument("an out-of-band domain must be running or persistent")
            domain = SimDomain(
                uuid=spec.uuid,
                config=spec if persistent else None,
                live=spec if running else None,
                state=DomainState.RUNNING if running else DomainState.SHUTOFF,
                domid=tx.next_domid() if running else None,
            )
            tx.put(domain)
            if persistent:
                self._event(domain, EventKind.DEFINED, "added")
            if running:
                self._event(domain, EventKind.STARTED, "booted")

    # -- helpers -------------------------------------------------------------------------------------------

    def _get(self, tx: Transaction, uuid: uuidlib.UUID, operation: str) -> SimDomain:
        domain = tx.get(uuid)
        if domain is None:
            raise not_found(uuid, operation)
        return domain

    def _require(
        self, tx: Transaction, uuid: uuidlib.UUID, operation: str, live: bool, config: bool
    ) -> SimDomain:
        domain = self._get(tx, uuid, operation)
        if live and not domain.state.is_active:
            raise InvalidState("a LIVE change needs an active domain", uuid=uuid, operation=operation)
        if config and domain.config is None:
            raise InvalidState("a transient domain has no persistent config", uuid=uuid, operation=operation)
        return domain

    @staticmethod
    def _fields(live: bool, config: bool) -> list[str]:
        return [field for field, wanted in (("live", live), ("config", config)) if wanted]

    def _stop(self, tx: Transaction, domain: SimDomain, state: DomainState, detail: str) -> None:
        if domain.config is None:
            tx.delete(domain.uuid)  # a transient domain vanishes when it stops
        else:
            tx.put(domain.model_copy(update={"state": state, "domid": None, "live": None}))
        self._event(domain, EventKind.STOPPED, detail)

    def _event(self, domain: SimDomain, kind: EventKind, detail: str) -> None:
        self._pending.events.append(DomainEvent(uuid=domain.uuid, name=domain.name, kind=kind, detail=detail))


def _label(field: str) -> str:
    return "live" if field == "live" else "persistent"
