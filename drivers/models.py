"""Domain models shared by every driver: what a domain should be (DomainSpec) and what it is (DomainInfo).

The one module to import them from. They are defined by responsibility in:

- ``drivers.fields``: what fields accept (the public patterns, the limits, ``parse_memory``);
- ``drivers.devices``: ``Disk``, ``Nic`` and the ``DEVICE`` parser;
- ``drivers.spec``: ``Boot`` and ``DomainSpec``, and ``extra_family`` for its opaque extras;
- here: what the hypervisor reports (``DomainState``, ``DomainInfo``), ``Scope``, ``Capability``, ``as_uuid``.

Specs are validated completely on construction, before any hypervisor is called: an invalid spec raises
``pydantic.ValidationError`` (a ``ValueError``) whose message names the offending field.
"""

from __future__ import annotations

import enum
import uuid as uuidlib

from drivers.devices import DEVICE, Bus, Device, Disk, DiskFormat, Nic, NicModel
from drivers.errors import InvalidArgument
from drivers.events import DomainEvent, EventKind
from drivers.fields import (
    BOOT_PATH_RE,
    BRIDGE_RE,
    CMDLINE_RE,
    CONTROL_CHARS,
    DEVICE_ID_RE,
    DISK_SOURCE_RE,
    MAC_INPUT_RE,
    MAC_RE,
    MAX_MEMORY_MIB,
    MAX_VCPUS,
    NAME_RE,
    NETWORK_RE,
    TARGET_RE,
    FrozenModel,
    parse_memory,
)
from drivers.spec import Boot, BootDevice, DomainSpec, LifecycleAction, Resource, extra_family


def as_uuid(value: uuidlib.UUID | str) -> uuidlib.UUID:
    """Normalise a domain reference given as UUID or text.

    Raises:
        InvalidArgument: The text is not a UUID.
    """
    if isinstance(value, uuidlib.UUID):
        return value
    try:
        return uuidlib.UUID(str(value))
    except ValueError:
        raise InvalidArgument(f"{value!r} is not a valid domain UUID") from None


class DomainState(enum.StrEnum):
    """Run state of a domain, as libvirt names them."""

    NOSTATE = "nostate"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"  # a guest shutdown is in progress
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"

    @property
    def is_active(self) -> bool:
        """True while the domain has a domid (it runs, is paused or is shutting down)."""
        return self not in (DomainState.SHUTOFF, DomainState.CRASHED, DomainState.NOSTATE)


class DomainInfo(FrozenModel):
    """What the hypervisor reports about one domain right now.

    Attributes:
        uuid: Identity.
        name: Current name.
        state: Run state.
        domid: Hypervisor domain id while active, else None.
        memory: Current memory in MiB (the balloon target while running).
        vcpus: vCPUs currently online (configured count while shut off).
        persistent: Whether the domain has a persistent configuration (False for transient/unknown ones).
    """

    uuid: uuidlib.UUID
    name: str
    state: DomainState
    domid: int | None
    memory: int
    vcpus: int
    persistent: bool = True


class ConsoleDevice(FrozenModel):
    """One way into a domain's terminal or screen, as its hypervisor reports it (``vm show``'s consoles).

    Attributes:
        kind: ``serial`` (what ``Driver.console`` attaches to), or a graphics protocol (``vnc``, ``spice``).
        listen: The address a graphics server listens on (None for a serial console, or where not given).
        port: A graphics server's TCP port, once the hypervisor has given it one (a running domain's; None
            while it is stopped or where the hypervisor reports none).
        path: A serial console's pseudo-terminal on the host while the domain runs, where it is reported.
    """

    kind: str
    listen: str | None = None
    port: int | None = None
    path: str | None = None

    def describe(self) -> str:
        """``serial (/dev/pts/3)``, ``vnc 127.0.0.1:5900``; ``vnc on 127.0.0.1`` without a port."""
        if self.kind == "serial":
            return "serial" + (f" ({self.path})" if self.path else "")
        if self.listen is None:
            return self.kind + (f" port {self.port}" if self.port is not None else "")
        return (
            f"{self.kind} {self.listen}:{self.port}"
            if self.port is not None
            else f"{self.kind} on {self.listen}"
        )


class Scope(enum.Flag):
    """Which configuration a change applies to.

    ``LIVE`` changes the running domain now; ``PERSISTENT`` changes the stored configuration used at next
    start.
    Methods that take ``scope=None`` mean "PERSISTENT, plus LIVE if the domain is active".
    """

    LIVE = enum.auto()
    PERSISTENT = enum.auto()
    BOTH = LIVE | PERSISTENT


class Capability(enum.StrEnum):
    """Optional features a driver may offer; ``Driver.capabilities()`` returns a set of these."""

    LIVE_ATTACH = "live-attach"  # hotplug and unplug of disks and NICs on a running domain
    LIVE_VCPUS = "live-vcpus"
    LIVE_MEMORY = "live-memory"
    MIGRATE = "migrate"
    EVENTS = "events"  # events also report changes made outside this driver
    PERSISTENT_STATE = "persistent-state"  # state survives the process (another process sees the same host)
    GUEST_SHUTDOWN = "guest-shutdown"  # shutdown() asks a real guest OS, which may ignore it


__all__ = [
    "BOOT_PATH_RE",
    "BRIDGE_RE",
    "CMDLINE_RE",
    "CONTROL_CHARS",
    "DEVICE",
    "DEVICE_ID_RE",
    "DISK_SOURCE_RE",
    "MAC_INPUT_RE",
    "MAC_RE",
    "MAX_MEMORY_MIB",
    "MAX_VCPUS",
    "NAME_RE",
    "NETWORK_RE",
    "TARGET_RE",
    "Boot",
    "BootDevice",
    "Bus",
    "Capability",
    "Device",
    "Disk",
    "DiskFormat",
    "DomainEvent",
    "DomainInfo",
    "DomainSpec",
    "DomainState",
    "EventKind",
    "LifecycleAction",
    "Nic",
    "NicModel",
    "Resource",
    "Scope",
    "as_uuid",
    "extra_family",
    "parse_memory",
]
