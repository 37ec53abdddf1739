"""What the model does not describe *inside* a modelled disk or NIC is kept verbatim (``Disk.extra``,
``Nic.extra``: ``drivers/libvirt/extra.py``'s residual): a disk's ``<address>``, ``<driver cache discard>``,
``<boot order>``, ``<serial>``; a NIC's ``<link state>``, ``<mtu>``, ``<address>``. Run against libvirt's real
``test:///default`` hypervisor in-process: adopt (``get_spec``), define it changed, define it as it was (a
rollback): each device's content is what it was.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import Disk, DomainSpec, InvalidArgument, Scope
from drivers.libvirt import LibvirtDriver
from drivers.libvirt.extra import DEVICE
from drivers.libvirt.xml import spec_to_xml, xml_to_spec

DISK = (
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/srv/{name}.qcow2'/><target dev='{target}' bus='virtio'/></disk>"
)
NIC = (
    "<interface type='network'><mac address='52:54:00:a1:b2:{octet}'/><source network='default'/>"
    "<model type='virtio'/></interface>"
)

# (where, XML put into the device): what a virsh user writes that the model has no field for.
DISK_PARTS = {
    "address": ("child", "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"),
    "boot order": ("child", "<boot order='1'/>"),
    "serial": ("child", "<serial>WD-0042</serial>"),
    "iotune": ("child", "<iotune><total_bytes_sec>10000000</total_bytes_sec></iotune>"),
    "driver cache and discard": ("driver", "cache='none' discard='unmap' io='native'"),
    "snapshot": ("self", "snapshot='no'"),
}
NIC_PARTS = {
    "address": ("child", "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>"),
    "link state": ("child", "<link state='down'/>"),
    "mtu": ("child", "<mtu size='1400'/>"),
    "boot order": ("child", "<boot order='2'/>"),
}


def device(template: str, parts: dict[str, tuple[str, str]], chosen: list[str], **names: str) -> str:
    element = ET.fromstring(template.format(**names))
    for name in chosen:
        where, text = parts[name]
        if where == "child":
            element.append(ET.fromstring(text))
        else:
            target = element if where == "self" else element.find(where)
            target.attrib.update(ET.fromstring(f"<x {text}/>").attrib)
    return ET.tostring(element, encoding="unicode")


def foreign_domain(name: str, uuid: uuidlib.UUID, devices: list[str]) -> str:
    """A domain written by hand (no metadata of ours), booting by per-device order if a device says so."""
    boot = "" if any("<boot order" in text for text in devices) else "<boot dev='hd'/>"
    return (
        f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>256</memory>"
        f"<vcpu>1</vcpu><os><type>hvm</type>{boot}</os><devices>{''.join(devices)}</devices></domain>"
    )


def contents(xml: str) -> list[str]:
    """Each disk's and NIC's canonical XML, without the alias (ours carries the device id)."""
    found = []
    for element in ET.fromstring(xml).find("devices"):
        if element.tag in ("disk", "interface"):
            for alias in element.findall("alias"):
                element.remove(alias)
            found.append(ET.canonicalize(ET.tostring(element, encoding="unicode"), strip_text=True))
    return sorted(found)


@pytest.fixture
def hv(test_driver: LibvirtDriver) -> LibvirtDriver:
    return test_driver


def adopt_change_and_roll_back(hv: LibvirtDriver, devices: list[str]) -> DomainSpec:
    """Define ``devices`` in a foreign domain; adopt it, define it with more memory, then as adopted,
    checking that the devices' contents never change. Returns the adopted spec."""
    ref = uuidlib.uuid4()
    dom = hv.connection.raw.defineXML(foreign_domain(f"dev-{ref.hex[:8]}", ref, devices))
    hv.made.append(ref)  # type: ignore[attr-defined]
    first = contents(dom.XMLDesc(2))
    adopted = hv.get_spec(ref)
    hv.define(adopted.evolve(memory=384))
    assert contents(dom.XMLDesc(2)) == first, "after an update"
    assert hv.get_spec(ref).devices == adopted.devices
    hv.define(adopted)
    assert contents(dom.XMLDesc(2)) == first, "after a rollback"
    assert hv.get_spec(ref) == adopted
    return adopted


@pytest.mark.parametrize("part", sorted(DISK_PARTS))
def test_an_unmodelled_part_of_a_disk_survives_an_update_and_a_rollback(hv: LibvirtDriver, part: str):
    adopted = adopt_change_and_roll_back(hv, [device(DISK, DISK_PARTS, [part], name="root", target="vda")])
    (disk,) = adopted.disks
    assert disk.source == "/srv/root.qcow2" and disk.format == "qcow2"  # the model still reads its part
    assert list(disk.extra) == [DEVICE]


@pytest.mark.parametrize("part", sorted(NIC_PARTS))
def test_an_unmodelled_part_of_a_nic_survives_an_update_and_a_rollback(hv: LibvirtDriver, part: str):
    adopted = adopt_change_and_roll_back(hv, [device(NIC, NIC_PARTS, [part], octet="c3")])
    assert adopted.nics[0].mac == "52:54:00:a1:b2:c3" and list(adopted.nics[0].extra) == [DEVICE]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=st.lists(st.sampled_from(sorted(DISK_PARTS)), unique=True),
    second=st.lists(st.sampled_from(sorted(DISK_PARTS)), unique=True),
    nic=st.lists(st.sampled_from(sorted(NIC_PARTS)), unique=True),
)
def test_every_mix_of_parts_stays_with_its_own_device(hv: LibvirtDriver, first, second, nic):
    # Two disks with a PCI address each would share slot 7: the second gets its own.
    second_parts = {**DISK_PARTS, "address": ("child", DISK_PARTS["address"][1].replace("0x07", "0x08"))}
    if "boot order" in first and "boot order" in second:
        second_parts["boot order"] = ("child", "<boot order='3'/>")
    if "boot order" in nic and ("boot order" in first or "boot order" in second):
        nic = [part for part in nic if part != "boot order"]
    devices = [
        device(DISK, DISK_PARTS, first, name="root", target="vda"),
        device(DISK, second_parts, second, name="data", target="vdb"),
        device(NIC, NIC_PARTS, nic, octet="c4"),
    ]
    adopted = adopt_change_and_roll_back(hv, devices)
    assert xml_to_spec(spec_to_xml(adopted, "test")) == adopted


def test_a_detached_disk_takes_its_parts_with_it_and_a_new_one_has_none(hv: LibvirtDriver):
    devices = [
        device(DISK, DISK_PARTS, ["address", "serial"], name="root", target="vda"),
        device(DISK, DISK_PARTS, ["driver cache and discard"], name="data", target="vdb"),
    ]
    adopted = adopt_change_and_roll_back(hv, devices)
    hv.detach_device(adopted.uuid, "vdb", Scope.PERSISTENT)
    hv.attach_device(adopted.uuid, Disk(id="fresh", source="/srv/fresh.img", target="vdc"), Scope.PERSISTENT)
    spec = hv.get_spec(adopted.uuid)
    kept = {disk.id: disk.extra for disk in spec.disks}
    assert kept["vda"] == adopted.disks[0].extra and "vdb" not in kept
    assert not any("WD-0042" in text for entries in kept["fresh"].values() for text in entries)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("<interface><mtu size='1400'/></interface>", "of a <disk> is a <interface>"),
        ("<disk><address", "of a <disk>: not one XML element"),
    ],
)
def test_a_disk_part_that_is_not_a_disk_element_is_refused_before_libvirt(hv: LibvirtDriver, entry, message):
    disk = Disk(id="root", source="/srv/root.img", target="vda", extra={DEVICE: [entry]})
    spec = DomainSpec(uuid=uuidlib.uuid4(), name=f"bad-{uuidlib.uuid4().hex[:8]}", memory=128, disks=[disk])
    with pytest.raises(InvalidArgument, match=message):
        hv.define(spec)
    assert spec.uuid not in {info.uuid for info in hv.list()}
