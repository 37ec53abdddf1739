"""The xl driver renders the model's guest hardware (``cpu``, ``graphics``, the serial console) as xl.cfg.

Issue 19 added ``--cpu`` and ``--graphics`` to VMs; the xl driver wrote neither. What xl.cfg(5) can say is
written, what Xen cannot do is refused before anything is written, and the xl.cfg reads back to the spec.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest

from drivers import Boot, Disk, DomainSpec, InvalidArgument, Unsupported
from drivers.xen import XlDriver
from drivers.xen import config as xlcfg
from tests.drivers.test_xl import RecordedXl, fixture


def hvm(**changes: object) -> DomainSpec:
    disk = Disk(id="root", source="/srv/hvm01.img", target="xvda", bus="xen")
    return DomainSpec(uuid=uuidlib.uuid4(), name="hvm01", memory=512, disks=[disk]).evolve(**changes)


def pv(**changes: object) -> DomainSpec:
    boot = Boot(kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=hvc0")
    return DomainSpec(uuid=uuidlib.uuid4(), name="pv01", memory=128, boot=boot).evolve(**changes)


@pytest.fixture
def driver(tmp_path: Path) -> XlDriver:
    runner = RecordedXl()
    runner.reply(["xl", "list", "-l"], fixture("list-l-dom0-only.json"))
    runner.reply(["xl", "list"], fixture("list-dom0-only.txt"))
    return XlDriver(config_dir=tmp_path / "xen", runner=runner)


def written(driver: XlDriver, spec: DomainSpec) -> list[str]:
    driver.define(spec)
    path = driver.config_dir / f"{spec.name}.cfg"
    assert xlcfg.read_spec(path) == spec
    return path.read_text().splitlines()


def test_an_hvm_guest_gets_a_pty_serial_console_and_no_vnc_unless_asked(driver: XlDriver):
    lines = written(driver, hvm())
    assert 'serial = "pty"' in lines
    assert "vnc = 0" in lines  # xl's default is VNC on: a graphical console is opened only on request
    assert not any(line.startswith(("vfb", "vnclisten", "cpuid")) for line in lines)


def test_hvm_graphics_is_vnc_on_loopback_from_the_device_model(driver: XlDriver):
    lines = written(driver, hvm(graphics="vnc"))
    assert lines[-4:] == ["vnc = 1", 'vnclisten = "127.0.0.1"', "vncunused = 1", 'serial = "pty"']


def test_a_pv_guest_has_no_serial_port_and_its_graphics_is_a_pv_framebuffer(driver: XlDriver):
    # A PV guest's console is the PV console (hvc0), always there; `serial` configures an HVM device model.
    assert not any(line.startswith(("serial", "vnc", "vfb")) for line in written(driver, pv()))
    lines = written(driver, pv(name="pv02", graphics="vnc"))
    assert "vfb = [ 'vnc=1, vnclisten=127.0.0.1, vncunused=1' ]" in lines
    assert not any(line.startswith(("serial", "vnc")) for line in lines)


def test_the_host_cpu_is_the_libxl_cpuid_baseline_for_every_guest_type(driver: XlDriver):
    assert 'cpuid = "host"' in written(driver, hvm(cpu="host"))
    assert 'cpuid = "host"' in written(driver, pv(cpu="host"))


@pytest.mark.parametrize("spec", [hvm(cpu="qemu64"), pv(cpu="Skylake-Server")])
def test_a_named_cpu_model_is_refused_before_anything_is_written(driver: XlDriver, spec: DomainSpec):
    with pytest.raises(Unsupported, match="Xen has no named CPU models"):
        driver.define(spec)
    assert not driver.config_dir.exists()


@pytest.mark.parametrize(
    "spec",
    [
        hvm(graphics="vnc", extra={"xl": ["vnc = 1"]}),
        hvm(graphics="vnc", extra={"xl": ["vnclisten = '0.0.0.0'"]}),
        pv(graphics="vnc", extra={"xl": ["vfb = [ 'vnc=1' ]"]}),
        pv(cpu="host", extra={"xl": ['cpuid = "host,tm=0"']}),
    ],
)
def test_a_setting_given_both_by_the_model_and_as_an_xl_extra_is_refused(driver: XlDriver, spec: DomainSpec):
    with pytest.raises(InvalidArgument, match="which the model describes"):
        driver.define(spec)


def test_a_spec_with_xl_extras_is_complete_and_gets_no_default_console(driver: XlDriver):
    # An adopted domain keeps exactly what it had: its own serial and VNC settings, nothing added.
    lines = written(driver, hvm(extra={"xl": ["serial = 'vc'", "vnc = 1"]}))
    assert [line for line in lines if line.startswith(("serial", "vnc"))] == ["serial = 'vc'", "vnc = 1"]
    assert 'cpuid = "host,tm=0"' in written(driver, pv(extra={"xl": ['cpuid = "host,tm=0"']}))
