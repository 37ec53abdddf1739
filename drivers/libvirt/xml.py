"""DomainSpec ↔ libvirt domain XML, both ways, with ElementTree (never string pasting).

Device ids travel twice: as libvirt user aliases (``<alias name='ua-<id>'/>``, which QEMU keeps for hotplugged
devices and reports in DEVICE_REMOVED events) and in our ``<metadata>`` (a device map keyed by target dev or
MAC, for hypervisors that drop aliases). Free-form metadata lives in ``<metadata>`` under ``NAMESPACE``.

What the model does not describe is kept verbatim in ``DomainSpec.extra`` (see ``drivers.libvirt.extra``
for the places and the canonical form). Which of libvirt's elements a spec carries depends on where the
XML comes from:

- XML without our ``<gt:toolstack>`` metadata (a domain defined with virsh, say) or with it marked
  ``keep="unmodelled"``: everything the model does not describe is captured, so that adopting a domain and
  defining it again changes nothing of it;
- XML we wrote from a spec without libvirt extras: nothing is captured. What libvirt adds on its own to such
  a domain (``<clock>``, controllers, a memballoon...) stays libvirt's business, as the model's own
  defaults (``<features><acpi/><apic/></features>`` for full virtualisation) stay ours.

So a spec with libvirt extras is complete: it is rendered with its extras and none of our defaults, and is
marked ``keep="unmodelled"`` so that it reads back with them. Entries of other driver families (``xl``...)
ride along in our metadata as ``<gt:extra key='...'>`` elements, so that ``get_spec`` gives back what was
defined whatever the family.

``xml_to_spec(spec_to_xml(s)) == s`` for every valid spec whose libvirt extras are in canonical form (as
``xml_to_spec`` produces them; a hypothesis property in the tests), and also after a trip through libvirt's
own parser when the extras are as libvirt reports them.
"""

from __future__ import annotations

import re
import uuid as uuidlib
import xml.etree.ElementTree as ET

from pydantic import ValidationError

from drivers.errors import InvalidArgument
from drivers.libvirt import extra, guest
from drivers.models import Boot, Disk, DomainSpec, Nic, extra_family

NAMESPACE = "http://git-toolstack.org/xmlns/domain/1.0"
PREFIX = "gt"
USER_ALIAS_PREFIX = "ua-"
KEEP_ATTRIBUTE = "keep"
KEEP_UNMODELLED = "unmodelled"

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

    Raises:
        InvalidArgument: an entry of the spec's libvirt extras is malformed, or describes what the model
            owns (a disk the model would read as a Disk, a ``<memory>``...); the message names the entry.
    """
    kept = _kept(spec)
    attributes = extra.attributes_entries(spec)
    verbatim = any(extra_family(key) == extra.FAMILY for key in spec.extra) or any(
        extra.DEVICE in device.extra for device in spec.devices
    )
    root = ET.Element("domain", {"type": domain_type})
    _sub(root, "name", spec.name)
    _sub(root, "uuid", str(spec.uuid))
    _metadata(root, spec, verbatim, kept[extra.METADATA])
    _sub(root, "memory", str(spec.effective_max_memory * 1024), unit="KiB")
    _sub(root, "currentMemory", str(spec.memory * 1024), unit="KiB")
    vcpu = _sub(root, "vcpu", str(spec.effective_max_vcpus), **attributes.get("vcpu", {}))
    if spec.effective_max_vcpus != spec.vcpus:
        vcpu.set("current", str(spec.vcpus))
    modelled = [device_element(device) for device in spec.devices]
    # libvirt refuses <os><boot dev> beside a device's <boot order> (kept in its extra, or a kept device's).
    per_device_boot = any(e.find("boot") is not None for e in (*modelled, *kept[extra.DEVICES]))
    _os(root, spec.boot, domain_type, attributes, kept[extra.OS], per_device_boot)
    if not verbatim and root.findtext("os/type") == "hvm":
        # Without ACPI the guest gets no power button (shutdown() would be ignored) and no PCI hotplug.
        features = _sub(root, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
    root.extend(kept[extra.DOMAIN])
    cpu = guest.cpu_element(spec)
    if cpu is not None:
        root.append(cpu)
    _sub(root, "on_poweroff", spec.on_poweroff)
    _sub(root, "on_reboot", spec.on_reboot)
    _sub(root, "on_crash", spec.on_crash)
    devices = _sub(root, "devices")
    devices.extend(modelled)
    devices.extend(guest.device_elements(spec, verbatim))
    devices.extend(kept[extra.DEVICES])
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def device_to_xml(device: Disk | Nic) -> str:
    """The ``<disk>`` or ``<interface>`` element for attachDeviceFlags/detachDeviceFlags."""
    return ET.tostring(device_element(device), encoding="unicode")


def device_element(device: Disk | Nic) -> ET.Element:
    """Build the element for one device, carrying its id as a user alias."""
    if isinstance(device, Disk):
        block = device.source.startswith("/dev/")
        element = ET.Element("disk", {"type": "block" if block else "file", "device": device.device})
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
    for text in device.extra.get(extra.DEVICE, ()):
        extra.merge(element, text)
    return element


def _kept(spec: DomainSpec) -> dict[str, list[ET.Element]]:
    """The spec's libvirt extras by place, parsed and checked against what the model owns."""
    extra.check_keys(spec)
    kept = {place: extra.entries(spec, place) for place in extra.PLACES if place != extra.ATTRIBUTES}
    checks = (
        (extra.DOMAIN, lambda e: e.tag in extra.MODELLED_DOMAIN_CHILDREN, "is described by the model"),
        (extra.OS, lambda e: e.tag in extra.MODELLED_OS_CHILDREN, "is described by the model's boot"),
        (extra.METADATA, lambda e: e.tag == _q("toolstack"), "is the toolstack's own metadata"),
        (extra.DEVICES, lambda e: _modelled_device(e, {}) is not None, "is a device the model describes"),
        (extra.DOMAIN, lambda e: e.tag == "cpu" and spec.cpu is not None, "clashes with the spec's cpu"),
        (
            extra.DEVICES,
            lambda e: e.tag == "graphics" and e.get("type") == spec.graphics,
            "clashes with the spec's graphics",
        ),
    )
    for place, owned, why in checks:
        for index, element in enumerate(kept[place]):
            if owned(element):
                raise extra.refuse(spec, place, index, element, why)
    return kept


def _metadata(root: ET.Element, spec: DomainSpec, verbatim: bool, foreign: list[ET.Element]) -> None:
    metadata = _sub(root, "metadata")
    container = _sub(metadata, _q("toolstack"))
    guest.record(container, spec)
    if verbatim:
        container.set(KEEP_ATTRIBUTE, KEEP_UNMODELLED)
    metadata.extend(foreign)
    for key, entries in spec.extra.items():
        if extra_family(key) != extra.FAMILY:
            for entry in entries:
                _sub(container, _q("extra"), entry, key=key)
    for key, value in spec.metadata.items():
        _sub(container, _q("meta"), value, key=key)
    for device in spec.devices:
        if isinstance(device, Disk):
            entry = _sub(container, _q("device"), id=device.id, kind="disk", target=device.target)
            if device.device != "disk":
                entry.set("media", device.device)  # a CD-ROM: read back as ours, never a foreign one
        else:
            _sub(container, _q("device"), id=device.id, kind="nic", mac=device.mac)


def _os(
    root: ET.Element,
    boot: Boot,
    domain_type: str,
    attributes: dict[str, dict[str, str]],
    kept: list[ET.Element],
    per_device_boot: bool = False,
) -> None:
    os_element = _sub(root, "os", **attributes.get("os", {}))
    # Xen PV guests boot a kernel directly; everything else here is a full virtual machine.
    os_type = "xen" if domain_type == "xen" and boot.kernel else "hvm"
    _sub(os_element, "type", os_type, **attributes.get("type", {}))
    if boot.kernel:
        _sub(os_element, "kernel", boot.kernel)
        if boot.initrd:
            _sub(os_element, "initrd", boot.initrd)
        if boot.cmdline is not None:
            _sub(os_element, "cmdline", boot.cmdline)
    elif not per_device_boot or boot.device not in (None, "hd"):
        # Left out beside per-device boot orders only when "hd", which is what a domain without it reads as.
        _sub(os_element, "boot", dev=boot.device or "hd")
    os_element.extend(kept)  # after our <boot>: the first one is the model's


# -- XML → DomainSpec ---------------------------------------------------------------------------------------


def xml_to_spec(text: str) -> DomainSpec:
    """Parse libvirt domain XML (ours, or any domain libvirt reports) into a DomainSpec.

    What the model cannot express (consoles, graphics, user-mode NICs, CD-ROMs, CPU model...) goes to the
    spec's ``extra``, verbatim, when the XML is not ours or is ours marked ``keep="unmodelled"``; from XML
    we wrote for a spec without libvirt extras, it is left out (see the module docstring).

    Raises:
        InvalidArgument: The XML is malformed or misses the name, uuid or memory.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise InvalidArgument(f"malformed domain XML: {error}") from None
    if root.tag != "domain":
        raise InvalidArgument(f"expected a <domain> document, got <{root.tag}>")
    meta, device_ids, kept, capture = _read_metadata(root)
    max_memory = _memory_mib(root, "memory")
    current = _memory_mib(root, "currentMemory", default=max_memory)
    vcpu = root.find("vcpu")
    max_vcpus = int(vcpu.text or "1") if vcpu is not None else 1
    vcpus = int(vcpu.get("current", max_vcpus)) if vcpu is not None else 1
    disks, nics, unmodelled_devices = _read_devices(root, device_ids, capture)
    fields = guest.read(root, root.find(f"metadata/{_q('toolstack')}"))
    if capture:
        devices = [device for device in unmodelled_devices if not guest.rendered(device, fields)]
        kept.update(_unmodelled(root, devices, fields))
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
        extra=kept,
        **fields,
    )


def _unmodelled(
    root: ET.Element, devices: list[ET.Element], fields: dict[str, str | None]
) -> dict[str, tuple[str, ...]]:
    """Everything of ``root`` the model does not describe, as canonical fragments by place."""
    os_element = root.find("os")
    os_children = list(os_element) if os_element is not None else []
    if os_element is not None and os_element.find("kernel") is None:
        boots = [child for child in os_children if child.tag == "boot"]
        if boots:
            os_children.remove(boots[0])  # the model's boot device
    metadata = root.find("metadata")
    return {
        extra.DOMAIN: extra.fragments(
            c for c in root if c.tag not in extra.MODELLED_DOMAIN_CHILDREN and not guest.rendered(c, fields)
        ),
        extra.OS: extra.fragments(c for c in os_children if c.tag not in extra.MODELLED_OS_CHILDREN),
        extra.DEVICES: extra.fragments(devices),
        extra.METADATA: extra.fragments(
            c for c in (metadata if metadata is not None else ()) if c.tag != _q("toolstack")
        ),
        extra.ATTRIBUTES: (
            *extra.attributes_entry("os", os_element),
            *extra.attributes_entry("type", root.find("os/type")),
            *extra.attributes_entry("vcpu", root.find("vcpu")),
        ),
    }


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


def _read_metadata(
    root: ET.Element,
) -> tuple[dict[str, str], dict[tuple[str, str], str], dict[str, tuple[str, ...]], bool]:
    """Our metadata: free-form pairs, device ids, the extras of other families, and whether to capture
    the unmodelled elements."""
    container = root.find(f"metadata/{_q('toolstack')}")
    if container is None:
        return {}, {}, {}, True  # not written by us: capture everything
    meta = {item.get("key", ""): item.text or "" for item in container.findall(_q("meta"))}
    ids: dict[tuple[str, str], str] = {}
    for item in container.findall(_q("device")):
        if item.get("kind") == "disk":
            key = (item.get("media", "disk"), item.get("target", ""))
        else:
            key = ("nic", item.get("mac", ""))
        ids[key] = item.get("id", "")
    others: dict[str, list[str]] = {}
    for item in container.findall(_q("extra")):
        others.setdefault(item.get("key", ""), []).append(item.text or "")
    kept = {key: tuple(entries) for key, entries in others.items()}
    return meta, ids, kept, container.get(KEEP_ATTRIBUTE) == KEEP_UNMODELLED


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


def _read_devices(
    root: ET.Element, ids: dict[tuple[str, str], str], capture: bool
) -> tuple[list[Disk], list[Nic], list[ET.Element]]:
    """The disks and NICs of ``root``, and the device elements that are neither, in document order.

    With ``capture``, each disk and NIC keeps what the model does not describe of it in its ``extra``.
    """
    disks: list[Disk] = []
    nics: list[Nic] = []
    unmodelled: list[ET.Element] = []
    for element in root.findall("devices/*"):
        device = _modelled_device(element, ids)
        rest = extra.residual(element, device_element(device)) if capture and device is not None else None
        if device is not None and rest is not None:
            device = device.model_copy(update={"extra": {**device.extra, extra.DEVICE: (rest,)}})
        if isinstance(device, Disk):
            disks.append(device)
        elif isinstance(device, Nic):
            nics.append(device)
        else:
            unmodelled.append(element)
    return disks, nics, unmodelled


def _modelled_device(element: ET.Element, ids: dict[tuple[str, str], str]) -> Disk | Nic | None:
    """The Disk or Nic a device element describes, or None if the model cannot express it (a CD-ROM, a
    user-mode NIC, a disk on a bus the model lacks...): that element is kept verbatim instead."""
    try:
        if element.tag == "disk":
            return _disk(element, ids)
        if element.tag == "interface":
            return _nic(element, ids)
    except ValidationError:
        return None
    return None


def _disk(element: ET.Element, ids: dict[tuple[str, str], str]) -> Disk | None:
    source = element.find("source")
    target = element.find("target")
    path = source.get("file") or source.get("dev") if source is not None else None
    kind = element.get("device", "disk")
    if target is None or not path:
        return None
    dev = target.get("dev", "")
    # A CD-ROM is ours only if our metadata lists it: a foreign one (and any other device kind) is kept
    # verbatim, so that adopting a domain changes nothing of it.
    if kind not in ("disk", "cdrom") or (kind == "cdrom" and (kind, dev) not in ids):
        return None
    driver = element.find("driver")
    return Disk(
        id=_device_id(element, ids, (kind, dev), dev),
        source=path,
        format=driver.get("type", "raw") if driver is not None else "raw",  # type: ignore[arg-type]
        target=dev,
        bus=target.get("bus", _bus_for(dev)),  # type: ignore[arg-type]
        readonly=element.find("readonly") is not None,
        device=kind,  # type: ignore[arg-type]
    )


def _nic(element: ET.Element, ids: dict[tuple[str, str], str]) -> Nic | None:
    kind = element.get("type")
    mac_element = element.find("mac")
    source = element.find("source")
    if kind not in ("network", "bridge") or mac_element is None or source is None:
        return None
    mac = mac_element.get("address", "").lower()
    model = element.find("model")
    return Nic(
        id=_device_id(element, ids, ("nic", mac), "nic-" + re.sub("[^0-9a-f]", "", mac)),
        mac=mac,
        network=source.get("network") if kind == "network" else None,
        bridge=source.get("bridge") if kind == "bridge" else None,
        model=model.get("type", "virtio") if model is not None else "virtio",  # type: ignore[arg-type]
    )


def _bus_for(dev: str) -> str:
    return {"vd": "virtio", "sd": "scsi", "hd": "ide", "xv": "xen"}.get(dev[:2], "virtio")
