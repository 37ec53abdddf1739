"""Ownership on the hypervisor: the toolstack touches only the domains of its own pool.

Every domain the toolstack defines carries three tags in the hypervisor's own metadata (libvirt's
``<metadata>``, the xl config's spec comment, the simulator's record): ``managed-by: git-toolstack``, the
pool's id and the VM's uuid. :class:`OwnedDriver` wraps the driver that a toolstack uses and adds the tags on
every define; every call that changes a domain (define over an existing one, start, stop, destroy, undefine,
devices, resources) first checks that the domain is the pool's own and raises :class:`ForeignDomain`
otherwise. So no code path — reconcile, rollback, adopt, an agent's round, a pull — can stop, undefine or
redefine a domain of another pool or one the toolstack never defined; only :meth:`OwnedDriver.claim` takes
one over, and only for ``reconcile --adopt``.

Domains tagged by a release from before pool ids (``managed-by`` without a pool id) are *legacy*: they are
not the pool's until ``reconcile --adopt`` claims them. The pool and VM tags are the hypervisor's business
only: :meth:`OwnedDriver.get_spec` gives specs back without them, as main stores them.
"""

from __future__ import annotations

import enum
import threading
from typing import Any

from drivers import Driver, DriverError
from drivers.base import DomainRef, EventCallback, Subscription, not_found
from drivers.console import ConsoleStream
from drivers.errors import DomainNotFound
from drivers.models import ConsoleDevice, DomainInfo, DomainSpec, Scope
from toolstack.models import MANAGED_KEY, MANAGED_VALUE

POOL_KEY = "toolstack-pool"
VM_KEY = "toolstack-vm"


class Ownership(enum.StrEnum):
    """Whose a domain is, as seen from one pool."""

    OURS = "ours"
    LEGACY = "legacy"  # tagged by an older release of the toolstack, without a pool id
    FOREIGN = "foreign"  # another pool's
    UNMANAGED = "unmanaged"  # never defined by the toolstack (virsh, xl, another tool)


def ownership(spec: DomainSpec, pool_id: str) -> Ownership:
    """Whose the domain ``spec`` (as the hypervisor reports it) is, seen from pool ``pool_id``."""
    metadata = spec.metadata
    if metadata.get(MANAGED_KEY) != MANAGED_VALUE:
        return Ownership.UNMANAGED
    pool = metadata.get(POOL_KEY)
    if pool is None:
        return Ownership.LEGACY
    if pool != pool_id or metadata.get(VM_KEY, str(spec.uuid)) != str(spec.uuid):
        return Ownership.FOREIGN
    return Ownership.OURS


def owner_of(spec: DomainSpec) -> str | None:
    """The pool id a domain is tagged with, if any."""
    return spec.metadata.get(POOL_KEY)


def tagged(spec: DomainSpec, pool_id: str) -> DomainSpec:
    """``spec`` as given to the hypervisor: tagged with the toolstack, the pool and the VM."""
    tags = {MANAGED_KEY: MANAGED_VALUE, POOL_KEY: pool_id, VM_KEY: str(spec.uuid)}
    if all(spec.metadata.get(key) == value for key, value in tags.items()):
        return spec
    return spec.evolve(metadata={**spec.metadata, **tags})


def untagged(spec: DomainSpec) -> DomainSpec:
    """``spec`` without the pool and VM tags (as main stores it)."""
    if POOL_KEY not in spec.metadata and VM_KEY not in spec.metadata:
        return spec
    metadata = {k: v for k, v in spec.metadata.items() if k not in (POOL_KEY, VM_KEY)}
    # Not evolve(): dropping metadata entries from a valid spec leaves a valid spec (no validator relates
    # metadata to another field), so validating it again (~10x the cost of this copy, per VM of every plan)
    # would only reproduce it.
    return spec.model_copy(update={"metadata": metadata})


class ForeignDomain(DriverError):
    """A call would change a domain this pool does not own. Nothing was done.

    Attributes:
        owner: The domain's :class:`Ownership` as seen from this pool.
        pool: The pool the domain is tagged with, if any.
    """

    def __init__(self, uuid: str, name: str, owner: Ownership, pool: str | None, operation: str) -> None:
        self.owner = owner
        self.pool = pool
        whose = {
            Ownership.FOREIGN: f"belongs to another pool ({pool})",
            Ownership.LEGACY: "was tagged by a release without pool ids (reconcile --adopt claims it)",
            Ownership.UNMANAGED: "is not managed by the toolstack (reconcile --adopt imports it)",
        }.get(owner, "is not this pool's")
        super().__init__(
            f"refusing to {operation} domain {name} ({uuid}): it {whose}", uuid=uuid, operation=operation
        )


class OwnedDriver(Driver):
    """A driver that acts only on the domains of one pool (see the module docstring).

    Every other attribute (capabilities, events, a simulator's fault plan...) is the wrapped driver's.

    Args:
        driver: The hypervisor driver.
        pool_id: The pool whose domains this toolstack may change.
    """

    def __init__(self, driver: Driver, pool_id: str) -> None:
        self.inner = driver
        self.pool_id = pool_id
        self.uri = driver.uri
        # Domains seen to be ours (or defined by us) in this process: checked once, not on every call.
        self._ours: set[str] = set()
        self._mutex = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property  # type: ignore[override]
    def reads_never_wait(self) -> bool:  # the base class's False would hide the wrapped driver's own
        return self.inner.reads_never_wait

    # -- ownership -----------------------------------------------------------------------------------------
    def owner(self, uuid: DomainRef) -> Ownership:
        """Whose the domain is. Raises DomainNotFound if it is absent."""
        return ownership(self.inner.get_spec(uuid), self.pool_id)

    def inspect(self, uuid: DomainRef) -> tuple[Ownership, DomainSpec]:
        """Whose the domain is and its persistent spec as :meth:`get_spec` gives it, from one read (a plan
        asks both of every domain). Raises DomainNotFound if it is absent."""
        spec = self.inner.get_spec(uuid)
        return ownership(spec, self.pool_id), untagged(spec)

    def _check(self, uuid: DomainRef, operation: str) -> bool:
        """Raise ForeignDomain unless the domain is ours; False if it is absent (the call's contract says
        what absence means)."""
        key = str(uuid)
        if key in self._ours:
            return True
        try:
            spec = self.inner.get_spec(uuid)
        except DomainNotFound:
            return False
        owner = ownership(spec, self.pool_id)
        if owner is not Ownership.OURS:
            raise ForeignDomain(str(spec.uuid), spec.name, owner, owner_of(spec), operation)
        with self._mutex:
            self._ours.add(key)
        return True

    def claim(self, spec: DomainSpec) -> None:
        """Define ``spec`` over a domain that is not the pool's yet, tagging it as ours: ``reconcile --adopt``
        only. Another pool's domain is never claimed.

        Raises:
            ForeignDomain: the domain belongs to another pool.
        """
        try:
            current = self.inner.get_spec(spec.uuid)
        except DomainNotFound:
            current = None
        if current is not None and ownership(current, self.pool_id) is Ownership.FOREIGN:
            raise ForeignDomain(str(spec.uuid), spec.name, Ownership.FOREIGN, owner_of(current), "adopt")
        self.inner.define(tagged(spec, self.pool_id))
        with self._mutex:
            self._ours.add(str(spec.uuid))

    # -- the driver contract, guarded ------------------------------------------------------------------------
    def define(self, spec: DomainSpec) -> None:
        self._check(spec.uuid, "redefine")
        self.inner.define(tagged(spec, self.pool_id))
        with self._mutex:
            self._ours.add(str(spec.uuid))

    def undefine(self, uuid: DomainRef) -> None:
        self._check(uuid, "undefine")
        self.inner.undefine(uuid)
        with self._mutex:
            self._ours.discard(str(uuid))

    def start(self, uuid: DomainRef) -> None:
        self._check(uuid, "start")
        self.inner.start(uuid)

    def shutdown(self, uuid: DomainRef, timeout: float = 60.0) -> bool:
        self._check(uuid, "shut down")
        return self.inner.shutdown(uuid, timeout=timeout)

    def reboot(self, uuid: DomainRef) -> None:
        self._check(uuid, "reboot")
        self.inner.reboot(uuid)

    def destroy(self, uuid: DomainRef) -> None:
        self._check(uuid, "destroy")
        self.inner.destroy(uuid)

    def pause(self, uuid: DomainRef) -> None:
        self._check(uuid, "pause")
        self.inner.pause(uuid)

    def resume(self, uuid: DomainRef) -> None:
        self._check(uuid, "resume")
        self.inner.resume(uuid)

    def attach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        self._check(uuid, "attach a device to")
        self.inner.attach_device(uuid, device, scope)

    def detach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        self._check(uuid, "detach a device from")
        self.inner.detach_device(uuid, device, scope)

    def set_vcpus(self, uuid: DomainRef, count: int, scope: Scope | None = None) -> None:
        self._check(uuid, "change the vCPUs of")
        self.inner.set_vcpus(uuid, count, scope)

    def set_memory(self, uuid: DomainRef, mib: int, scope: Scope | None = None) -> None:
        self._check(uuid, "change the memory of")
        self.inner.set_memory(uuid, mib, scope)

    # -- reads ---------------------------------------------------------------------------------------------
    def console(self, uuid: DomainRef, force: bool = False) -> ConsoleStream:
        if not self._check(uuid, "console"):
            raise not_found(uuid, "console")
        return self.inner.console(uuid, force)

    def host_info(self) -> dict[str, str]:
        return self.inner.host_info()

    def dump_xml(self, uuid: DomainRef, inactive: bool = False) -> str:
        return self.inner.dump_xml(uuid, inactive)

    def consoles(self, uuid: DomainRef) -> list[ConsoleDevice]:
        return self.inner.consoles(uuid)

    def create_volume(self, path: str, size_mib: int, fmt: str = "raw") -> None:
        self.inner.create_volume(path, size_mib, fmt)

    def info(self, uuid: DomainRef) -> DomainInfo:
        return self.inner.info(uuid)

    def list(self) -> list[DomainInfo]:
        return self.inner.list()

    def get_spec(self, uuid: DomainRef, live: bool = False) -> DomainSpec:
        return untagged(self.inner.get_spec(uuid, live=live))

    def live_and_persistent(self, uuid: DomainRef) -> tuple[DomainSpec, DomainSpec]:
        live, persistent = self.inner.live_and_persistent(uuid)
        if live is persistent:
            shared = untagged(live)
            return shared, shared
        return untagged(live), untagged(persistent)

    def events(self, callback: EventCallback) -> Subscription:
        return self.inner.events(callback)

    def capabilities(self) -> frozenset[str]:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"OwnedDriver({self.inner!r}, pool={self.pool_id})"
