"""The driver contract every hypervisor implements, and the event plumbing and checks they share.

Each abstract method's docstring is the contract (after Nova's virt driver): the contract suite in
``tests/drivers/test_contract.py`` checks every statement made here against every driver. The rules the
contract states about arguments (scopes, device clashes, the vCPU and memory range) are checked by the
functions at the end of this module, which every driver calls before asking its hypervisor: one copy of
each rule and of its error message.
"""

from __future__ import annotations

import logging
import threading
import uuid as uuidlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Self

from drivers.console import ConsoleStream
from drivers.errors import (
    DeviceExists,
    DeviceNotFound,
    DomainNotFound,
    InvalidArgument,
    InvalidState,
    Unsupported,
)
from drivers.models import (
    ConsoleDevice,
    Disk,
    DomainEvent,
    DomainInfo,
    DomainSpec,
    Nic,
    Resource,
    Scope,
)

log = logging.getLogger(__name__)

DomainRef = uuidlib.UUID | str
EventCallback = Callable[[DomainEvent], None]


class Subscription:
    """A registered event callback; ``close()`` (or leaving the ``with`` block) unsubscribes it."""

    def __init__(self, hub: EventHub, callback: EventCallback) -> None:
        self._hub = hub
        self.callback = callback
        self.closed = False

    def close(self) -> None:
        """Stop delivering events to the callback. Idempotent."""
        if not self.closed:
            self.closed = True
            self._hub.remove(self)

    unsubscribe = close

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Thread-safe fan-out of DomainEvents to subscribers.

    A callback that raises is logged and does not stop delivery to the others: one faulty subscriber must not
    hide events from the rest, and the hypervisor's event thread must survive it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()

    def subscribe(self, callback: EventCallback) -> Subscription:
        """Register ``callback``; returns the Subscription that removes it."""
        subscription = Subscription(self, callback)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget one subscription."""
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def clear(self) -> None:
        """Forget all subscriptions (used by ``close()``)."""
        with self._lock:
            for subscription in self._subscriptions:
                subscription.closed = True
            self._subscriptions = ()

    @property
    def active(self) -> bool:
        """Whether anyone listens; drivers skip building events when nobody does."""
        return bool(self._subscriptions)

    def emit(self, event: DomainEvent) -> None:
        """Deliver ``event`` to every current subscriber, in subscription order."""
        for subscription in self._subscriptions:
            try:
                subscription.callback(event)
            except Exception:
                log.exception("event callback %r failed on %s", subscription.callback, event)


class Driver(ABC):
    """One hypervisor connection, behind one contract.

    Domains are addressed by UUID (a ``uuid.UUID`` or its text). Every method raises only ``DriverError``
    subclasses (plus ``pydantic.ValidationError`` when a spec is built from bad data, which happens before any
    hypervisor call). Methods are safe to call from several threads.

    Attributes:
        uri: The URI this driver was opened with.
        reads_never_wait: True when ``info`` and ``list`` only read this process's memory or local files,
            taking no lock that a write holds across I/O and waiting on no other process: a server may then
            call them on its event loop. False (the default) for any driver that talks to a daemon, which
            may hang.
    """

    uri: str
    reads_never_wait: bool = False

    @abstractmethod
    def define(self, spec: DomainSpec) -> None:
        """Create or update the persistent configuration of ``spec.uuid``.

        Contract:
            - A new uuid becomes a defined, shut-off domain; a DEFINED event follows.
            - An existing uuid gets ``spec`` as its new persistent configuration; a running domain keeps its
              live configuration until it is next started.
            - Raises DomainExists if another domain holds ``spec.name``, or if the update would rename the
              domain (rename is not an update).
            - Never starts the domain.
        """

    @abstractmethod
    def undefine(self, uuid: DomainRef) -> None:
        """Remove the persistent configuration.

        Contract:
            - Succeeds if the domain is absent (idempotent, safe for cleanup).
            - Raises InvalidState if the domain is active (running or paused): stop it first.
            - An UNDEFINED event follows.
        """

    @abstractmethod
    def start(self, uuid: DomainRef) -> None:
        """Boot a defined, shut-off domain from its persistent configuration.

        Contract:
            - Raises DomainNotFound if absent, InvalidState if already active (running or paused).
            - On return the domain is running with a domid; a STARTED event follows.
        """

    @abstractmethod
    def shutdown(self, uuid: DomainRef, timeout: float = 60.0) -> bool:
        """Ask the guest to power off, and wait up to ``timeout`` seconds for it to be shut off.

        Contract:
            - Returns True once the domain is shut off, False if it is still active when the timeout expires
              (the guest may ignore the request; the caller may then ``destroy``). ``timeout=0`` only asks.
            - Succeeds (True) if the domain is already shut off. Raises DomainNotFound if absent.
        """

    @abstractmethod
    def reboot(self, uuid: DomainRef) -> None:
        """Ask the guest to reboot; the domain stays defined and active.

        Contract:
            - Raises DomainNotFound if absent, InvalidState if not running.
        """

    @abstractmethod
    def destroy(self, uuid: DomainRef) -> None:
        """Power the domain off immediately, like pulling the plug; the persistent config stays.

        Contract:
            - Succeeds if the domain is absent or already shut off (idempotent).
            - A running or paused domain is shut off on return; a STOPPED event follows.
        """

    @abstractmethod
    def pause(self, uuid: DomainRef) -> None:
        """Suspend the vCPUs of a running domain, keeping its memory.

        Contract:
            - Succeeds if already paused. Raises DomainNotFound if absent, InvalidState if not active.
        """

    @abstractmethod
    def resume(self, uuid: DomainRef) -> None:
        """Resume a paused domain.

        Contract:
            - Succeeds if already running. Raises DomainNotFound if absent, InvalidState if not active.
        """

    @abstractmethod
    def attach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        """Add a Disk or Nic.

        Args:
            uuid: The domain.
            device: A ``Disk`` or ``Nic``.
            scope: LIVE, PERSISTENT or both; None means PERSISTENT plus LIVE if the domain is active.

        Contract:
            - Raises DomainNotFound if absent; InvalidState if LIVE is asked of an inactive domain;
              Unsupported if LIVE is asked and the hypervisor cannot hotplug; DeviceExists if the device id,
              target dev or MAC is already used in an addressed configuration.
            - LIVE is applied before PERSISTENT: if the hotplug fails, the persistent config is unchanged.
            - A live attach emits DEVICE_ADDED with the device id as detail when the hypervisor reports it.
        """

    @abstractmethod
    def detach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        """Remove a device, given as a Disk, a Nic or a device id.

        Contract:
            - Same errors and scope rules as ``attach_device``; DeviceNotFound if an addressed configuration
              has no such device.
            - A LIVE detach is a request: the guest must cooperate. It is complete when DEVICE_REMOVED arrives
              (and ``get_spec(live=True)`` no longer lists the device).
        """

    @abstractmethod
    def set_vcpus(self, uuid: DomainRef, count: int, scope: Scope | None = None) -> None:
        """Set the number of online vCPUs.

        Contract:
            - Raises InvalidArgument if ``count`` is not an int, < 1 or above the domain's ``max_vcpus`` in
              any configuration the change addresses, before changing any of them; otherwise the same
              scope rules as ``attach_device`` (Unsupported if LIVE is impossible here).
        """

    @abstractmethod
    def set_memory(self, uuid: DomainRef, mib: int, scope: Scope | None = None) -> None:
        """Set the memory (balloon target when LIVE) in MiB.

        Contract:
            - Raises InvalidArgument if ``mib`` is not an int, < 1 or above the domain's ``max_memory`` in any
              configuration the change addresses, before changing any of them; otherwise the same scope
              rules as ``attach_device``.
        """

    @abstractmethod
    def info(self, uuid: DomainRef) -> DomainInfo:
        """Report the current state of one domain. Raises DomainNotFound if absent."""

    @abstractmethod
    def list(self) -> list[DomainInfo]:
        """Report every domain the hypervisor knows, defined or running, including ones this driver did not
        create (so that callers can adopt or report them)."""

    @abstractmethod
    def get_spec(self, uuid: DomainRef, live: bool = False) -> DomainSpec:
        """Read back a domain's configuration as a DomainSpec.

        Args:
            uuid: The domain.
            live: Read the running configuration instead of the persistent one.

        Contract:
            - Raises DomainNotFound if absent; InvalidState if ``live`` and the domain is not active.
            - ``get_spec(u)`` after ``define(spec)`` equals ``spec``.
        """

    def live_and_persistent(self, uuid: DomainRef) -> tuple[DomainSpec, DomainSpec]:
        """A running domain's live and persistent configurations, read together.

        Contract:
            - Equals ``(get_spec(u, live=True), get_spec(u))``; raises what they raise.
            - A driver may return the same object twice when the two are equal (callers compare with ``is``
              first: the listing of 10,000 VMs asks this of every running one).
        """
        return self.get_spec(uuid, live=True), self.get_spec(uuid)

    @abstractmethod
    def console(self, uuid: DomainRef, force: bool = False) -> ConsoleStream:
        """Attach to the domain's serial console (its first one), as ``virsh console`` does.

        Args:
            uuid: The domain.
            force: Take the console over from another session holding it, instead of failing.

        Contract:
            - Raises DomainNotFound if absent, InvalidState if not active, Unsupported (naming the driver)
              if this hypervisor or connection cannot attach a console here.
            - Returns a ConsoleStream: ``read`` gives what the guest writes from now on (a driver may first
              replay what the console printed before, as a serial log would), ``write`` sends keystrokes,
              ``close`` detaches and leaves the domain running. The stream ends (``read`` gives ``b""``)
              when the domain stops.
            - Without ``force``, a console another session holds raises InvalidState.
        """

    def consoles(self, uuid: DomainRef) -> list[ConsoleDevice]:
        """The domain's consoles as the hypervisor has them: serial consoles first, then graphics.

        Contract:
            - Raises DomainNotFound if absent.
            - While the domain runs, a graphics server has the port the hypervisor gave it where it reports
              one; while it is stopped the port is None.
            - The default is the spec's: the serial console every domain rendered from a spec has, and the
              spec's graphics on loopback. Drivers that can read what the hypervisor runs override it.
        """
        return spec_consoles(self.get_spec(uuid))

    def events(self, callback: EventCallback) -> Subscription:
        """Subscribe ``callback`` to DomainEvents of this connection.

        Contract:
            - Callbacks may run on another thread; they must be quick and must not call back into the driver
              synchronously. Events are hints and may be late or coalesced: reconcile with ``info``.
            - Without ``Capability.EVENTS`` only operations made through this driver object are reported.
        """
        return self._hub.subscribe(callback)

    def create_volume(self, path: str, size_mib: int, fmt: str = "raw") -> None:
        """Create a disk image for a new domain (``vm create --disk PATH,size=20G``).

        Contract:
            - Creates ``path`` (absolute; its directory must exist) as a sparse image of ``size_mib`` MiB
              in format ``fmt`` (``raw`` or ``qcow2``), through the hypervisor's storage API where it has one.
            - Raises DomainExists if ``path`` exists (never overwritten), InvalidArgument for a bad path,
              size or format, Unsupported if this driver cannot create images.
        """
        raise Unsupported(
            f"{type(self).__name__} ({self.uri}) cannot create disk images", operation="create_volume"
        )

    def dump_xml(self, uuid: DomainRef, inactive: bool = False) -> str:
        """The hypervisor's own description of the domain, as ``virsh dumpxml`` prints it.

        Contract:
            - Raises DomainNotFound if absent, Unsupported if the hypervisor has no domain XML.
            - ``inactive`` gives the persistent configuration (what the next boot uses), else the live one
              of an active domain.
        """
        raise Unsupported(f"{type(self).__name__} ({self.uri}) has no domain XML", operation="dump_xml")

    def host_info(self) -> dict[str, str]:
        """Describe the hypervisor behind this connection, for people (``vm show``, ``toolstack console``).

        Contract:
            - Always has ``driver`` (the class name) and ``uri``. A driver that chooses an accelerator for
              the domains it defines adds ``accel`` (``"kvm"`` or ``"tcg"``: what a spec without ``accel``
              gets), ``accel_setting`` (``auto``, or the forced one) and ``accel_reason``.
            - Makes no change; may ask the hypervisor once and remember the answer.
        """
        return {"driver": type(self).__name__, "uri": self.uri}

    @abstractmethod
    def capabilities(self) -> frozenset[str]:
        """The optional features available, as ``Capability`` values (strings such as ``"live-attach"``)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection and stop event delivery. Idempotent; the driver is unusable afterwards."""

    @property
    def _hub(self) -> EventHub:
        hub: EventHub | None = self.__dict__.get("_event_hub")
        if hub is None:
            hub = self.__dict__.setdefault("_event_hub", EventHub())
        return hub

    def _emit(self, event: DomainEvent) -> None:
        self._hub.emit(event)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


def spec_consoles(spec: DomainSpec, port: int | None = None) -> list[ConsoleDevice]:
    """The consoles a spec asks for: the serial console every domain rendered from a spec has, and its
    graphics on loopback, on ``port`` (None: a spec does not know the one a running domain gets)."""
    graphics = [ConsoleDevice(kind=spec.graphics, listen="127.0.0.1", port=port)] if spec.graphics else []
    return [ConsoleDevice(kind="serial"), *graphics]


def device_id_of(device: object) -> str:
    """The device id named by a Disk, a Nic or a plain id string."""
    if isinstance(device, Disk | Nic):
        return device.id
    if isinstance(device, str):
        return device
    raise InvalidArgument(f"expected a Disk, a Nic or a device id, got {type(device).__name__}")


def resolve_scope(scope: Scope | None, active: bool, *, uuid: object, operation: str) -> Scope:
    """Turn ``None`` into "PERSISTENT, plus LIVE if active", and refuse LIVE on an inactive domain."""
    if scope is None:
        return Scope.BOTH if active else Scope.PERSISTENT
    if not isinstance(scope, Scope) or not scope:
        raise InvalidArgument(f"scope must be Scope.LIVE, Scope.PERSISTENT or both, got {scope!r}")
    if Scope.LIVE in scope and not active:
        raise InvalidState("a LIVE change needs an active domain", uuid=uuid, operation=operation)
    return scope


def check_device_free(spec: DomainSpec, device: Disk | Nic, uuid: object) -> None:
    """Raise DeviceExists if ``device`` clashes with ``spec`` by id, target dev or MAC address."""
    clash = None
    if spec.device(device.id) is not None:
        clash = f"device id {device.id!r}"
    elif isinstance(device, Disk) and any(disk.target == device.target for disk in spec.disks):
        clash = f"target dev {device.target!r}"
    elif isinstance(device, Nic) and any(nic.mac == device.mac for nic in spec.nics):
        clash = f"MAC address {device.mac}"
    if clash:
        raise DeviceExists(
            f"{clash} is already in use", device_id=device.id, uuid=uuid, operation="attach_device"
        )


def check_resource(spec: DomainSpec, resource: Resource, value: object, uuid: object) -> None:
    """Refuse a ``set_vcpus`` or ``set_memory`` value the configuration ``spec`` cannot take.

    Every driver calls this for each configuration a change addresses, before asking the hypervisor, so that
    the contract's range rule and its message are the same everywhere.

    Raises:
        InvalidArgument: ``value`` is not an int from 1 to ``spec.maximum(resource)``; the message names the
            resource, the maximum and the value, the error the operation (``set_vcpus``, ``set_memory``).
    """
    maximum = spec.maximum(resource)
    if not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(
            f"{resource} must be between 1 and the maximum {maximum}, got {value}",
            uuid=uuid,
            operation=f"set_{resource}",
        )


def existing_device(spec: DomainSpec, device_id: str, ref: uuidlib.UUID, where: str) -> Disk | Nic:
    """The device ``device_id`` of a configuration, or DeviceNotFound naming the configuration (``where``:
    "live" or "persistent") for a detach."""
    device = spec.device(device_id)
    if device is None:
        raise DeviceNotFound(
            f"no device {device_id!r} in the {where} configuration",
            device_id=device_id,
            uuid=ref,
            operation="detach_device",
        )
    return device


def check_volume(path: str, size_mib: object, fmt: str) -> None:
    """Refuse a ``create_volume`` request before any hypervisor call: InvalidArgument naming the problem."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument(f"volume path {path!r} must be absolute", operation="create_volume")
    if not isinstance(size_mib, int) or size_mib < 1:
        raise InvalidArgument(
            f"volume size must be at least 1 MiB, got {size_mib!r}", operation="create_volume"
        )
    if fmt not in ("raw", "qcow2"):
        raise InvalidArgument(f"volume format {fmt!r}: expected raw or qcow2", operation="create_volume")


def not_found(uuid: object, operation: str) -> DomainNotFound:
    """The DomainNotFound every driver raises for an unknown uuid."""
    return DomainNotFound("no such domain", uuid=uuid, operation=operation)


__all__ = [
    "DomainRef",
    "Driver",
    "EventCallback",
    "EventHub",
    "Subscription",
    "check_device_free",
    "check_resource",
    "check_volume",
    "device_id_of",
    "existing_device",
    "not_found",
    "resolve_scope",
]
