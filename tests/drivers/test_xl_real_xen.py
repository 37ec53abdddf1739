"""What real Xen 4.17 taught the xl driver (issue 21, ``make xen-e2e``): each test fails on the old driver."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

import pytest

from drivers import Boot, DomainSpec, InvalidArgument
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
