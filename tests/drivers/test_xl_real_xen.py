"""What real Xen 4.17 taught the xl driver (issue 21, ``make xen-e2e``): each test fails on the old driver."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest

from drivers import Boot, Disk, DomainSpec, DomainState, DriverError, InvalidArgument
from drivers.xen import XlDriver
from drivers.xen import config as xlcfg
from tests.drivers.test_xl import RecordedXl, web01_spec


def pv_guest(**changes: object) -> DomainSpec:
    return DomainSpec(
        uuid=uuidlib.uuid4(),
        name="pv1",
        memory="128M",
        boot=Boot(kernel="/boot/vmlinuz", initrd="/boot/initrd.img", cmdline="console=hvc0"),
        **changes,
    )


def test_a_kernel_boot_is_a_pv_guest_because_pvh_needs_hardware_paging():
    # Real xl under QEMU/TCG refused the old `type = "pvh"`: "neither hap nor shadow paging available".
    assert 'type = "pv"' in xlcfg.render(pv_guest()).splitlines()
    assert (
        'type = "hvm"' in xlcfg.render(DomainSpec(uuid=uuidlib.uuid4(), name="h", memory="128M")).splitlines()
    )


def test_pvh_is_asked_for_in_the_xl_extras_and_rendered_once(tmp_path: Path):
    spec = pv_guest(extra={"xl": ['type = "pvh"', "serial = 'pty'"]})
    xlcfg.check_extra(spec)
    lines = xlcfg.render(spec).splitlines()
    assert [line for line in lines if line.startswith("type")] == ['type = "pvh"']
    assert "serial = 'pty'" in lines
    path = tmp_path / "pv1.cfg"
    path.write_text("\n".join(lines))
    assert xlcfg.read_spec(path) == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (pv_guest(extra={"xl": ['type = "hvm"']}), "a kernel boot's type is 'pv' or 'pvh'"),
        (
            DomainSpec(uuid=uuidlib.uuid4(), name="h", memory="1G", extra={"xl": ['type = "pvh"']}),
            "which the model describes",
        ),
        (pv_guest(extra={"xl": ['type = "pv"', 'type = "pvh"']}), "a second time"),
    ],
)
def test_other_types_are_refused_before_anything_is_written(spec: DomainSpec, message: str, tmp_path: Path):
    driver = XlDriver(config_dir=tmp_path / "xen", runner=RecordedXl())
    with pytest.raises(InvalidArgument, match=message):
        driver.define(spec)
    assert not (tmp_path / "xen").exists()


def test_the_golden_config_is_now_pv():
    assert 'type = "pv"' in xlcfg.render(web01_spec()).splitlines()


def real(name: str) -> str:
    return (Path(__file__).resolve().parents[2] / "fixtures" / "xl" / name).read_text()


def test_a_failed_block_attach_is_detached_again_so_the_target_stays_free(tmp_path: Path):
    # Real xl 4.17 left the failed attach half made: the next attach of xvdb was "already in use".
    xl = RecordedXl()
    xl.reply(["xl", "list", "-l"], real("real-list-l-pv.json"))
    xl.reply(["xl", "list"], real("real-list-pv.txt"))
    spec = pv_guest().evolve(uuid=uuidlib.UUID("e17723c7-461d-42b5-8c09-a33a68dfb1a6"), name="e2e-pv")
    driver = XlDriver(config_dir=tmp_path / "xen", runner=xl)
    driver.define(spec)
    disk = Disk(id="data", source="/tmp/disk.img", target="xvdb", bus="xen")
    attach = ["xl", "block-attach", "e2e-pv", xlcfg.disk_spec(disk)]
    xl.reply(attach, stderr=real("real-block-attach-file.stderr"), returncode=1)
    xl.reply(
        ["xl", "block-detach", "e2e-pv", "xvdb"], stderr="Error: Device xvdb not connected.\n", returncode=1
    )
    with pytest.raises(DriverError, match="libxl_device_disk_add failed"):
        driver.attach_device(spec.uuid, disk)
    assert xl.calls[-1] == ("xl", "block-detach", "e2e-pv", "xvdb")
    assert driver.get_spec(spec.uuid).disks == ()


def test_real_listings_of_a_pv_guest_parse_to_its_state_and_live_spec(tmp_path: Path):
    xl = RecordedXl()
    xl.reply(["xl", "list", "-l"], real("real-list-l-pv.json"))
    xl.reply(["xl", "list"], real("real-list-paused.txt"))
    driver = XlDriver(config_dir=tmp_path / "xen", runner=xl)
    (info,) = driver.list()
    assert (info.name, info.domid, info.memory, info.vcpus) == ("e2e-pv", 1, 128, 1)
    assert info.state == DomainState.PAUSED
    live = driver.get_spec(info.uuid, live=True)
    assert live.boot.kernel == "/root/.cache/git-toolstack/xen/vmlinuz"
    assert (live.memory, live.effective_max_memory, live.on_poweroff) == (128, 256, "destroy")
