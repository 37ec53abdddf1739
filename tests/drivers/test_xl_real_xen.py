"""What real Xen 4.17 taught the xl driver (issue 21, ``make xen-e2e``), and what it printed there.

The tests of what it taught each fail on the old driver; the others hold the driver (and the e2e checks) to
outputs recorded on real Xen, which the hand-written fixtures only imitated.
"""

from __future__ import annotations

import importlib.util
import logging
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


def test_a_failed_block_attach_is_detached_again_so_the_target_stays_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # Real xl 4.17 left the failed attach half made: the next attach of xvdb was "already in use".
    caplog.set_level(logging.INFO, logger="drivers.xen")
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
    # The error says xl's last line; the log keeps libxl's reasons before it, whole.
    failed = [record.getMessage() for record in caplog.records if record.name == "drivers.xen.driver"]
    stderr = real("real-block-attach-file.stderr").strip()
    assert any(message.startswith("xl block-attach e2e-pv") and stderr in message for message in failed), (
        failed
    )


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


ONESHOT = "/usr/local/lib/xen-block-oneshot"


def test_a_host_names_its_disk_hotplug_script_in_the_uri_and_every_diskspec_carries_it(tmp_path: Path):
    # Xen's `block` script (~20 xenstore client calls) outlasted libxl's hotplug timeout under QEMU/TCG:
    # the host names a script of its own, which xl runs instead (xl-disk-configuration(5) `script=`).
    xl = RecordedXl()
    xl.reply(["xl", "list", "-l"], real("real-list-l-pv.json"))
    xl.reply(["xl", "list"], real("real-list-pv.txt"))
    driver = XlDriver.from_uri(f"xl://{tmp_path}/xen?block-script={ONESHOT}", runner=xl)
    assert (driver.config_dir, driver.block_script) == (tmp_path / "xen", ONESHOT)
    root = Disk(id="root", source="/srv/root.img", target="xvda", bus="xen")
    spec = pv_guest(disks=(root,)).evolve(
        uuid=uuidlib.UUID("e17723c7-461d-42b5-8c09-a33a68dfb1a6"), name="e2e-pv"
    )
    driver.define(spec)
    assert (
        f"disk = [ 'format=raw, vdev=xvda, access=rw, script={ONESHOT}, target=/srv/root.img' ]"
        in (tmp_path / "xen" / "e2e-pv.cfg").read_text().splitlines()
    )
    data = Disk(id="data", source="/tmp/xen-e2e/disk.img", target="xvdb", bus="xen")
    attach = [
        "xl",
        "block-attach",
        "e2e-pv",
        f"format=raw, vdev=xvdb, access=rw, script={ONESHOT}, target={data.source}",
    ]
    xl.reply(attach)
    driver.attach_device(spec.uuid, data)
    assert xl.ran(*attach)
    assert [disk.id for disk in driver.get_spec(spec.uuid).disks] == ["root", "data"]


def test_without_a_block_script_xl_runs_its_own_and_the_diskspec_names_none():
    disk = Disk(id="data", source="/tmp/disk.img", target="xvdb", bus="xen")
    assert XlDriver.from_uri("xl:///srv/xen").block_script is None
    assert xlcfg.disk_spec(disk) == "format=raw, vdev=xvdb, access=rw, target=/tmp/disk.img"


@pytest.mark.parametrize(
    "uri",
    [
        "xl:///srv/xen?block-script=relative/script",
        "xl:///srv/xen?block-script=/a,b",
        "xl:///srv/xen?block-script=/a=b",
        "xl:///srv/xen?block-script=",
        "xl:///srv/xen?script=/bin/true",
        f"xl:///srv/xen?block-script={ONESHOT}&block-script=/bin/true",
    ],
)
def test_a_block_script_that_a_diskspec_cannot_carry_or_an_unknown_option_is_refused(uri: str):
    with pytest.raises(InvalidArgument, match=r"block[ -]script"):
        XlDriver.from_uri(uri)


def test_a_real_listing_with_a_hotplugged_disk_gives_it_back_under_its_id(tmp_path: Path):
    # Real xl list -l after `disk attach` through the block script: the disk carries its `script` there.
    xl = RecordedXl()
    xl.reply(["xl", "list", "-l"], real("real-list-l-disk.json"))
    xl.reply(["xl", "list"], real("real-list-pv.txt"))
    driver = XlDriver(config_dir=tmp_path / "xen", runner=xl)
    uuid = uuidlib.UUID("7f9f95bb-1b95-4bc1-bf9d-9c306e1b4b16")
    data = Disk(id="data", source="/tmp/xen-e2e/disk.img", target="xvdb", bus="xen")
    spec = pv_guest(disks=(data,)).evolve(uuid=uuid, name="e2e-pv")
    driver.define(spec)
    assert driver.get_spec(uuid, live=True).disks == (data,)


def test_a_destroy_racing_with_the_guest_going_away_succeeds_on_real_xls_words(tmp_path: Path):
    # Real xl: `xl destroy` of a name that is no longer a domain exits 1 with "... is an invalid domain
    # identifier (rc=-6)"; the guest is gone either way, so destroy has done its job.
    xl = RecordedXl()
    xl.reply(["xl", "list", "-l"], real("real-list-l-pv.json"))
    xl.reply(["xl", "list"], real("real-list-pv.txt"))
    driver = XlDriver(config_dir=tmp_path / "xen", runner=xl)
    spec = pv_guest().evolve(uuid=uuidlib.UUID("e17723c7-461d-42b5-8c09-a33a68dfb1a6"), name="e2e-pv")
    driver.define(spec)
    stderr = real("real-destroy-invalid-domain.stderr")
    assert stderr.startswith("e2e-pv is an invalid domain identifier (rc=-6)")
    xl.reply(["xl", "destroy", "e2e-pv"], stderr=stderr, returncode=1)
    driver.destroy(spec.uuid)
    assert xl.ran("xl", "destroy", "e2e-pv")


def test_the_vbd_the_e2e_checks_wait_on_is_the_one_real_xl_block_list_shows_connected():
    # scripts/xen_e2e_checks.py waits for /local/domain/0/backend/vbd/<domid>/<XVDB>/state to reach 4:
    # real `xl block-list` of the guest (domid 1) with xvdb attached lists that vdev, backend path and state.
    path = Path(__file__).resolve().parents[2] / "scripts" / "xen_e2e_checks.py"
    module_spec = importlib.util.spec_from_file_location("xen_e2e_checks", path)
    assert module_spec is not None and module_spec.loader is not None
    checks = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(checks)
    header, row = real("real-block-list.txt").splitlines()
    assert header.split() == ["Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"]
    vdev, backend_domid, _, state, _, _, backend_path = row.split()
    assert int(vdev) == checks.XVDB == (202 << 8) | (1 << 4)  # xvdb: major 202, disk 1 (vbd-interface.txt)
    assert (backend_domid, state) == ("0", "4")
    assert backend_path == f"/local/domain/0/backend/vbd/1/{checks.XVDB}"
