"""What libvirt adds to a running domain's XML on its own, taken out so that it compares with the next boot's.

A running domain's live XML carries state the hypervisor gave it when it started, which its persistent
(inactive) XML never has: device aliases, a pty console's path, the security labels of this run, its
cgroup partition, a disk's backing chain with the indexes of its layers, a VNC server's assigned port, a tap
device's name. Left in, each running imported domain's verbatim ``extra`` differs from its next boot's, and
everything it has looks like a change waiting for a reboot. :func:`without_runtime` takes them out of the
live XML where the driver reads it, so that what differs in ``extra`` is what the next boot changes
(``<driver cache='none'>`` edited while running, say).

Only what libvirt generates is removed: a user alias (``ua-``), a tap name outside libvirt's own prefixes,
a security label or ``<resource>`` the persistent XML configures are kept.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# Character devices whose host side libvirt opens at start: a pty's path is known only then.
_CHARDEVS = ("serial", "console", "parallel", "channel")
# Tap names libvirt generates (and refuses in a configuration): vnet0, macvtap1, macvlan2, vif3.0.
_GENERATED_TAP = re.compile(r"^(vnet|macvtap|macvlan|vif)\d")


def without_runtime(live: str, inactive: str | None) -> str:
    """``live`` (a running domain's XML) without what libvirt added when it started.

    Args:
        live: The domain's live XML.
        inactive: Its persistent XML, or None for a transient domain: a ``<seclabel>`` (by model) or a
            ``<resource>`` in the live XML is runtime state unless the persistent XML has one too (without
            a persistent XML, all are kept).

    Returns:
        The live XML, serialized again (whitespace and attribute order may change, nothing else does).
        Malformed XML is returned as it is, for the parser to complain about.
    """
    try:
        root = ET.fromstring(live)
        configured = ET.fromstring(inactive) if inactive is not None else None
    except ET.ParseError:
        return live
    root.attrib.pop("id", None)
    if configured is not None:
        _drop_added_at_start(root, configured)
    for seclabel in root.findall("seclabel"):
        if seclabel.get("type") == "dynamic":  # a dynamic label is generated for each run
            _remove_children(seclabel, "label", "imagelabel")
    devices = root.find("devices")
    if devices is not None:
        _strip_devices(devices)
    return ET.tostring(root, encoding="unicode")


def _drop_added_at_start(root: ET.Element, configured: ET.Element) -> None:
    models = {label.get("model") for label in configured.findall("seclabel")}
    for child in list(root):
        if child.tag == "seclabel" and child.get("model") not in models:
            root.remove(child)  # one per security driver of the host, for a configuration that names none
        elif child.tag == "resource" and configured.find("resource") is None:
            root.remove(child)  # the default cgroup partition, /machine


def _strip_devices(devices: ET.Element) -> None:
    for device in devices:
        _remove_children(device, generated_alias=True)
        if device.tag in _CHARDEVS and device.get("type") == "pty":
            device.attrib.pop("tty", None)
            _remove_children(device, "source")
        for target in device.findall("target"):
            target.attrib.pop("state", None)  # a virtio channel's guest side: connected or not, now
            if device.tag == "interface" and _GENERATED_TAP.match(target.get("dev", "")):
                device.remove(target)
        if device.tag == "disk":
            _strip_backing_chain(device)
        if device.tag == "graphics" and device.get("autoport") == "yes":
            device.set("port", "-1")  # as the persistent XML says it: assigned at start


def _strip_backing_chain(disk: ET.Element) -> None:
    """A disk's chain as libvirt detected it at start: indexed layers and the empty end-of-chain marker."""
    for node in [disk, *disk.iter("backingStore")]:
        source = node.find("source")
        if source is not None:
            source.attrib.pop("index", None)
        for backing in node.findall("backingStore"):
            if "index" in backing.attrib or not (len(backing) or backing.attrib):
                node.remove(backing)


def _remove_children(element: ET.Element, *tags: str, generated_alias: bool = False) -> None:
    for child in list(element):
        if child.tag in tags or (
            generated_alias and child.tag == "alias" and not child.get("name", "").startswith("ua-")
        ):
            element.remove(child)
