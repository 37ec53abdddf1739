"""What DomainSpec does not model, kept verbatim: canonical XML fragments of libvirt domain XML.

``DomainSpec.extra`` holds, for the ``libvirt`` family, one list of XML elements per place in the domain
document:

==================== ===================================================================================
``libvirt/domain``   children of ``<domain>`` the model does not own: ``<features>``, ``<cpu>``,
                     ``<clock>``, ``<pm>``, ``<seclabel>``, ``<title>``, ``<description>``...
``libvirt/os``       children of ``<os>`` it does not own: ``<loader>``, ``<nvram>``, ``<bootmenu>``,
                     ``<smbios>``, a second ``<boot>``...
``libvirt/devices``  devices that are not one of our Disks or Nics: ``<serial>``, ``<console>``,
                     ``<graphics>``, ``<video>``, ``<rng>``, ``<input>``, ``<sound>``, ``<controller>``,
                     ``<hostdev>``, ``<channel>``, ``<memballoon>``, ``<emulator>``, a CD-ROM
                     ``<disk device='cdrom'>``, a user-mode ``<interface>``...
``libvirt/metadata`` other applications' ``<metadata>`` entries (ours is ``<gt:toolstack>``)
``libvirt/attributes`` the attributes the model does not own of elements it does own, as an empty
                     element of the same tag: ``<os firmware="efi"/>``, ``<type arch="x86_64"
                     machine="pc-q35-7.2"/>`` (for ``<os><type>``), ``<vcpu placement="static"/>``
==================== ===================================================================================

Inside a modelled device, ``Disk.extra`` and ``Nic.extra`` hold, under ``libvirt/device``, one element of
the device's own tag with only what the model's rendering of it lacks (:func:`residual`): attributes it
does not write (``<disk snapshot='no'>``), those of its children (``<driver cache='none' discard='unmap'>``),
and children it has none of (``<address>``, ``<boot order>``, ``<serial>``, ``<link state>``, ``<mtu>``).
:func:`merge` puts them back into the rendering, so they survive define, update and rollback with the
device, and leave with it when it is detached.

Each entry is one element in a canonical form (this module's :func:`fragment`): on one line, without the
indentation whitespace, attributes sorted, so that equal XML compares equal and a change diffs as one line
in git. A namespace prefix may be renamed (``ns0``): XML namespaces are identified by their URI.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from drivers.errors import InvalidArgument
from drivers.models import DomainSpec, extra_family

FAMILY = "libvirt"
DOMAIN = "libvirt/domain"
OS = "libvirt/os"
DEVICES = "libvirt/devices"
METADATA = "libvirt/metadata"
ATTRIBUTES = "libvirt/attributes"
PLACES = (DOMAIN, OS, DEVICES, METADATA, ATTRIBUTES)
DEVICE = "libvirt/device"  # the key in Disk.extra and Nic.extra
# Children of a device element that are ours whatever the model says: the user alias carries the device id.
_OWN_DEVICE_CHILDREN = frozenset({"alias"})

# Children of <domain> that the model describes (or that hold what it describes).
MODELLED_DOMAIN_CHILDREN = frozenset(
    {
        "name",
        "uuid",
        "metadata",
        "memory",
        "currentMemory",
        "vcpu",
        "os",
        "on_poweroff",
        "on_reboot",
        "on_crash",
        "devices",
    }
)
# Children of <os> that the model describes; <boot> is modelled once (the first), further ones are kept.
MODELLED_OS_CHILDREN = frozenset({"type", "kernel", "initrd", "cmdline"})
# Elements the model owns in part, by the tag their attributes entry carries, with the attributes it owns.
PARTIAL_ELEMENTS: dict[str, frozenset[str]] = {
    "os": frozenset(),
    "type": frozenset(),
    "vcpu": frozenset({"current"}),
}


def fragment(element: ET.Element) -> str:
    """The canonical text of one element: one line, indentation dropped, attributes sorted.

    Text that is not only whitespace (a ``<description>``, a kernel path) is kept exactly.
    """
    clone = copy.deepcopy(element)
    for node in clone.iter():
        node.attrib = dict(sorted(node.attrib.items()))
        if len(node) and node.text is not None and not node.text.strip():
            node.text = None
        for child in node:
            if child.tail is not None and not child.tail.strip():
                child.tail = None
    clone.tail = None
    return ET.tostring(clone, encoding="unicode")


def entries(spec: DomainSpec, key: str) -> list[ET.Element]:
    """Parse the entries of ``spec.extra[key]``, one element each.

    Raises:
        InvalidArgument: an entry is not well-formed XML holding exactly one element; the message names
            the key, the entry's index and the parser's complaint.
    """
    elements = []
    for index, text in enumerate(spec.extra.get(key, ())):
        try:
            element = ET.fromstring(text)
        except ET.ParseError as error:
            raise InvalidArgument(
                f"extra {key!r} entry {index} is not one well-formed XML element ({error}): {text[:80]!r}",
                uuid=spec.uuid,
                operation="define",
            ) from None
        elements.append(element)
    return elements


def check_keys(spec: DomainSpec) -> None:
    """Refuse ``libvirt/<place>`` keys this module does not know, naming the key and the known ones."""
    for key in spec.extra:
        if extra_family(key) == FAMILY and key not in PLACES:
            raise InvalidArgument(
                f"extra key {key!r} is not a place in libvirt domain XML; "
                f"expected one of {', '.join(PLACES)}",
                uuid=spec.uuid,
                operation="define",
            )


def refuse(spec: DomainSpec, key: str, index: int, element: ET.Element, why: str) -> InvalidArgument:
    """The error for an entry that parses but cannot be kept where it is, naming it and why."""
    return InvalidArgument(
        f"extra {key!r} entry {index} <{element.tag}> {why}", uuid=spec.uuid, operation="define"
    )


def attributes_entries(spec: DomainSpec) -> dict[str, dict[str, str]]:
    """The ``libvirt/attributes`` entries as attributes by tag, checked.

    Raises:
        InvalidArgument: an entry names an element the model does not partly own, has children or text,
            or sets an attribute the model owns.
    """
    result: dict[str, dict[str, str]] = {}
    for index, element in enumerate(entries(spec, ATTRIBUTES)):
        owned = PARTIAL_ELEMENTS.get(element.tag)
        if owned is None:
            raise refuse(spec, ATTRIBUTES, index, element, f"is not one of {', '.join(PARTIAL_ELEMENTS)}")
        if len(element) or (element.text or "").strip():
            raise refuse(spec, ATTRIBUTES, index, element, "must be empty: it only carries attributes")
        clash = owned & set(element.attrib)
        if clash:
            raise refuse(spec, ATTRIBUTES, index, element, f"sets {sorted(clash)}, which the model owns")
        if element.tag in result:
            raise refuse(spec, ATTRIBUTES, index, element, "is given twice")
        result[element.tag] = dict(element.attrib)
    return result


def attributes_entry(tag: str, element: ET.Element | None) -> list[str]:
    """The ``libvirt/attributes`` entry for ``element``'s unowned attributes, or none if it has none."""
    if element is None:
        return []
    kept = {name: value for name, value in element.attrib.items() if name not in PARTIAL_ELEMENTS[tag]}
    return [fragment(ET.Element(tag, kept))] if kept else []


def fragments(elements: Iterable[ET.Element]) -> tuple[str, ...]:
    """Canonical fragments of ``elements``, in order."""
    return tuple(fragment(element) for element in elements)


def residual(actual: ET.Element, rendered: ET.Element) -> str | None:
    """What device element ``actual`` has that ``rendered`` (the model's rendering of it) lacks, as one
    canonical fragment, or None if nothing.

    The fragment is an element of the device's tag holding the attributes ``rendered`` does not set; for
    each child ``rendered`` has, a child of that tag holding only the attributes, text and children it
    lacks (the n-th child of a tag answers to the n-th of that tag in ``rendered``), first, in the order of
    ``rendered``; then each other child whole, sorted by tag (so libvirt's reordering changes nothing).
    """
    rest = ET.Element(actual.tag, {k: v for k, v in actual.attrib.items() if k not in rendered.attrib})
    ours = _children_by_tag(rendered)
    theirs = _children_by_tag(actual)
    for tag, mine in ours.items():
        given = theirs.get(tag, [])
        parts = [_part(child, counterpart) for child, counterpart in zip(given, mine, strict=False)]
        if len(given) > len(mine):  # more of this tag follow whole: keep the parts aligned with ours
            rest.extend(parts)
        else:
            rest.extend(part for part in parts if part.attrib or len(part) or part.text)
    answered = {id(child) for tag, mine in ours.items() for child in theirs.get(tag, [])[: len(mine)]}
    # The others by tag (in document order within one): libvirt writes them in an order of its own.
    others = [c for c in actual if c.tag not in _OWN_DEVICE_CHILDREN and id(c) not in answered]
    rest.extend(sorted(others, key=lambda child: child.tag))
    return fragment(rest) if rest.attrib or len(rest) else None


def merge(element: ET.Element, text: str) -> None:
    """Put a :func:`residual` fragment back into ``element``, the model's rendering of the device.

    Raises:
        InvalidArgument: ``text`` is not one element of ``element``'s tag.
    """
    try:
        rest = ET.fromstring(text)
    except ET.ParseError as error:
        raise InvalidArgument(
            f"extra {DEVICE!r} of a <{element.tag}>: not one XML element ({error})", operation="define"
        ) from None
    if rest.tag != element.tag:
        raise InvalidArgument(f"extra {DEVICE!r} of a <{element.tag}> is a <{rest.tag}>", operation="define")
    for name, value in rest.attrib.items():
        element.attrib.setdefault(name, value)
    ours = _children_by_tag(element)
    used: dict[str, int] = {}
    for child in rest:
        index = used.get(child.tag, 0)
        used[child.tag] = index + 1
        mine = ours.get(child.tag, [])
        if index < len(mine):
            counterpart = mine[index]
            for name, value in child.attrib.items():
                counterpart.attrib.setdefault(name, value)
            if child.text and child.text.strip() and not (counterpart.text or "").strip():
                counterpart.text = child.text
            counterpart.extend(copy.deepcopy(list(child)))
        else:
            element.append(copy.deepcopy(child))


def _children_by_tag(element: ET.Element) -> dict[str, list[ET.Element]]:
    children: dict[str, list[ET.Element]] = {}
    for child in element:
        if child.tag not in _OWN_DEVICE_CHILDREN:
            children.setdefault(child.tag, []).append(child)
    return children


def _part(child: ET.Element, counterpart: ET.Element) -> ET.Element:
    part = ET.Element(child.tag, {k: v for k, v in child.attrib.items() if k not in counterpart.attrib})
    if child.text and child.text.strip() and not (counterpart.text or "").strip():
        part.text = child.text
    part.extend(child)
    return part
