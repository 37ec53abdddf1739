"""Domain models shared by every driver: what a domain should be (DomainSpec) and what it is (DomainInfo).

Specs are validated completely on construction, before any hypervisor is called: an invalid spec raises
``pydantic.ValidationError`` (a ``ValueError``) whose message names the offending field. Devices are
self-describing (a ``kind`` discriminator), so one device serialised on its own parses back with ``DEVICE``.

What the model does not describe (serial consoles, graphics, video, RNG, CD-ROMs, CPU model, clock...) is
carried verbatim in ``DomainSpec.extra``: opaque text keyed by where it belongs in one driver family's
configuration (``libvirt/devices``, ``libvirt/domain``, ``xl``...; see drivers/README.md). Only the driver
of that family reads it; every other driver keeps it, so a spec survives any trip unchanged. An empty
``extra`` is left out of every serialisation, so specs without extras serialise exactly as before the field
existed.
"""

from __future__ import annotations

import enum
import re
import uuid as uuidlib
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from drivers.errors import InvalidArgument
from drivers.events import DomainEvent, EventKind

# The patterns below are public: they are matched whole (``fullmatch``: a '$' alone would let a trailing
# newline through), and are also declared on the fields (``Field(pattern=...)``), so that a JSON schema of
# these models (the HTTP API's OpenAPI spec) states exactly what validation accepts. Each is written in the
# common subset of Python's and ECMAScript's regex syntax, for JSON schema validators and generators.
#
# Safe for libvirt (no '/', no leading '.'), for xl (not all digits: xl would read it as a domid), for file
# names of the simulator and xl.cfg files, and for shells.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Device ids become libvirt user aliases ("ua-<id>"), which QEMU restricts to this alphabet.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
TARGET_RE = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,3}$")
# A MAC as stored: lower case, colons.
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A MAC as accepted: either case, ':' or '-', spaces or tabs around; unicast only (the first octet's lowest
# bit clear: an even second hex digit). Normalised to MAC_RE.
MAC_INPUT_RE = re.compile(r"^[ \t]*[0-9A-Fa-f][02468aceACE]([:-][0-9A-Fa-f]{2}){5}[ \t]*$")
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Absolute host paths, without what would break out of a quoted xl.cfg string or a disk spec (commas).
DISK_SOURCE_RE = re.compile(r"^/[^\n\r\x00'\",]*$")
BOOT_PATH_RE = re.compile(r"^/[^\n\r\x00'\"]*$")
CMDLINE_RE = re.compile(r"^[^\n\r\x00\"]*$")
# "<family>" or "<family>/<place>": which driver reads the entries and where they go in its configuration.
_EXTRA_KEY_RE = re.compile(r"^[a-z][a-z0-9]*(/[a-z][A-Za-z0-9_-]*)?$")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f]")  # control characters but tab and newline
# ASCII digits, spaces and tabs only (\d and \s would also take other scripts' digits, and newlines).
_MEMORY_RE = re.compile(r"^[ \t]*([0-9]+)[ \t]*([A-Za-z]*)[ \t]*$")
_MEMORY_UNITS_TO_MIB = {
    "": 1,
    "m": 1,
    "mb": 1,
    "mib": 1,
    "g": 1024,
    "gb": 1024,
    "gib": 1024,
    "t": 1024 * 1024,
    "tb": 1024 * 1024,
    "tib": 1024 * 1024,
}
MAX_MEMORY_MIB = 16 * 1024 * 1024
MAX_VCPUS = 512

Bus = Literal["virtio", "scsi", "sata", "ide", "xen", "usb"]
DiskFormat = Literal["raw", "qcow2"]
NicModel = Literal["virtio", "e1000", "e1000e", "rtl8139", "netfront"]
BootDevice = Literal["hd", "cdrom", "network"]
LifecycleAction = Literal[
    "destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart"
]
# What set_vcpus and set_memory change: the DomainSpec field, whose ceiling is the field "max_<resource>".
Resource = Literal["vcpus", "memory"]


def parse_memory(text: str | int) -> int:
    """Parse a memory size into whole MiB.

    Args:
        text: An int (already MiB) or text such as ``"512"``, ``"512M"``, ``"512MiB"``, ``"2G"``, ``"1T"``.
            A bare number means MiB.

    Returns:
        The size in MiB, always > 0.

    Raises:
        ValueError: The text is not a positive size with a known unit; the message quotes the text.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid memory size {text!r}: expected MiB or text like '512M' or '2G'")
    if isinstance(text, int):
        mib = text
    else:
        match = _MEMORY_RE.fullmatch(text)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _MEMORY_UNITS_TO_MIB:
            raise ValueError(
                f"invalid memory size {text!r}: expected a number with an optional unit M, MiB, G, GiB or T"
            )
        mib = int(match.group(1)) * _MEMORY_UNITS_TO_MIB[unit]
    if mib <= 0:
        raise ValueError(f"invalid memory size {text!r}: must be greater than 0 MiB")
    if mib > MAX_MEMORY_MIB:
        raise ValueError(f"invalid memory size {text!r}: larger than {MAX_MEMORY_MIB} MiB")
    return mib


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


def extra_family(key: str) -> str:
    """The driver family of a ``DomainSpec.extra`` key: ``"libvirt"`` for ``"libvirt/devices"``."""
    return key.partition("/")[0]


def _check(pattern: re.Pattern[str], value: object, what: str) -> object:
    """``value`` if it matches ``pattern`` whole; not text is returned as is, for the type check to name."""
    if isinstance(value, str) and not pattern.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: must match {pattern.pattern}")
    return value


def _pattern(regex: re.Pattern[str]) -> Any:
    """The field constraint that puts ``regex`` in the JSON schema. Validators run first (mode "before"),
    so that a refusal carries their message, which names the problem, rather than the bare pattern's."""
    return Field(pattern=regex.pattern)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Disk(_Model):
    """A block device backed by a file or block device on the host.

    Attributes:
        kind: Always ``"disk"``; lets a device file parse back on its own.
        id: Stable identifier chosen by the user, unique among the domain's devices.
        source: Absolute host path of the image or block device.
        format: Image format.
        target: Guest device name (``vda``, ``sdb``, ``xvda``, ``hdc``), unique among the domain's disks.
        bus: Guest bus.
        readonly: Whether the guest sees the disk read-only.
    """

    kind: Literal["disk"] = "disk"
    id: Annotated[str, _pattern(DEVICE_ID_RE)]
    source: Annotated[str, _pattern(DISK_SOURCE_RE)]
    format: DiskFormat = "raw"
    target: Annotated[str, _pattern(TARGET_RE)]
    bus: Bus = "virtio"
    readonly: bool = False

    @field_validator("id", mode="before")
    @classmethod
    def _valid_id(cls, value: object) -> object:
        return _check(DEVICE_ID_RE, value, "device id")

    @field_validator("source", mode="before")
    @classmethod
    def _valid_source(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.startswith("/"):
            raise ValueError(f"invalid disk source {value!r}: must be an absolute path")
        if not DISK_SOURCE_RE.fullmatch(value):
            raise ValueError(
                f"invalid disk source {value!r}: quotes, commas and control characters are not allowed"
            )
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _valid_target(cls, value: object) -> object:
        return _check(TARGET_RE, value, "disk target dev")


class Nic(_Model):
    """A network interface attached to a libvirt network or a host bridge (exactly one of the two).

    Attributes:
        kind: Always ``"nic"``.
        id: Stable identifier, unique among the domain's devices.
        mac: Unicast MAC address, normalised to lower case.
        network: Name of a libvirt network, or None.
        bridge: Name of a host bridge, or None.
        model: Guest NIC model; ``netfront`` is Xen's paravirtual NIC.
    """

    # Exactly one of network and bridge, stated in the JSON schema too (the validator below enforces it).
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["network"], "properties": {"network": {"type": "string"}}},
                {"required": ["bridge"], "properties": {"bridge": {"type": "string"}}},
            ]
        }
    )

    kind: Literal["nic"] = "nic"
    id: Annotated[str, _pattern(DEVICE_ID_RE)]
    # The schema states the accepted form (MAC_INPUT_RE); what is stored is its normalisation (MAC_RE).
    mac: Annotated[str, _pattern(MAC_INPUT_RE)]
    network: Annotated[str, _pattern(NETWORK_RE)] | None = None
    bridge: Annotated[str, _pattern(BRIDGE_RE)] | None = None
    model: NicModel = "virtio"

    @field_validator("id", mode="before")
    @classmethod
    def _valid_id(cls, value: object) -> object:
        return _check(DEVICE_ID_RE, value, "device id")

    @field_validator("mac", mode="before")
    @classmethod
    def _valid_mac(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        # Spaces and tabs only, as MAC_INPUT_RE says: str.strip() would also take newlines and other spaces.
        mac = value.strip(" \t").lower().replace("-", ":")
        if not MAC_RE.fullmatch(mac):
            raise ValueError(f"invalid MAC address {value!r}: expected six hex octets like 52:54:00:12:34:56")
        if int(mac[:2], 16) & 1:
            raise ValueError(f"invalid MAC address {value!r}: multicast addresses cannot be used by a NIC")
        return mac

    @field_validator("network", mode="before")
    @classmethod
    def _valid_network(cls, value: object) -> object:
        return _check(NETWORK_RE, value, "network name")

    @field_validator("bridge", mode="before")
    @classmethod
    def _valid_bridge(cls, value: object) -> object:
        return _check(BRIDGE_RE, value, "bridge name")

    @model_validator(mode="after")
    def _one_attachment(self) -> Self:
        if (self.network is None) == (self.bridge is None):
            raise ValueError(f"nic {self.id!r}: exactly one of 'network' or 'bridge' must be set")
        return self


Device = Annotated[Disk | Nic, Field(discriminator="kind")]
DEVICE: TypeAdapter[Disk | Nic] = TypeAdapter(Device)


class Boot(_Model):
    """How the domain boots: a direct kernel (with optional initrd and command line), or a boot device.

    Attributes:
        kernel: Absolute host path of the kernel image, or None to boot from ``device``.
        initrd: Absolute host path of the initial ramdisk; needs ``kernel``.
        cmdline: Kernel command line; needs ``kernel``.
        device: Boot device used when there is no kernel.
    """

    # A kernel (initrd and cmdline only with it) or a boot device, stated in the JSON schema too (the
    # validator below enforces it). Absent and null are the same here.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["kernel"],
                    "properties": {"kernel": {"type": "string"}, "device": {"type": "null"}},
                },
                {
                    "required": ["device"],
                    "properties": {
                        "device": {"type": "string"},
                        "kernel": {"type": "null"},
                        "initrd": {"type": "null"},
                        "cmdline": {"type": "null"},
                    },
                },
            ]
        }
    )

    kernel: Annotated[str, _pattern(BOOT_PATH_RE)] | None = None
    initrd: Annotated[str, _pattern(BOOT_PATH_RE)] | None = None
    cmdline: Annotated[str, _pattern(CMDLINE_RE)] | None = None
    device: BootDevice | None = None

    @field_validator("kernel", "initrd", mode="before")
    @classmethod
    def _absolute(cls, value: object) -> object:
        if isinstance(value, str) and not BOOT_PATH_RE.fullmatch(value):
            raise ValueError(f"invalid path {value!r}: must be absolute, without quotes or control chars")
        return value

    @field_validator("cmdline", mode="before")
    @classmethod
    def _printable(cls, value: object) -> object:
        if isinstance(value, str) and not CMDLINE_RE.fullmatch(value):
            raise ValueError(f"invalid kernel cmdline {value!r}: newlines, NUL and double quotes are refused")
        return value

    @model_validator(mode="after")
    def _kernel_xor_device(self) -> Self:
        if self.kernel is None:
            if self.initrd is not None or self.cmdline is not None:
                raise ValueError("boot: 'initrd' and 'cmdline' need a 'kernel'")
            if self.device is None:
                raise ValueError("boot: set either 'kernel' or 'device'")
        elif self.device is not None:
            raise ValueError("boot: 'kernel' and 'device' are mutually exclusive")
        return self


class DomainSpec(_Model):
    """The desired configuration of one domain.

    Attributes:
        uuid: Identity of the domain; never changes.
        name: Unique on the host; letters, digits, '.', '_' and '-', not all digits.
        memory: Memory at boot, in MiB (accepts text such as ``"2G"``).
        max_memory: Ceiling for live ballooning, in MiB; defaults to ``memory``.
        vcpus: vCPUs online at boot.
        max_vcpus: Ceiling for vCPU hotplug; defaults to ``vcpus``.
        boot: Direct kernel boot or boot device.
        disks: Block devices, in guest order.
        nics: Network interfaces, in guest order.
        on_poweroff: What the hypervisor does when the guest powers off.
        on_reboot: What it does when the guest reboots.
        on_crash: What it does when the guest crashes.
        metadata: Free-form string pairs kept with the domain by the hypervisor.
        extra: What the model does not describe, kept verbatim: per key (``"<family>/<place>"``, e.g.
            ``"libvirt/devices"``), the entries in their order (for libvirt one XML element each, for xl
            one ``key = value`` setting each). Opaque here: the driver of the family checks and applies
            them, other drivers keep them. Keys with no entries are dropped.
    """

    uuid: uuidlib.UUID
    name: str
    memory: int
    max_memory: int | None = None
    vcpus: int = 1
    max_vcpus: int | None = None
    boot: Boot = Boot(device="hd")
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    on_poweroff: LifecycleAction = "destroy"
    on_reboot: LifecycleAction = "restart"
    on_crash: LifecycleAction = "destroy"
    metadata: dict[str, str] = Field(default_factory=dict)
    # Specs without extras serialise as they did before the field existed: no churn in stored configs,
    # xl.cfg files or the simulator's state.
    extra: dict[str, tuple[str, ...]] = Field(default_factory=dict, exclude_if=lambda value: not value)

    @model_validator(mode="before")
    @classmethod
    def _canonical_maxima(cls, data: object) -> object:
        # A maximum equal to the boot value is the same spec as no maximum: one canonical form, so that
        # specs read back from a hypervisor compare equal to the ones written.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for ceiling, base, parse in (
            ("max_memory", "memory", parse_memory),
            ("max_vcpus", "vcpus", int),
        ):
            if data.get(ceiling) is None:
                continue
            try:
                if parse(data[ceiling]) == parse(data.get(base, 1)):
                    data[ceiling] = None
            except (TypeError, ValueError):
                pass  # the field validators report it, naming the field
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        _check(NAME_RE, value, "domain name")
        if value.isdigit():
            raise ValueError(f"invalid domain name {value!r}: xl would read an all-digit name as a domain id")
        return value

    @field_validator("memory", "max_memory", mode="before")
    @classmethod
    def _memory_text(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return parse_memory(value)
        return value

    @field_validator("vcpus", "max_vcpus")
    @classmethod
    def _vcpu_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_VCPUS:
            raise ValueError(f"vcpus must be between 1 and {MAX_VCPUS}, got {value}")
        return value

    @field_validator("on_poweroff", "on_reboot")
    @classmethod
    def _no_coredump(cls, value: str) -> str:
        if value.startswith("coredump"):
            raise ValueError(f"{value!r} is only valid for on_crash")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_text(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not key or CONTROL_CHARS.search(key) or CONTROL_CHARS.search(item):
                raise ValueError(f"metadata {key!r}: need a non-empty key; no control chars")
        return value

    @field_validator("extra")
    @classmethod
    def _extra_shape(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for key, entries in value.items():
            if not _EXTRA_KEY_RE.match(key):
                raise ValueError(
                    f"extra key {key!r}: expected '<family>' or '<family>/<place>', e.g. 'libvirt/devices'"
                )
            for index, entry in enumerate(entries):
                if not entry.strip() or "\0" in entry:
                    raise ValueError(f"extra {key!r} entry {index}: must be non-empty text without NUL")
        # One canonical form: a key without entries says nothing, so {"xl": []} is the same spec as {}.
        return {key: entries for key, entries in sorted(value.items()) if entries}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_memory is not None and self.max_memory < self.memory:
            raise ValueError(f"max_memory ({self.max_memory} MiB) is below memory ({self.memory} MiB)")
        if self.max_vcpus is not None and self.max_vcpus < self.vcpus:
            raise ValueError(f"max_vcpus ({self.max_vcpus}) is below vcpus ({self.vcpus})")
        _unique("device id", [device.id for device in self.devices])
        _unique("disk target dev", [disk.target for disk in self.disks])
        _unique("nic MAC address", [nic.mac for nic in self.nics])
        return self

    @property
    def devices(self) -> tuple[Disk | Nic, ...]:
        """Disks then NICs, in guest order."""
        return (*self.disks, *self.nics)

    @property
    def effective_max_memory(self) -> int:
        """The live ballooning ceiling in MiB."""
        return self.max_memory if self.max_memory is not None else self.memory

    @property
    def effective_max_vcpus(self) -> int:
        """The vCPU hotplug ceiling."""
        return self.max_vcpus if self.max_vcpus is not None else self.vcpus

    def maximum(self, resource: Resource) -> int:
        """The ceiling of ``resource``: ``effective_max_vcpus``, or ``effective_max_memory`` in MiB."""
        return self.effective_max_vcpus if resource == "vcpus" else self.effective_max_memory

    def device(self, device_id: str) -> Disk | Nic | None:
        """The device with this id, or None."""
        return next((device for device in self.devices if device.id == device_id), None)

    def with_device(self, device: Disk | Nic) -> DomainSpec:
        """A copy with ``device`` appended; raises ValueError (naming the clash) if it collides."""
        if isinstance(device, Disk):
            return self.evolve(disks=(*self.disks, device))
        return self.evolve(nics=(*self.nics, device))

    def without_device(self, device_id: str) -> DomainSpec:
        """A copy without the device ``device_id`` (unchanged if absent)."""
        return self.evolve(
            disks=tuple(d for d in self.disks if d.id != device_id),
            nics=tuple(n for n in self.nics if n.id != device_id),
        )

    def evolve(self, **changes: object) -> DomainSpec:
        """A validated copy with ``changes`` applied (``model_copy(update=...)`` would skip validation)."""
        return DomainSpec.model_validate({**self.model_dump(), **changes})


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


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


class DomainInfo(_Model):
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
    "parse_memory",
]
