"""The devices of a domain: disks and NICs, self-describing (a ``kind`` discriminator), so that one device
serialised on its own parses back with ``DEVICE``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator

from drivers.fields import (
    BRIDGE_RE,
    DEVICE_ID_RE,
    DISK_SOURCE_RE,
    MAC_INPUT_RE,
    MAC_RE,
    NETWORK_RE,
    TARGET_RE,
    Extra,
    FrozenModel,
    pattern_text,
    schema_pattern,
)

Bus = Literal["virtio", "scsi", "sata", "ide", "xen", "usb"]
DiskFormat = Literal["raw", "qcow2"]
DiskDevice = Literal["disk", "cdrom"]
NicModel = Literal["virtio", "e1000", "e1000e", "rtl8139", "netfront"]
DeviceId = pattern_text(DEVICE_ID_RE, "device id")
DiskTarget = pattern_text(TARGET_RE, "disk target dev")
NetworkName = pattern_text(NETWORK_RE, "network name")
BridgeName = pattern_text(BRIDGE_RE, "bridge name")


class Disk(FrozenModel):
    """A block device backed by a file or block device on the host.

    Attributes:
        kind: Always ``"disk"``; lets a device file parse back on its own.
        id: Stable identifier chosen by the user, unique among the domain's devices.
        source: Absolute host path of the image or block device.
        format: Image format.
        target: Guest device name (``vda``, ``sdb``, ``xvda``, ``hdc``), unique among the domain's disks.
        bus: Guest bus.
        readonly: Whether the guest sees the disk read-only (always, for a CD-ROM).
        device: ``"disk"``, or ``"cdrom"`` for an ISO image the guest sees as a CD-ROM drive.
        extra: What the model does not describe of this disk, kept verbatim as ``DomainSpec.extra`` keeps
            the rest of a domain (``libvirt/device``: a ``<disk>`` element holding only the attributes and
            children ours lacks: ``<address>``, ``<driver cache= discard=>``, ``<boot order>``...).
    """

    kind: Literal["disk"] = "disk"
    id: DeviceId
    source: Annotated[str, schema_pattern(DISK_SOURCE_RE)]
    format: DiskFormat = "raw"
    target: DiskTarget
    bus: Bus = "virtio"
    readonly: bool = False
    # Left out of the serialisation when "disk": existing device files keep their bytes.
    device: DiskDevice = Field(default="disk", exclude_if=lambda value: value == "disk")
    # Left out when empty, as DomainSpec.extra is: devices without extras serialise as before.
    extra: Extra

    @model_validator(mode="before")
    @classmethod
    def _cdrom_readonly(cls, data: object) -> object:
        # A CD-ROM is read-only whatever was asked (hypervisors report it so): one canonical form.
        if isinstance(data, dict) and data.get("device") == "cdrom":
            return {**data, "readonly": True}
        return data

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


class Nic(FrozenModel):
    """A network interface attached to a libvirt network or a host bridge (exactly one of the two).

    Attributes:
        kind: Always ``"nic"``.
        id: Stable identifier, unique among the domain's devices.
        mac: Unicast MAC address, normalised to lower case.
        network: Name of a libvirt network, or None.
        bridge: Name of a host bridge, or None.
        model: Guest NIC model; ``netfront`` is Xen's paravirtual NIC.
        extra: What the model does not describe of this NIC, kept verbatim (``libvirt/device``: an
            ``<interface>`` element with only what ours lacks: ``<address>``, ``<link state>``, ``<mtu>``...).
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
    id: DeviceId
    # The schema states the accepted form (MAC_INPUT_RE); what is stored is its normalisation (MAC_RE).
    mac: Annotated[str, schema_pattern(MAC_INPUT_RE)]
    network: NetworkName | None = None
    bridge: BridgeName | None = None
    model: NicModel = "virtio"
    extra: Extra

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

    @model_validator(mode="after")
    def _one_attachment(self) -> Self:
        if (self.network is None) == (self.bridge is None):
            raise ValueError(f"nic {self.id!r}: exactly one of 'network' or 'bridge' must be set")
        return self


Device = Annotated[Disk | Nic, Field(discriminator="kind")]
DEVICE: TypeAdapter[Disk | Nic] = TypeAdapter(Device)


__all__ = ["DEVICE", "Bus", "Device", "Disk", "DiskDevice", "DiskFormat", "Nic", "NicModel"]
