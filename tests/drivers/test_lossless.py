"""What DomainSpec does not model is kept verbatim (``DomainSpec.extra``), by every driver.

The libvirt parts run against libvirt's real ``test:///default`` hypervisor in-process; the xl parts feed the
driver recorded ``xl`` output, as tests/drivers/test_xl.py does.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
from drivers import Disk, DomainSpec, InvalidArgument, Nic, Scope
from drivers.libvirt import LibvirtDriver
from drivers.libvirt.xml import spec_to_xml, xml_to_spec
from drivers.xen import XlDriver
from drivers.xen import config as xlcfg
from tests.drivers.strategies import domain_specs
from tests.drivers.test_xl import RecordedXl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "libvirt"

# Elements a virsh user puts in a domain that our model has no field for, as libvirt's test driver
# reports them (its canonical form), keyed by the <domain> child they live under.
UNMODELLED_DEVICES = (
    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
    "<source file='/var/lib/libvirt/images/debian-12.iso'/><target dev='hdc' bus='ide'/><readonly/>"
    "<address type='drive' controller='0' bus='1' target='0' unit='0'/></disk>",
    "<controller type='usb' index='0' model='qemu-xhci'/>",
    "<interface type='user'><mac address='52:54:00:d4:e5:f6'/><target dev='testnet1'/><model type='e1000e'/>"
    "</interface>",
    "<serial type='pty'><target port='0'/></serial>",
    "<console type='pty'><target type='serial' port='0'/></console>",
    "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
    "<input type='tablet' bus='usb'/>",
    "<graphics type='vnc' port='-1' autoport='yes'><listen type='address'/></graphics>",
    "<graphics type='spice' autoport='yes'><listen type='address'/></graphics>",
    "<sound model='ich9'/>",
    "<video><model type='virtio' heads='1' primary='yes'/></video>",
    "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>",
    "<memballoon model='virtio'/>",
)
UNMODELLED_DOMAIN = (
    "<title>legacy web server</title>",
    "<features><acpi/><apic/><pae/></features>",
    "<cpu mode='host-passthrough' check='none' migratable='on'/>",
    "<clock offset='localtime'><timer name='rtc' tickpolicy='catchup'/></clock>",
)


def virsh_domain(name: str, uuid: uuidlib.UUID) -> str:
    """A domain as an operator defines it with virsh: nothing of ours in it, many devices we do not model."""
    root = ET.fromstring(
        "<domain type='test'><memory unit='KiB'>1048576</memory><vcpu placement='static'>2</vcpu>"
        "<os><type arch='x86_64'>hvm</type><boot dev='cdrom'/><boot dev='hd'/><bootmenu enable='yes'/></os>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/var/lib/libvirt/images/legacy.qcow2'/><target dev='vda' bus='virtio'/></disk>"
        "<interface type='network'><mac address='52:54:00:a1:b2:c3'/><source network='default'/>"
        "<model type='virtio'/></interface></devices></domain>"
    )
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "uuid").text = str(uuid)
    root.extend(ET.fromstring(text) for text in UNMODELLED_DOMAIN)
    root.find("devices").extend(ET.fromstring(text) for text in UNMODELLED_DEVICES)
    return ET.tostring(root, encoding="unicode")


def canonical(element: ET.Element) -> str:
    """C14N of an element with indentation ignored: equal means the same XML, independent of our code."""
    return ET.canonicalize(ET.tostring(element, encoding="unicode"), strip_text=True)


def unmodelled_elements(xml: str) -> list[str]:
    """The canonical forms of the elements of UNMODELLED_* found in a domain document."""
    root = ET.fromstring(xml)
    wanted = {canonical(ET.fromstring(text)) for text in (*UNMODELLED_DEVICES, *UNMODELLED_DOMAIN)}
    found = [canonical(element) for element in (*root, *root.find("devices"))]
    return sorted(text for text in found if text in wanted)


def expected_elements() -> list[str]:
    return sorted(canonical(ET.fromstring(text)) for text in (*UNMODELLED_DEVICES, *UNMODELLED_DOMAIN))


def define_virsh_domain(driver: LibvirtDriver) -> tuple[uuidlib.UUID, object]:
    ref = uuidlib.uuid4()
    dom = driver.connection.raw.defineXML(virsh_domain(f"virsh-{ref.hex[:8]}", ref))
    driver.made.append(ref)  # type: ignore[attr-defined]
    return ref, dom


# -- the model -------------------------------------------------------------------------------------------


def test_a_spec_without_extras_serialises_as_before_and_empty_keys_say_nothing():
    spec = DomainSpec(uuid=uuidlib.uuid4(), name="plain", memory=64)
    assert "extra" not in spec.model_dump(mode="json") and '"extra"' not in spec.model_dump_json()
    assert spec.evolve(extra={"xl": []}) == spec
    kept = spec.evolve(extra={"xl": ["vnc = 1"]})
    assert kept.model_dump(mode="json")["extra"] == {"xl": ["vnc = 1"]}
    assert DomainSpec.model_validate_json(kept.model_dump_json()) == kept


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Libvirt": ["<a/>"]}, "extra key 'Libvirt': expected '<family>' or '<family>/<place>'"),
        ({"libvirt/": ["<a/>"]}, "extra key 'libvirt/': expected"),
        ({"xl": ["vnc = 1", "  "]}, "extra 'xl' entry 1: must be non-empty text"),
    ],
)
def test_a_malformed_extra_key_or_empty_entry_is_refused_naming_it(extra: dict[str, list[str]], message: str):
    with pytest.raises(pydantic.ValidationError, match=message):
        DomainSpec(uuid=uuidlib.uuid4(), name="bad", memory=64, extra=extra)


# -- libvirt XML -----------------------------------------------------------------------------------------


def test_a_virsh_defined_domain_reads_with_everything_unmodelled_kept_verbatim():
    spec = xml_to_spec((FIXTURES / "foreign-qemu-domain.xml").read_text())
    devices = [ET.fromstring(text) for text in spec.extra["libvirt/devices"]]
    assert [e.tag for e in devices] == [
        "emulator",
        "disk",  # the CD-ROM
        "controller",
        "interface",  # user-mode networking
        "serial",
        "console",
        "graphics",
        "video",
    ]
    assert devices[1].get("device") == "cdrom" and devices[1].find("source").get("file").endswith(".iso")
    assert [ET.fromstring(t).tag for t in spec.extra["libvirt/domain"]] == ["features", "cpu", "clock"]
    assert [ET.fromstring(t).attrib for t in spec.extra["libvirt/attributes"]] == [
        {"arch": "x86_64", "machine": "pc-q35-7.2"},
        {"placement": "static"},
    ]
    assert ET.fromstring(spec.extra["libvirt/metadata"][0]).tag.endswith("}libosinfo")
    # The modelled parts are what they were: one Disk, one Nic.
    assert [d.target for d in spec.disks] == ["vda"] and [n.network for n in spec.nics] == ["default"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(UNMODELLED_DEVICES), unique=True),
    st.lists(st.sampled_from(UNMODELLED_DOMAIN), unique=True),
    st.randoms(use_true_random=False),
)
def test_xml_to_spec_then_back_keeps_every_unmodelled_element(devices, domain, rnd):
    root = ET.fromstring(virsh_domain("prop", uuidlib.uuid4()))
    for child in [
        c for c in root if canonical(c) in {canonical(ET.fromstring(t)) for t in UNMODELLED_DOMAIN}
    ]:
        root.remove(child)
    device_list = root.find("devices")
    for child in list(device_list)[2:]:
        device_list.remove(child)
    for text in devices:  # anywhere among the modelled devices
        device_list.insert(rnd.randint(0, len(device_list)), ET.fromstring(text))
    root.extend(ET.fromstring(text) for text in domain)
    original = ET.tostring(root, encoding="unicode")
    again = spec_to_xml(xml_to_spec(original), "test")
    assert unmodelled_elements(again) == unmodelled_elements(original)
    assert len(unmodelled_elements(original)) == len(devices) + len(domain)
    assert [c.get("dev") for c in ET.fromstring(again).findall("os/boot")] == ["cdrom", "hd"]
    assert ET.fromstring(again).find("os/bootmenu").get("enable") == "yes"


def canonical_extras() -> st.SearchStrategy[dict[str, list[str]]]:
    """Libvirt extras in the canonical form xml_to_spec gives them, at every place."""
    return st.deferred(_canonical_extras)  # built when drawn: collecting the tests parses nothing


def _canonical_extras() -> st.SearchStrategy[dict[str, list[str]]]:
    pool = xml_to_spec(virsh_domain("pool", uuidlib.uuid4())).extra
    return st.fixed_dictionaries(
        {},
        optional={
            key: st.lists(st.sampled_from(entries), unique=True, min_size=1).map(
                lambda chosen, entries=entries: [e for e in entries if e in chosen]  # keep document order
            )
            for key, entries in pool.items()
        },
    )


@given(domain_specs(), canonical_extras(), st.lists(st.sampled_from(["vnc = 1", "serial = 'pty'"])))
def test_spec_to_xml_and_back_is_the_identity_with_extras(spec: DomainSpec, libvirt_extra, xl_extra):
    spec = spec.evolve(extra={**libvirt_extra, "xl": list(dict.fromkeys(xl_extra))})
    assert xml_to_spec(spec_to_xml(spec, "test")) == spec


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"libvirt/devices": ["<serial type='pty'>"]}, r"'libvirt/devices' entry 0 is not one well-formed"),
        ({"libvirt/devices": ["<video/><rng/>"]}, "entry 0 is not one well-formed"),
        (
            {"libvirt/devices": ["<disk><source file='/a.img'/><target dev='vdz'/></disk>"]},
            "entry 0 <disk> is a device the model describes",
        ),
        ({"libvirt/domain": ["<cpu/>", "<memory>1</memory>"]}, "entry 1 <memory> is described by the model"),
        ({"libvirt/os": ["<kernel>/k</kernel>"]}, "<kernel> is described by the model's boot"),
        ({"libvirt/attributes": ["<vcpu current='2'/>"]}, "sets \\['current'\\], which the model owns"),
        ({"libvirt/attributes": ["<memory dumpCore='on'/>"]}, "<memory> is not one of os, type, vcpu"),
        ({"libvirt/bogus": ["<a/>"]}, "'libvirt/bogus' is not a place in libvirt domain XML"),
    ],
)
def test_bad_libvirt_extras_are_refused_by_define_naming_the_entry(
    test_driver: LibvirtDriver, extra, message
):
    spec = DomainSpec(uuid=uuidlib.uuid4(), name=f"bad-{uuidlib.uuid4().hex[:8]}", memory=64, extra=extra)
    with pytest.raises(InvalidArgument, match=message):
        test_driver.define(spec)
    assert spec.uuid not in {info.uuid for info in test_driver.list()}  # nothing reached libvirt


# -- libvirt's test hypervisor ---------------------------------------------------------------------------


def test_redefining_an_adopted_domain_through_the_driver_keeps_its_devices(test_driver: LibvirtDriver):
    ref, dom = define_virsh_domain(test_driver)
    assert unmodelled_elements(dom.XMLDesc(2)) == expected_elements()
    spec = test_driver.get_spec(ref)
    test_driver.define(spec.evolve(memory=512, metadata={"managed-by": "git-toolstack"}))
    assert unmodelled_elements(dom.XMLDesc(2)) == expected_elements()
    changed = test_driver.get_spec(ref)
    assert changed.memory == 512 and changed.extra == spec.extra  # reads back as it was defined
    test_driver.attach_device(ref, Disk(id="data", source="/srv/data.img", target="vdb"), Scope.PERSISTENT)
    test_driver.set_vcpus(ref, 1, Scope.PERSISTENT)
    test_driver.detach_device(ref, "data", Scope.PERSISTENT)
    assert unmodelled_elements(dom.XMLDesc(2)) == expected_elements()
    assert test_driver.get_spec(ref).extra == spec.extra


def test_a_domain_we_define_without_extras_reads_back_without_libvirts_defaults(test_driver: LibvirtDriver):
    spec = DomainSpec(
        uuid=uuidlib.uuid4(),
        name=f"plain-{uuidlib.uuid4().hex[:8]}",
        memory=128,
        nics=[Nic(id="eth0", mac="52:54:00:00:10:01", network="default")],
    )
    test_driver.define(spec)
    test_driver.made.append(spec.uuid)  # type: ignore[attr-defined]
    raw = test_driver.connection.raw.lookupByUUIDString(str(spec.uuid)).XMLDesc(2)
    assert ET.fromstring(raw).find("clock") is not None  # libvirt added it: its business, not a change
    assert test_driver.get_spec(spec.uuid) == spec


def test_other_families_extras_ride_along_in_libvirt_metadata(test_driver: LibvirtDriver):
    spec = DomainSpec(
        uuid=uuidlib.uuid4(),
        name=f"xlx-{uuidlib.uuid4().hex[:8]}",
        memory=128,
        extra={"xl": ["vnc = 1", "serial = 'pty'"]},
    )
    test_driver.define(spec)
    test_driver.made.append(spec.uuid)  # type: ignore[attr-defined]
    assert test_driver.get_spec(spec.uuid) == spec


# -- the simulator ---------------------------------------------------------------------------------------


def test_the_simulator_keeps_extras_as_given_even_across_processes(tmp_path: Path):
    spec = DomainSpec(
        uuid=uuidlib.uuid4(),
        name="simx",
        memory=64,
        extra={"libvirt/devices": ["<serial type='pty'/>"], "xl": ["usb = 1"]},
    )
    with drivers.open(f"sim://{tmp_path}") as hv:
        hv.define(spec)
    with drivers.open(f"sim://{tmp_path}") as hv:
        assert hv.get_spec(spec.uuid) == spec


# -- xl ---------------------------------------------------------------------------------------------------

XL_SETTINGS = ("serial = 'pty'", "vnc = 1", "vnclisten = '0.0.0.0'", "usb = 1", "usbdevice = [ 'tablet' ]")


@pytest.fixture
def xl_driver(tmp_path: Path) -> XlDriver:
    runner = RecordedXl()
    runner.host("list-l-dom0-only.json", "list-dom0-only.txt")
    return XlDriver(config_dir=tmp_path / "xen", runner=runner, poll_interval=0.01)


def xl_spec(**changes: object) -> DomainSpec:
    return DomainSpec(
        uuid=uuidlib.uuid4(),
        name="hvm01",
        memory=512,
        max_memory=1024,
        disks=[Disk(id="root", source="/srv/hvm01.img", target="xvda", bus="xen")],
        extra={"xl": list(XL_SETTINGS)},
    ).evolve(**changes)


def xl_lines(driver: XlDriver) -> list[str]:
    return (driver.config_dir / "hvm01.cfg").read_text().splitlines()


def test_xl_settings_we_do_not_model_are_written_verbatim_and_survive_every_rewrite(xl_driver: XlDriver):
    spec = xl_spec()
    xl_driver.define(spec)
    lines = xl_lines(xl_driver)
    assert lines[-len(XL_SETTINGS) :] == list(XL_SETTINGS)
    assert xl_driver.get_spec(spec.uuid) == spec
    xl_driver.set_memory(spec.uuid, 768, Scope.PERSISTENT)
    xl_driver.attach_device(spec.uuid, Disk(id="d", source="/srv/d.img", target="xvdb", bus="xen"))
    xl_driver.detach_device(spec.uuid, "d")
    xl_driver.define(xl_driver.get_spec(spec.uuid).evolve(vcpus=2, max_vcpus=4))
    assert xl_lines(xl_driver)[-len(XL_SETTINGS) :] == list(XL_SETTINGS)
    assert "memory = 768" in xl_lines(xl_driver) and "vcpus = 2" in xl_lines(xl_driver)
    assert xl_driver.get_spec(spec.uuid).extra == spec.extra


def test_libvirt_extras_ride_along_in_the_xl_spec_comment(xl_driver: XlDriver):
    spec = xl_spec(extra={"xl": ["vnc = 1"], "libvirt/devices": ["<video/>"]})
    xl_driver.define(spec)
    assert xl_driver.get_spec(spec.uuid) == spec
    assert not any("<video" in line for line in xl_lines(xl_driver) if not line.startswith("#"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["vnc"], "entry 0 'vnc' is not one 'key = value' line"),
        (["vnc = 1\nmemory = 9"], "is not one 'key = value' line"),
        (["vnc = 1", "memory = 4096"], "entry 1 sets 'memory', which the model describes"),
        (["usb = 1", "usb = 0"], "entry 1 sets 'usb' a second time"),
    ],
)
def test_bad_xl_settings_are_refused_before_any_file_is_written(xl_driver: XlDriver, settings, message):
    with pytest.raises(InvalidArgument, match=message):
        xl_driver.define(xl_spec(extra={"xl": settings}))
    assert not (xl_driver.config_dir / "hvm01.cfg").exists()


def test_xl_settings_have_one_place(xl_driver: XlDriver):
    with pytest.raises(InvalidArgument, match="'xl/vfb': xl settings all go under 'xl'"):
        xl_driver.define(xl_spec(extra={"xl/vfb": ["vfb = [ 'vnc=1' ]"]}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(XL_SETTINGS), unique=True))
def test_every_choice_of_xl_settings_reads_back_equal(tmp_path: Path, chosen: list[str]):
    spec = xl_spec(extra={"xl": chosen})
    path = tmp_path / "x.cfg"
    path.write_text(xlcfg.render(spec))
    assert xlcfg.read_spec(path) == spec
