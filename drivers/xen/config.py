"""DomainSpec → xl.cfg (see xl.cfg(5), xl-disk-configuration(5), xl-network-configuration(5)).

xl has no "defined but stopped" domains: like xl users, we keep one xl.cfg per domain in a configuration
directory as the persistent config. The file also carries the whole spec as a JSON comment, because xl.cfg
has no place for device ids or free-form metadata; xl ignores comments.

Settings the model does not describe (``serial``, ``vnc``, ``vfb``, ``usb``, ``usbdevice``, ``soundhw``,
``extra``, ``cpuid``, ``viridian``...) are the spec's ``extra["xl"]``: one ``key = value`` line each, written
verbatim after ours, in their order. Keys the model renders (``memory``, ``disk``...) are refused there, as
the same key twice would be ambiguous. Other families' extras (``libvirt/...``) ride in the embedded spec.

The guest hardware of ``DomainSpec.cpu`` and ``DomainSpec.graphics`` (see ``guest_hardware``):

- ``cpu = "host"`` is ``cpuid = "host"``: a Xen guest always sees the host's CPU, levelled by Xen's CPUID
  policy, and that string is the libxl form of exactly that. Xen has no named CPU models (``qemu64``,
  ``Skylake-Server``): any other name is refused; CPUID bits are shaped with an xl extra
  ``cpuid = "host,<feature>=0,..."`` instead.
- ``graphics = "vnc"``: an HVM guest's emulated VGA served by its QEMU on VNC (``vnc = 1``,
  ``vnclisten = "127.0.0.1"``, ``vncunused = 1``); a PV or PVH guest has no emulated VGA and gets a PV
  framebuffer (``vfb``) with the same VNC settings, which needs a QEMU with Xen support in dom0 at create.
  Loopback only, as the libvirt driver: a console must not be opened to the network by default.
- The serial console every domain gets: an HVM guest's is ``serial = "pty"`` (and ``vnc = 0`` without
  graphics, as xl's default is VNC on). A PV or PVH guest has no emulated serial port: ``serial`` does not
  apply there, its console is the PV console (``hvc0``) that xenconsoled serves and ``xl console`` attaches
  to, always present. A spec with xl extras is complete and gets no defaults (as with libvirt's extras):
  an adopted domain keeps exactly what it had.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from drivers.errors import InvalidArgument, Unsupported
from drivers.models import Disk, DomainSpec, Nic, extra_family

SPEC_MARKER = "# toolstack-spec: "
HEADER = "# Written by git-toolstack's xl driver; edit the domain spec instead of this file."
_BOOT_ORDER = {"hd": "c", "cdrom": "d", "network": "n"}
_EMULATED_NIC_MODELS = {"e1000", "e1000e", "rtl8139"}
EXTRA_KEY = "xl"
# The keys render() writes: the model's. An extra setting may not repeat one.
MODELLED_KEYS = frozenset(
    {
        "name",
        "uuid",
        "type",
        "builder",
        "memory",
        "maxmem",
        "vcpus",
        "maxvcpus",
        "kernel",
        "ramdisk",
        "cmdline",
        "boot",
        "disk",
        "vif",
        "on_poweroff",
        "on_reboot",
        "on_crash",
    }
)
_SETTING_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\S")
# A direct-kernel boot is a PV guest unless the spec's xl extras say ``type = "pvh"``: PV runs on any x86
# host, PVH needs hardware paging (HAP) or shadow paging, which Xen under QEMU/TCG does not have.
_KERNEL_TYPES = ("pv", "pvh")
_TYPE_RE = re.compile(r"""^type\s*=\s*["']?([a-z]+)["']?\s*$""")
LOOPBACK = "127.0.0.1"
# A guest's VNC server, on loopback and the first free port: an HVM guest's QEMU takes these as settings, a
# PV or PVH guest's framebuffer as the keys of its ``vfb`` entry.
_VNC = {"vnc": "1", "vnclisten": LOOPBACK, "vncunused": "1"}


def guest_type(spec: DomainSpec) -> str:
    """The xl ``type`` of ``spec``: ``hvm`` for boot devices, else ``pv`` or the extras' ``type = "pvh"``."""
    if not spec.boot.kernel:
        return "hvm"
    for setting in spec.extra.get(EXTRA_KEY, ()):
        match = _TYPE_RE.match(setting)
        if match and match.group(1) in _KERNEL_TYPES:
            return match.group(1)
    return "pv"


def check_supported(spec_or_device: DomainSpec | Disk | Nic, uuid: object) -> None:
    """Refuse what xl cannot express, naming the device and the field.

    Raises:
        Unsupported: a virtio disk (``vd*`` target or ``virtio`` bus), a NIC on a libvirt network, or a
            named CPU model (Xen has none: only ``"host"``).
    """
    if isinstance(spec_or_device, DomainSpec) and spec_or_device.cpu not in (None, "host"):
        raise Unsupported(
            f"cpu {spec_or_device.cpu!r}: Xen has no named CPU models; a guest sees the host's CPU through "
            "Xen's CPUID policy (cpu 'host'), shaped with an xl extra 'cpuid = \"host,<feature>=0\"'",
            uuid=uuid,
            operation="define",
        )
    devices = spec_or_device.devices if isinstance(spec_or_device, DomainSpec) else (spec_or_device,)
    for device in devices:
        if isinstance(device, Disk) and (device.target.startswith("vd") or device.bus == "virtio"):
            raise Unsupported(
                f"disk {device.id!r}: xl has no virtio disks on x86; use an xvd* target with bus 'xen'",
                uuid=uuid,
                operation="define",
            )
        if isinstance(device, Nic) and device.network is not None:
            raise Unsupported(
                f"nic {device.id!r}: xl attaches NICs to bridges, not to networks ({device.network!r})",
                uuid=uuid,
                operation="define",
            )


def check_extra(spec: DomainSpec) -> None:
    """Check the spec's xl settings before anything is written.

    Raises:
        InvalidArgument: an ``xl/...`` key (xl settings have one place: ``xl``), a setting that is not one
            ``key = value`` line, a key the model renders, or a key given twice; the message quotes it.
    """
    seen: set[str] = set()
    rendered = {line.split("=", 1)[0].strip() for line in guest_hardware(spec)}
    for key, settings in spec.extra.items():
        if extra_family(key) != EXTRA_KEY:
            continue
        if key != EXTRA_KEY:
            raise InvalidArgument(
                f"extra key {key!r}: xl settings all go under {EXTRA_KEY!r}",
                uuid=spec.uuid,
                operation="define",
            )
        for index, setting in enumerate(settings):
            match = _SETTING_RE.match(setting)
            if match is None or "\n" in setting or "\r" in setting:
                raise InvalidArgument(
                    f"extra 'xl' entry {index} {setting!r} is not one 'key = value' line",
                    uuid=spec.uuid,
                    operation="define",
                )
            name = match.group(1)
            if name == "type" and spec.boot.kernel:
                kind = _TYPE_RE.match(setting)
                if kind is None or kind.group(1) not in _KERNEL_TYPES:
                    raise InvalidArgument(
                        f"extra 'xl' entry {index} {setting!r}: a kernel boot's type is 'pv' or 'pvh'",
                        uuid=spec.uuid,
                        operation="define",
                    )
            elif name in MODELLED_KEYS or name in rendered:
                raise InvalidArgument(
                    f"extra 'xl' entry {index} sets {name!r}, which the model describes",
                    uuid=spec.uuid,
                    operation="define",
                )
            if name in seen:
                raise InvalidArgument(
                    f"extra 'xl' entry {index} sets {name!r} a second time",
                    uuid=spec.uuid,
                    operation="define",
                )
            seen.add(name)


def disk_spec(disk: Disk, block_script: str | None = None) -> str:
    """The xl diskspec; ``target=`` must come last because it may contain anything but a newline.

    Args:
        disk: The disk.
        block_script: The host's hotplug script for disks (``script=``), or None for Xen's ``block``.
    """
    access = "ro" if disk.readonly else "rw"
    devtype = ", devtype=cdrom" if disk.device == "cdrom" else ""
    script = f", script={block_script}" if block_script else ""
    return f"format={disk.format}, vdev={disk.target}, access={access}{devtype}{script}, target={disk.source}"


def vif_spec(nic: Nic) -> str:
    """The xl vifspec; PV (netfront) unless an emulated model is asked for."""
    parts = [f"mac={nic.mac}", f"bridge={nic.bridge}"]
    if nic.model in _EMULATED_NIC_MODELS:
        parts += ["type=ioemu", f"model={nic.model}"]
    return ",".join(parts)


def guest_hardware(spec: DomainSpec) -> list[str]:
    """The xl.cfg lines of ``spec.cpu``, ``spec.graphics`` and the default serial console (see above)."""
    lines = []
    if spec.cpu == "host":
        lines.append('cpuid = "host"')
    hvm = guest_type(spec) == "hvm"
    if spec.graphics == "vnc":
        if hvm:
            for key, value in _VNC.items():  # xl.cfg quotes a string, not a number
                lines.append(f"{key} = {value}" if value.isdigit() else f'{key} = "{value}"')
        else:
            vfb = ", ".join(f"{key}={value}" for key, value in _VNC.items())
            lines.append(f"vfb = [ '{vfb}' ]")
    elif hvm and not spec.extra.get(EXTRA_KEY):
        lines.append("vnc = 0")
    if hvm and not spec.extra.get(EXTRA_KEY):
        lines.append('serial = "pty"')
    return lines


def render(spec: DomainSpec, block_script: str | None = None) -> str:
    """The xl.cfg text for ``spec``; its disks name ``block_script`` as their hotplug script if given."""
    lines = [
        HEADER,
        SPEC_MARKER + spec.model_dump_json(),
        f'name = "{spec.name}"',
        f'uuid = "{spec.uuid}"',
        f'type = "{guest_type(spec)}"',
        f"memory = {spec.memory}",
        f"maxmem = {spec.effective_max_memory}",
        f"vcpus = {spec.vcpus}",
        f"maxvcpus = {spec.effective_max_vcpus}",
    ]
    if spec.boot.kernel:
        lines.append(f'kernel = "{spec.boot.kernel}"')
        if spec.boot.initrd:
            lines.append(f'ramdisk = "{spec.boot.initrd}"')
        if spec.boot.cmdline is not None:
            lines.append(f'cmdline = "{spec.boot.cmdline}"')
    else:
        lines.append(f'boot = "{_BOOT_ORDER[spec.boot.device or "hd"]}"')
    lines.append(_list("disk", [disk_spec(disk, block_script) for disk in spec.disks]))
    lines.append(_list("vif", [vif_spec(nic) for nic in spec.nics]))
    lines += [
        f'on_poweroff = "{spec.on_poweroff}"',
        f'on_reboot = "{spec.on_reboot}"',
        f'on_crash = "{spec.on_crash}"',
        *guest_hardware(spec),
        *(setting for setting in spec.extra.get(EXTRA_KEY, ()) if not _TYPE_RE.match(setting)),
    ]
    return "\n".join(lines) + "\n"


def _list(key: str, items: list[str]) -> str:
    if not items:
        return f"{key} = []"
    return f"{key} = [ " + ", ".join(f"'{item}'" for item in items) + " ]"


def read_spec(path: Path) -> DomainSpec | None:
    """The spec embedded in an xl.cfg we wrote; None for files written by someone else."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith(SPEC_MARKER):
            return DomainSpec.model_validate(json.loads(line[len(SPEC_MARKER) :]))
    return None
