"""What a domain should be: ``DomainSpec``, validated completely on construction.

An invalid spec raises ``pydantic.ValidationError`` (a ``ValueError``) whose message names the offending
field, before any hypervisor is called.

What the model does not describe (serial consoles, graphics, video, RNG, CD-ROMs, CPU model, clock...) is
carried verbatim in ``DomainSpec.extra``: opaque text keyed by where it belongs in one driver family's
configuration (``libvirt/devices``, ``libvirt/domain``, ``xl``...; see drivers/README.md). Only the driver
of that family reads it; every other driver keeps it, so a spec survives any trip unchanged. An empty
``extra`` is left out of every serialisation, so specs without extras serialise exactly as before the field
existed.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from drivers.devices import Disk, Nic
from drivers.fields import (
    BOOT_PATH_RE,
    CMDLINE_RE,
    CONTROL_CHARS,
    CPU_MODEL_RE,
    MAX_VCPUS,
    NAME_RE,
    Extra,
    FrozenModel,
    check_pattern,
    parse_memory,
    schema_pattern,
)

BootDevice = Literal["hd", "cdrom", "network"]
# How the guest's CPU is run: hardware virtualisation, or QEMU's emulation (TCG).
Accel = Literal["kvm", "tcg"]
Graphics = Literal["vnc"]
CpuModel = Annotated[str, schema_pattern(CPU_MODEL_RE)]
LifecycleAction = Literal[
    "destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart"
]
# What set_vcpus and set_memory change: the DomainSpec field, whose ceiling is the field "max_<resource>".
Resource = Literal["vcpus", "memory"]


def extra_family(key: str) -> str:
    """The driver family of a ``DomainSpec.extra`` key: ``"libvirt"`` for ``"libvirt/devices"``."""
    return key.partition("/")[0]


class Boot(FrozenModel):
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

    kernel: Annotated[str, schema_pattern(BOOT_PATH_RE)] | None = None
    initrd: Annotated[str, schema_pattern(BOOT_PATH_RE)] | None = None
    cmdline: Annotated[str, schema_pattern(CMDLINE_RE)] | None = None
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


class DomainSpec(FrozenModel):
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
        accel: ``"kvm"`` or ``"tcg"`` to force one; None lets the driver choose (KVM where the host's
            works, else TCG; see the driver's ``host_info``).
        cpu: The guest CPU: ``"host"`` (the host's own, passed through) or a model name (``qemu64``,
            ``Skylake-Server``); None for the hypervisor's default.
        graphics: ``"vnc"`` for a graphical console (on loopback only), or None for none. Every domain a
            driver renders from the model also gets a serial console.
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
    # Unset, these three are left out of every serialisation, as ``extra`` is: no churn in stored configs.
    accel: Accel | None = Field(default=None, exclude_if=lambda value: value is None)
    cpu: CpuModel | None = Field(default=None, exclude_if=lambda value: value is None)
    graphics: Graphics | None = Field(default=None, exclude_if=lambda value: value is None)
    # Specs without extras serialise as they did before the field existed: no churn in stored configs,
    # xl.cfg files or the simulator's state.
    extra: Extra

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
        check_pattern(NAME_RE, value, "domain name")
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

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_name(cls, value: object) -> object:
        if isinstance(value, str):
            check_pattern(CPU_MODEL_RE, value, "cpu model")
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


__all__ = [
    "Accel",
    "Boot",
    "BootDevice",
    "DomainSpec",
    "Graphics",
    "LifecycleAction",
    "Resource",
    "extra_family",
]
