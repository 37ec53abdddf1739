"""DomainSpec ↔ libvirt domain XML, both ways, with ElementTree (never string pasting).

Device ids travel twice: as libvirt user aliases (``<alias name='ua-<id>'/>``, which QEMU keeps for hotplugged
devices and reports in DEVICE_REMOVED events) and in our ``<metadata>`` (a device map keyed by target dev or
MAC, for hypervisors that drop aliases). Free-form metadata lives in ``<metadata>`` under ``NAMESPACE``.

``xml_to_spec(spec_to_xml(s)) == s`` for every valid spec (a hypothesis property in the tests), and also
after a trip through libvirt's own parser.
"""

from __future__ import annotations

import re
import uuid as uuidlib
import xml.etree.ElementTree as ET

from drivers.errors import InvalidArgument
from drivers.models import Boot, Disk, DomainSpec, Nic

NAMESPACE = "http://git-toolstack.org/xmlns/domain/1.0"
PREFIX = "gt"
USER_ALIAS_PREFIX = "ua-"

ET.register_namespace(PREFIX, NAMESPACE)

_UNIT_BYTES = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
}
_MIB = 1024**2


def _q(tag: str) -> str:
    return f"{{{NAMESPACE}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def spec_to_xml(spec: DomainSpec, domain_type: str = "qemu") -> str:
    """Render ``spec`` as a libvirt ``<domain>`` document.

    Args:
        spec: The domain.
        domain_type: libvirt's domain type: ``qemu`` (TCG), ``kvm``, ``test`` or ``xen``.

    Returns:
        The XML text.
    """
    root = ET.Element("domain", {"type": domain_type})
    _sub(root, "name", spec.name)
    _sub(root, "uuid", str(spec.uuid))
    _metadata(root, spec)
    _sub(root, "memory", str(spec.effective_max_memory * 1024), unit="KiB")
    _sub(root, "currentMemory", str(spec.memory * 1024), unit="KiB")
    vcpu = _sub(root, "vcpu", str(spec.effective_max_vcpus))
    if spec.effective_max_vcpus != spec.vcpus:
        vcpu.set("current", str(spec.vcpus))
    _os(root, spec.boot, domain_type)
    if root.findtext("os/type") == "hvm":
        # Without ACPI the guest gets no power button (shutdown() would be ignored) and no PCI hotplug.
        features = _sub(root, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
    _sub(root, "on_poweroff", spec.on_poweroff)
    _sub(root, "on_reboot", spec.on_reboot)
    _sub(root, "on_crash", spec.on_crash)
    devices = _sub(root, "devices")
    for device in spec.devices:
        devices.append(device_element(device))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def device_to_xml(device: Disk | Nic) -> str:
    """The ``<disk>`` or ``<interface>`` element for attachDeviceFlags/detachDeviceFlags."""
    return ET.tostring(device_element(device), encoding="unicode")


def device_element(device: Disk | Nic) -> ET.Element:
    """Build the element for one device, carrying its id as a user alias."""
    if isinstance(device, Disk):
        block = device.source.startswith("/dev/")
        element = ET.Element("disk", {"type": "block" if block else "file", "device": "disk"})
        _sub(element, "driver", name="qemu", type=device.format)
        _sub(element, "source", **{"dev" if block else "file": device.source})
        _sub(element, "target", dev=device.target, bus=device.bus)
        if device.readonly:
            _sub(element, "readonly")
    else:
        element = ET.Element("interface", {"type": "network" if device.network else "bridge"})
        _sub(element, "mac", address=device.mac)
        if device.network:
            _sub(element, "source", network=device.network)
        else:
            _sub(element, "source", bridge=device.bridge or "")
        _sub(element, "model", type=device.model)
    _sub(element, "alias", name=f"{USER_ALIAS_PREFIX}{device.id}")
    return element


def _metadata(root: ET.Element, spec: DomainSpec) -> None:
    container = _sub(_sub(root, "metadata"), _q("toolstack"))
    for key, value in spec.metadata.items():
        _sub(container, _q("meta"), value, key=key)
    for device in spec.devices:
        if isinstance(device, Disk):
            _sub(container, _q("device"), id=device.id, kind="disk", target=device.target)
        else:
            _sub(container, _q("device"), id=device.id, kind="nic", mac=device.mac)


def _os(root: ET.Element, boot: Boot, domain_type: str) -> None:
    os_element = _sub(root, "os")
    # Xen PV guests boot a kernel directly; everything else here is a full virtual machine.
    os_type = "xen" if domain_type == "xen" and boot.kernel else "hvm"
    _sub(os_element, "type", os_type)
    if boot.kernel:
        _sub(os_element, "kernel", boot.kernel)
        if boot.initrd:
            _sub(os_element, "initrd", boot.initrd)
        if boot.cmdline is not None:
            _sub(os_element, "cmdline", boot.cmdline)
    else:
        _sub(os_element, "boot", dev=boot.device or "hd")


# -- XML → DomainSpec ---------------------------------------------------------------------------------------


def xml_to_spec(text: str) -> DomainSpec:
    """Parse libvirt domain XML (ours, or any domain libvirt reports) into a DomainSpec.

    Devices the model cannot express (consoles, graphics, user-mode NICs, CD-ROMs) are left out, so a
    foreign domain can still be listed and adopted.

    Raises:
        InvalidArgument: The XML is malformed or misses the name, uuid or memory.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise InvalidArgument(f"malformed domain XML: {error}") from None
    if root.tag != "domain":
        raise InvalidArgument(f"expected a <domain> document, got <{root.tag}>")
    meta, device_ids = _read_metadata(root)
    max_memory = _memory_mib(root, "memory")
    current = _memory_mib(root, "currentMemory", default=max_memory)
    vcpu = root.find("vcpu")
    max_vcpus = int(vcpu.text or "1") if vcpu is not None else 1
    vcpus = int(vcpu.get("current", max_vcpus)) if vcpu is not None else 1
    disks, nics = _read_devices(root, device_ids)
    # libvirt keeps disks sorted by bus and target, not in the order given: our metadata remembers it.
    rank = {device_id: index for index, device_id in enumerate(device_ids.values())}
    disks.sort(key=lambda disk: rank.get(disk.id, len(rank)))
    nics.sort(key=lambda nic: rank.get(nic.id, len(rank)))
    return DomainSpec(
        uuid=uuidlib.UUID(_required_text(root, "uuid")),
        name=_required_text(root, "name"),
        memory=current,
        max_memory=max_memory,
        vcpus=vcpus,
        max_vcpus=max_vcpus,
        boot=_read_boot(root),
        disks=tuple(disks),
        nics=tuple(nics),
        on_poweroff=root.findtext("on_poweroff", "destroy"),
        on_reboot=root.findtext("on_reboot", "restart"),
        on_crash=root.findtext("on_crash", "destroy"),
        metadata=meta,
    )


def _required_text(root: ET.Element, tag: str) -> str:
    text = root.findtext(tag)
    if not text:
        raise InvalidArgument(f"domain XML has no <{tag}>")
    return text.strip()


def _memory_mib(root: ET.Element, tag: str, default: int | None = None) -> int:
    element = root.find(tag)
    if element is None or not (element.text or "").strip():
        if default is None:
            raise InvalidArgument(f"domain XML has no <{tag}>")
        return default
    unit = element.get("unit", "KiB").lower()
    if unit not in _UNIT_BYTES:
        raise InvalidArgument(f"unknown memory unit {unit!r} in <{tag}>")
    return max(1, int(element.text or "0") * _UNIT_BYTES[unit] // _MIB)


def _read_metadata(root: ET.Element) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    container = root.find(f"metadata/{_q('toolstack')}")
    if container is None:
        return {}, {}
    meta = {item.get("key", ""): item.text or "" for item in container.findall(_q("meta"))}
    ids: dict[tuple[str, str], str] = {}
    for item in container.findall(_q("device")):
        key = ("disk", item.get("target", "")) if item.get("kind") == "disk" else ("nic", item.get("mac", ""))
        ids[key] = item.get("id", "")
    return meta, ids


def _read_boot(root: ET.Element) -> Boot:
    kernel = root.findtext("os/kernel")
    if kernel:
        return Boot(
            kernel=kernel, initrd=root.findtext("os/initrd") or None, cmdline=root.findtext("os/cmdline")
        )
    boot = root.find("os/boot")
    return Boot(device=boot.get("dev", "hd") if boot is not None else "hd")  # type: ignore[arg-type]


def _device_id(
    element: ET.Element, ids: dict[tuple[str, str], str], key: tuple[str, str], fallback: str
) -> str:
    alias = element.find("alias")
    name = alias.get("name", "") if alias is not None else ""
    if name.startswith(USER_ALIAS_PREFIX):
        return name[len(USER_ALIAS_PREFIX) :]
    return ids.get(key) or fallback


def _read_devices(root: ET.Element, ids: dict[tuple[str, str], str]) -> tuple[list[Disk], list[Nic]]:
    disks: list[Disk] = []
    nics: list[Nic] = []
    for element in root.findall("devices/disk"):
        source = element.find("source")
        target = element.find("target")
        path = source.get("file") or source.get("dev") if source is not None else None
        if element.get("device", "disk") != "disk" or target is None or not path:
            continue
        dev = target.get("dev", "")
        driver = element.find("driver")
        disks.append(
            Disk(
                id=_device_id(element, ids, ("disk", dev), dev),
                source=path,
                format=driver.get("type", "raw") if driver is not None else "raw",  # type: ignore[arg-type]
                target=dev,
                bus=target.get("bus", _bus_for(dev)),  # type: ignore[arg-type]
                readonly=element.find("readonly") is not None,
            )
        )
    for element in root.findall("devices/interface"):
        kind = element.get("type")
        mac_element = element.find("mac")
        source = element.find("source")
        if kind not in ("network", "bridge") or mac_element is None or source is None:
            continue
        mac = mac_element.get("address", "").lower()
        model = element.find("model")
        nics.append(
            Nic(
                id=_device_id(element, ids, ("nic", mac), "nic-" + re.sub("[^0-9a-f]", "", mac)),
                mac=mac,
                network=source.get("network") if kind == "network" else None,
                bridge=source.get("bridge") if kind == "bridge" else None,
                model=model.get("type", "virtio") if model is not None else "virtio",  # type: ignore[arg-type]
            )
        )
    return disks, nics


def _bus_for(dev: str) -> str:
    return {"vd": "virtio", "sd": "scsi", "hd": "ide", "xv": "xen"}.get(dev[:2], "virtio")
