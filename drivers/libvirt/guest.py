"""The guest hardware the model describes beyond disks and NICs: accelerator, CPU, consoles and graphics.

- ``DomainSpec.accel`` is libvirt's domain type (``kvm``, or ``qemu`` for TCG); when it is None the driver
  chooses (``drivers.libvirt.accel``).
- ``DomainSpec.cpu``: ``"host"`` is ``<cpu mode='host-passthrough'/>``, any other name a custom model.
- ``DomainSpec.graphics``: ``"vnc"`` is a VNC server listening on loopback only.
- Every domain rendered from the model gets a serial console (``<serial type='pty'>`` and its
  ``<console>``), as ``virt-install`` gives one, so that ``Driver.console`` has something to attach to.
  A spec with libvirt extras is complete (see ``drivers.libvirt.xml``) and gets no default console: an
  adopted domain keeps exactly the devices it had.

libvirt does not keep foreign attributes on its own elements, so the fields the model set are recorded in
our ``<gt:toolstack>`` metadata; reading our XML back takes them from there and leaves the elements they
rendered out of the captured extras.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from drivers.models import ConsoleDevice, DomainSpec

# Our metadata attributes carrying the modelled fields.
ACCEL_ATTRIBUTE = "accel"
CPU_ATTRIBUTE = "cpu"
GRAPHICS_ATTRIBUTE = "graphics"
# libvirt's domain type for each accelerator, and back.
DOMAIN_TYPE = {"kvm": "kvm", "tcg": "qemu"}
ACCEL_OF_TYPE = {"kvm": "kvm", "qemu": "tcg"}
LOOPBACK = "127.0.0.1"


def record(container: ET.Element, spec: DomainSpec) -> None:
    """Note the modelled fields ``spec`` sets on our metadata element."""
    for attribute, value in (
        (ACCEL_ATTRIBUTE, spec.accel),
        (CPU_ATTRIBUTE, spec.cpu),
        (GRAPHICS_ATTRIBUTE, spec.graphics),
    ):
        if value is not None:
            container.set(attribute, value)


def read(root: ET.Element, container: ET.Element | None) -> dict[str, str | None]:
    """The ``accel``, ``cpu`` and ``graphics`` fields of a domain document.

    From our XML they are what our metadata recorded. From a domain that is not ours only the accelerator
    is read (from the domain type: a ``kvm`` domain stays one when it is defined again); its ``<cpu>`` and
    ``<graphics>`` are kept verbatim with the rest.
    """
    if container is None:
        return {"accel": ACCEL_OF_TYPE.get(root.get("type", "")), "cpu": None, "graphics": None}
    return {
        "accel": container.get(ACCEL_ATTRIBUTE),
        "cpu": container.get(CPU_ATTRIBUTE),
        "graphics": container.get(GRAPHICS_ATTRIBUTE),
    }


def rendered(element: ET.Element, fields: dict[str, str | None]) -> bool:
    """Whether ``element`` (a child of ``<domain>`` or of ``<devices>``) is one the fields rendered, so
    that it is not captured as an extra too."""
    if element.tag == "cpu":
        return fields["cpu"] is not None
    if element.tag == "graphics":
        return element.get("type") == fields["graphics"]
    return False


def cpu_element(spec: DomainSpec) -> ET.Element | None:
    """The ``<cpu>`` of ``spec.cpu``, or None for the hypervisor's default model."""
    if spec.cpu is None:
        return None
    if spec.cpu == "host":
        return ET.Element("cpu", {"mode": "host-passthrough"})
    cpu = ET.Element("cpu", {"mode": "custom", "match": "exact"})
    model = ET.SubElement(cpu, "model", {"fallback": "allow"})
    model.text = spec.cpu
    return cpu


def device_elements(spec: DomainSpec, verbatim: bool) -> list[ET.Element]:
    """The console and graphics devices: a serial console unless the spec is verbatim, VNC on request."""
    elements = []
    if not verbatim:
        serial = ET.Element("serial", {"type": "pty"})
        ET.SubElement(serial, "target", {"port": "0"})
        console = ET.Element("console", {"type": "pty"})
        ET.SubElement(console, "target", {"type": "serial", "port": "0"})
        elements += [serial, console]
    if spec.graphics == "vnc":
        # Loopback only: a console must not be opened to the network by default (ssh -L reaches it).
        graphics = ET.Element("graphics", {"type": "vnc", "autoport": "yes", "listen": LOOPBACK})
        ET.SubElement(graphics, "listen", {"type": "address", "address": LOOPBACK})
        elements.append(graphics)
    return elements


def consoles_of(xml_text: str) -> list[ConsoleDevice]:
    """The consoles a domain document has: its serial ports (and consoles that are not one of them), then its
    graphics servers, with the pseudo-terminals and ports libvirt filled in for a running domain."""
    devices = ET.fromstring(xml_text).find("devices")
    if devices is None:
        return []
    found = []
    serials = devices.findall("serial")
    # A <console> whose target is serial port N is that port again (libvirt writes both); others count.
    extra_consoles = [
        c for c in devices.findall("console") if not (serials and _target_type(c) in (None, "serial"))
    ]
    for element in [*serials, *extra_consoles]:
        source = element.find("source")
        path = source.get("path") if source is not None else None
        found.append(ConsoleDevice(kind="serial", path=path or element.get("tty")))
    for graphics in devices.findall("graphics"):
        listen = graphics.get("listen")
        if listen is None:
            address = graphics.find("listen[@address]")
            listen = address.get("address") if address is not None else None
        port = graphics.get("port")
        found.append(
            ConsoleDevice(
                kind=graphics.get("type", "?"),
                listen=listen,
                port=int(port) if port and port.isdigit() else None,  # -1: not given one (yet)
            )
        )
    return found


def _target_type(element: ET.Element) -> str | None:
    target = element.find("target")
    return target.get("type") if target is not None else None
