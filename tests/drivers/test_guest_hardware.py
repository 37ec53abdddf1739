"""Accelerator, CPU, consoles, graphics and CD-ROMs (issue 19), on the drivers that run in-process.

libvirt's test driver (``test:///default``) parses and keeps domain XML as libvirtd does, so the XML these
features render is checked by a real libvirt here; booting and the console stream are ``make e2e``'s.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

import drivers
from drivers import Disk, DomainSpec
from drivers.errors import DomainNotFound, InvalidArgument, InvalidState, Unsupported
from drivers.libvirt import accel, guest
from drivers.libvirt.xml import spec_to_xml, xml_to_spec
from drivers.xen import XlDriver


@pytest.fixture
def libvirt_test() -> Iterator[drivers.Driver]:
    hv = drivers.open("test:///default")
    yield hv
    hv.close()


def spec(**fields: object) -> DomainSpec:
    base: dict[str, object] = {"uuid": uuidlib.uuid4(), "name": f"g-{uuidlib.uuid4().hex[:8]}", "memory": 64}
    return DomainSpec.model_validate({**base, **fields})


def live_xml(hv: drivers.Driver, domain: DomainSpec) -> ET.Element:
    return ET.fromstring(hv.connection.raw.lookupByUUIDString(str(domain.uuid)).XMLDesc(2))  # type: ignore[attr-defined]


# -- the spec ---------------------------------------------------------------------------------------------


def test_new_fields_are_left_out_of_the_serialisation_when_unset_so_stored_configs_do_not_change():
    plain = spec()
    assert {"accel", "cpu", "graphics"}.isdisjoint(plain.model_dump(mode="json"))
    assert "device" not in Disk(id="d", source="/i.img", target="vda").model_dump(mode="json")


def test_a_cdrom_is_always_read_only_and_a_bad_cpu_model_names_the_field():
    cdrom = Disk(id="cd", source="/iso/d.iso", target="hdc", bus="ide", device="cdrom")
    assert cdrom.readonly
    with pytest.raises(ValueError, match="cpu model"):
        spec(cpu="not a model")
    with pytest.raises(ValueError, match="accel"):
        spec(accel="hvf")


# -- libvirt: what is rendered, and read back ------------------------------------------------------------


def test_cpu_graphics_cdrom_and_accel_survive_a_trip_through_libvirt(libvirt_test):
    wanted = spec(
        accel="tcg",
        cpu="host",
        graphics="vnc",
        boot={"device": "cdrom"},
        disks=[Disk(id="install", source="/iso/debian.iso", target="hdc", bus="ide", device="cdrom")],
    )
    libvirt_test.define(wanted)
    assert libvirt_test.get_spec(wanted.uuid) == wanted
    root = live_xml(libvirt_test, wanted)
    assert root.find("cpu").get("mode") == "host-passthrough"
    vnc = root.find("devices/graphics")
    assert (vnc.get("type"), vnc.get("listen")) == ("vnc", "127.0.0.1")
    assert root.find("devices/disk").get("device") == "cdrom"


def test_a_named_cpu_model_is_a_custom_model_and_reads_back(libvirt_test):
    wanted = spec(cpu="qemu64")
    libvirt_test.define(wanted)
    assert live_xml(libvirt_test, wanted).findtext("cpu/model") == "qemu64"
    assert libvirt_test.get_spec(wanted.uuid) == wanted


def test_every_domain_from_the_model_gets_a_serial_console_but_an_adopted_one_keeps_its_devices(libvirt_test):
    plain = spec()
    libvirt_test.define(plain)
    root = live_xml(libvirt_test, plain)
    assert root.find("devices/serial").get("type") == "pty"
    assert root.find("devices/console/target").get("type") == "serial"
    assert libvirt_test.get_spec(plain.uuid) == plain  # the default console is not an extra

    verbatim = spec(
        extra={
            "libvirt/devices": ['<rng model="virtio"><backend model="random">/dev/urandom</backend></rng>']
        }
    )
    libvirt_test.define(verbatim)
    assert live_xml(libvirt_test, verbatim).find("devices/serial") is None


def test_a_cpu_or_vnc_given_both_by_the_model_and_as_an_extra_is_refused_before_libvirt_is_called():
    with pytest.raises(InvalidArgument, match="clashes with the spec's cpu"):
        spec_to_xml(spec(cpu="host", extra={"libvirt/domain": ['<cpu mode="host-model" />']}))
    with pytest.raises(InvalidArgument, match="clashes with the spec's graphics"):
        spec_to_xml(spec(graphics="vnc", extra={"libvirt/devices": ['<graphics type="vnc" />']}))


def test_a_foreign_domain_keeps_its_type_cpu_graphics_and_cdrom_verbatim():
    foreign = xml_to_spec(
        f"""<domain type='kvm'><name>v</name><uuid>{uuidlib.uuid4()}</uuid><memory>65536</memory>
        <os><type>hvm</type></os><cpu mode='host-model'/>
        <devices><disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc' bus='ide'/>
        <readonly/></disk><graphics type='vnc' port='-1'/></devices></domain>"""
    )
    assert (foreign.accel, foreign.cpu, foreign.graphics, foreign.disks) == ("kvm", None, None, ())
    assert any("host-model" in entry for entry in foreign.extra["libvirt/domain"])
    devices = foreign.extra["libvirt/devices"]
    assert any('device="cdrom"' in entry for entry in devices)
    assert any("<graphics" in entry for entry in devices)
    assert ET.fromstring(spec_to_xml(foreign, "kvm")).get("type") == "kvm"


# -- the accelerator ---------------------------------------------------------------------------------------


def test_accel_on_the_driver_uri_is_ours_and_is_not_passed_to_libvirt():
    assert accel.split_uri("qemu:///system?accel=tcg") == ("qemu:///system", "tcg")
    assert accel.split_uri("qemu+ssh://h/system?keyfile=k&accel=kvm") == (
        "qemu+ssh://h/system?keyfile=k",
        "kvm",
    )
    assert accel.split_uri("qemu:///system") == ("qemu:///system", "auto")
    with pytest.raises(InvalidArgument, match="accel='fast'"):
        accel.split_uri("qemu:///system?accel=fast")


def test_the_probe_wants_both_libvirts_kvm_domains_and_an_openable_dev_kvm(libvirt_test):
    conn = libvirt_test.connection.raw  # the test driver offers no kvm domain capabilities
    refused = accel.probe(conn, local=True)
    assert not refused.kvm and "libvirt offers no kvm domains" in refused.reason

    class Offers:
        def getDomainCapabilities(self, *args: object) -> str:
            return "<domainCapabilities/>"

    def missing(path: str) -> int:
        raise FileNotFoundError(2, "No such file or directory", path)

    assert (
        accel.probe(Offers(), local=True, opener=missing).reason
        == "/dev/kvm does not open: No such file or directory"
    )
    assert accel.probe(Offers(), local=True, opener=lambda path: -1, facts=HARDWARE_KVM).kvm
    assert accel.probe(Offers(), local=False, opener=missing).kvm  # a remote daemon's /dev/kvm is not ours


HARDWARE_KVM = accel.HostFacts(frozenset({"fpu", "svm", "hypervisor"}), frozenset({"kvm", "kvm_amd"}))
PVM = accel.HostFacts(frozenset({"fpu", "hypervisor"}), frozenset({"kvm", "kvm_pvm"}))


def test_a_dev_kvm_that_opens_without_vmx_or_svm_is_not_chosen_and_pvm_is_named():
    """PVM serves /dev/kvm on cloud VMs without VMX/SVM, but runs an ordinary kernel through KVM's
    instruction emulator (the e2e guest seemed to hang after "Probing EDD"): auto chooses TCG there."""

    class Offers:
        def getDomainCapabilities(self, *args: object) -> str:
            return "<domainCapabilities/>"

    def opens(path: str) -> int:
        return -1

    pvm = accel.probe(Offers(), local=True, opener=opens, facts=PVM)
    assert not pvm.kvm
    assert pvm.reason.startswith("/dev/kvm opens, but KVM here is PVM (kvm_pvm")
    other = accel.probe(Offers(), local=True, opener=opens, facts=accel.HostFacts(frozenset(), frozenset()))
    assert (other.kvm, other.reason) == (
        False,
        "/dev/kvm opens, but the CPU has no vmx/svm flag, so this KVM is not hardware-assisted",
    )
    unknown = accel.HostFacts(None, frozenset({"kvm_pvm"}))  # flags unreadable: nothing to judge by
    assert accel.probe(Offers(), local=True, opener=opens, facts=unknown).kvm
    assert accel.probe(Offers(), local=False, facts=PVM).kvm  # a remote host's CPU is not this one


def test_host_facts_are_the_cpu_flags_and_the_loaded_kvm_modules(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme hypervisor lm\n\nprocessor\t: 1\n"
        "flags\t\t: fpu vme hypervisor lm\n"
    )
    for module in ("kvm", "kvm_pvm", "virtio_net"):
        (tmp_path / "sys" / "module" / module).mkdir(parents=True)
    facts = accel.read_host_facts(str(tmp_path / "proc"), str(tmp_path / "sys"))
    assert facts == accel.HostFacts(
        frozenset({"fpu", "vme", "hypervisor", "lm"}), frozenset({"kvm", "kvm_pvm"})
    )
    assert accel.software_kvm(facts) is not None
    empty = accel.read_host_facts(str(tmp_path / "none"), str(tmp_path / "none"))
    assert empty == accel.HostFacts(None, frozenset())


def test_a_spec_forcing_an_accelerator_gets_its_domain_type():
    assert ET.fromstring(spec_to_xml(spec(accel="kvm"), "kvm")).get("type") == "kvm"
    assert xml_to_spec(spec_to_xml(spec(accel="tcg"), "qemu")).accel == "tcg"


def test_host_info_names_the_driver_and_uri_everywhere(libvirt_test, tmp_path):
    assert libvirt_test.host_info() == {"driver": "LibvirtDriver", "uri": "test:///default"}
    with drivers.open("sim://") as sim:
        assert sim.host_info()["driver"] == "SimDriver"


# -- consoles ----------------------------------------------------------------------------------------------


def test_the_simulator_console_shows_a_boot_log_echoes_keys_and_ends_when_the_domain_stops():
    with drivers.open("sim://") as sim:
        domain = spec(boot={"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"})
        sim.define(domain)
        with pytest.raises(InvalidState):
            sim.console(domain.uuid)
        sim.start(domain.uuid)
        with sim.console(domain.uuid) as console:
            text = console.read(timeout=1)
            assert b"Linux version" in text and b"console=ttyS0" in text
            console.write(b"root\r")
            assert console.read(timeout=1) == b"root\r\n"
            sim.destroy(domain.uuid)
            assert console.read(timeout=1) == b""
        with pytest.raises(DomainNotFound):
            sim.console(uuidlib.uuid4())


def test_consoles_the_driver_cannot_attach_are_unsupported_naming_the_driver(libvirt_test, tmp_path):
    domain = spec()
    libvirt_test.define(domain)
    libvirt_test.start(domain.uuid)
    try:
        with pytest.raises(Unsupported, match="test driver"):
            libvirt_test.console(domain.uuid)
    finally:
        libvirt_test.destroy(domain.uuid)
    with pytest.raises(Unsupported, match=r"xl driver.*xl console"):
        XlDriver(config_dir=tmp_path / "xen", runner=lambda argv, input=None: None).console(domain.uuid)


# -- what vm show lists as consoles ------------------------------------------------------------------------

RUNNING_QEMU_DEVICES = """<domain type='kvm'><name>r</name><devices>
  <serial type='pty'><source path='/dev/pts/7'/><target type='isa-serial' port='0'/></serial>
  <console type='pty' tty='/dev/pts/7'><source path='/dev/pts/7'/><target type='serial' port='0'/></console>
  <console type='pty'><target type='virtio' port='1'/></console>
  <graphics type='vnc' port='5903' autoport='yes' listen='127.0.0.1'>
    <listen type='address' address='127.0.0.1'/></graphics>
  <graphics type='spice' autoport='yes'><listen type='address' address='0.0.0.0'/></graphics>
  <graphics type='spice'><listen type='none'/></graphics>
</devices></domain>"""


def test_the_consoles_of_a_running_qemu_domain_are_read_from_its_live_xml():
    """As libvirtd writes a running domain (ptys and the autoport filled in): the <console> that is serial
    port 0 again is not listed twice; a virtio console and each graphics server are."""
    found = guest.consoles_of(RUNNING_QEMU_DEVICES)
    assert [c.describe() for c in found] == [
        "serial (/dev/pts/7)",
        "serial",
        "vnc 127.0.0.1:5903",
        "spice on 0.0.0.0",
        "spice",
    ]
    assert guest.consoles_of("<domain type='qemu'><name>bare</name></domain>") == []


def test_the_simulator_gives_a_running_domains_vnc_a_port_of_its_own():
    with drivers.open("sim://") as sim:
        first, second = spec(graphics="vnc"), spec(graphics="vnc")
        for each in (first, second):
            sim.define(each)
            assert sim.consoles(each.uuid)[1].port is None
            sim.start(each.uuid)
        ports = {sim.consoles(each.uuid)[1].port for each in (first, second)}
        assert len(ports) == 2 and all(port is not None and port >= 5900 for port in ports)
        sim.destroy(first.uuid)
        assert sim.consoles(first.uuid)[1].port is None
