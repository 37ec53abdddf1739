"""Issue 16's scenarios against a real libvirtd running QEMU guests under TCG (``make e2e``).

The same promises the simulator and ``test:///default`` tests make, kept with real domains of
``qemu:///system``, through the real CLI:

- a command in a directory with no state repository creates none and touches no domain, even domains that
  carry the toolstack's metadata;
- two pools on one libvirtd never stop, redefine or undefine each other's domains;
- a domain defined with virsh keeps its serial console, graphics, video, RNG, CD-ROM and tablet through
  adopt, set, reconcile and rollback, as libvirt itself reports them;
- memory ballooned outside the toolstack is drift: shown, committed and repaired on the running guest;
- a rollback that would stop and undefine a running domain is refused without ``--yes``, and writes nothing.

Every domain a test defines has a unique name and is destroyed and undefined afterwards.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.drivers.conftest import E2E_DIR, E2E_URI, _require_e2e_guest, wait_until
from tests.toolstack.conftest import ROOT
from toolstack import layout
from toolstack.models import MANAGED_KEY, MANAGED_VALUE

pytestmark = pytest.mark.e2e

URI = E2E_URI
REFUSED = 8
INACTIVE = 2  # VIR_DOMAIN_XML_INACTIVE: the persistent definition, as `virsh dumpxml --inactive` prints it


@pytest.fixture
def libvirt() -> Iterator[object]:
    """A raw libvirt connection to the real libvirtd; every domain whose name starts with the test's prefix
    is destroyed and undefined afterwards."""
    import libvirt as libvirt_module

    _require_e2e_guest()
    connection = libvirt_module.open(URI.partition("?")[0])  # ?accel= is ours, not libvirt's
    connection.prefix = f"s16-{secrets.token_hex(3)}"  # type: ignore[attr-defined]
    yield connection
    for domain in connection.listAllDomains():
        if domain.name().startswith(connection.prefix):  # type: ignore[attr-defined]
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    connection.close()


def toolstack(cwd: Path, repo: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """`toolstack --driver qemu:///system [--repo REPO] ARGS` as a process without a terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLSTACK_")}
    argv = [sys.executable, "-m", "toolstack.cli", "--driver", URI, "--author", "E2e <e2e@example.org>"]
    if repo is not None:
        argv += ["--repo", str(repo)]
    return subprocess.run(
        [*argv, *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": ROOT},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    return result.stdout


def booting_domain(name: str, uuid: uuidlib.UUID, memory_mib: int = 192, devices: str = "") -> str:
    """A domain as an operator writes it for virsh: the e2e guest kernel (which loads the balloon driver),
    and ``devices`` the toolstack's model has no field for."""
    return (
        f"<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>"
        f"<memory unit='MiB'>{memory_mib * 2}</memory><currentMemory unit='MiB'>{memory_mib}</currentMemory>"
        "<vcpu placement='static'>1</vcpu>"
        f"<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{E2E_DIR / 'vmlinuz'}</kernel>"
        f"<initrd>{E2E_DIR / 'initrd.img'}</initrd><cmdline>quiet panic=-1</cmdline></os>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>"
        f"<devices><memballoon model='virtio'/>{devices}</devices></domain>"
    )


# Devices a virsh user adds that the toolstack does not model.
VIRSH_DEVICES = (
    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/>"
    "<readonly/></disk>"
    "<serial type='pty'><target port='0'/></serial>"
    "<console type='pty'><target type='serial' port='0'/></console>"
    "<input type='tablet' bus='usb'/>"
    "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"
    "<video><model type='cirrus'/></video>"
    "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
)
UNMODELLED_TAGS = {"serial", "console", "input", "graphics", "video", "rng", "controller", "memballoon"}


def unmodelled(domain: object) -> list[str]:
    """Canonical XML of the devices the model does not describe, in libvirt's own persistent definition."""
    devices = ET.fromstring(domain.XMLDesc(INACTIVE)).find("devices")  # type: ignore[attr-defined]
    assert devices is not None
    kept = [
        element
        for element in devices
        if element.tag in UNMODELLED_TAGS or (element.tag == "disk" and element.get("device") == "cdrom")
    ]
    return sorted(
        ET.canonicalize(ET.tostring(element, encoding="unicode"), strip_text=True) for element in kept
    )


def pool(tmp_path: Path, name: str) -> Path:
    repo = tmp_path / f"{name}.git"
    ok(toolstack(tmp_path, repo, "init", "--name", name))
    return repo


def main_head(repo: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()


def vm_record(tmp_path: Path, repo: Path, name: str) -> dict[str, object]:
    return json.loads(ok(toolstack(tmp_path, repo, "--json", "vm", "show", name)))


def test_a_command_without_a_state_repository_creates_none_and_touches_no_domain(tmp_path, libvirt):
    # Domains an older release of the toolstack defined: they carry its metadata, and no pool id.
    from drivers import DomainSpec
    from drivers.libvirt import LibvirtDriver

    q1, legacy1 = f"{libvirt.prefix}-q1", f"{libvirt.prefix}-legacy1"
    with LibvirtDriver(URI) as driver:
        for name in (q1, legacy1):
            driver.define(
                DomainSpec(uuid=uuidlib.uuid4(), name=name, memory=64, metadata={MANAGED_KEY: MANAGED_VALUE})
            )
    libvirt.lookupByName(q1).create()
    empty = tmp_path / "empty"
    empty.mkdir()

    for command in (["reconcile"], ["reconcile", "--dry-run"], ["reconcile", "--yes"], ["vm", "list"]):
        result = toolstack(empty, None, *command)
        assert result.returncode == 1, result
        assert "no state repository at" in result.stderr and "toolstack init" in result.stderr
        assert os.listdir(empty) == []

    assert libvirt.lookupByName(q1).isActive()
    assert libvirt.lookupByName(legacy1).isPersistent()


def test_two_pools_on_one_libvirtd_never_touch_each_others_domains(tmp_path, libvirt):
    a, b = pool(tmp_path, "a"), pool(tmp_path, "b")
    mine, theirs = f"{libvirt.prefix}-a1", f"{libvirt.prefix}-b1"
    ok(toolstack(tmp_path, a, "vm", "create", mine, "--memory", "64M", "--start"))
    ok(toolstack(tmp_path, b, "vm", "create", theirs, "--memory", "64M", "--start"))

    for repo, other in ((a, theirs), (b, mine)):
        for _ in range(2):  # a second round too: nothing either pool did invites the other to act
            out = ok(toolstack(tmp_path, repo, "reconcile"))
            assert "stop" not in out and "undefine" not in out, out
            assert f"foreign: {other} (" in out, out
        out = ok(toolstack(tmp_path, repo, "reconcile", "--adopt", "--yes"))
        assert "adopt" not in out, out  # not even --adopt takes another pool's domain

    for name, repo in ((mine, a), (theirs, b)):
        assert libvirt.lookupByName(name).isActive()
        assert vm_record(tmp_path, repo, name)["state"] == "running"


def test_a_virsh_domain_keeps_its_devices_through_adopt_set_reconcile_and_rollback(tmp_path, libvirt):
    name, ref = f"{libvirt.prefix}-virsh", uuidlib.uuid4()
    domain = libvirt.defineXML(booting_domain(name, ref, devices=VIRSH_DEVICES))
    domain.create()
    assert wait_until(lambda: domain.info()[2] == 192 * 1024, timeout=60, interval=1), domain.info()
    devices = unmodelled(domain)
    # The test is about these: libvirt kept each of them in its own definition.
    for mark in ("<serial", "<console", 'type="vnc"', "<video", "<rng", 'device="cdrom"', 'type="tablet"'):
        assert any(mark in element for element in devices), (mark, devices)
    repo = pool(tmp_path, "p")

    assert f"adopt {name}" in ok(toolstack(tmp_path, repo, "reconcile", "--adopt"))
    assert unmodelled(domain) == devices
    assert (
        "libvirt/devices"
        in json.loads(ok(toolstack(tmp_path, repo, "store", "get", layout.config_path(str(ref)))))["extra"]
    )
    assert "nothing to do" in ok(toolstack(tmp_path, repo, "reconcile", "--dry-run")).lower()
    adopted = main_head(repo)

    ok(toolstack(tmp_path, repo, "vm", "set", name, "--memory", "256M"))
    assert unmodelled(domain) == devices
    assert wait_until(lambda: vm_record(tmp_path, repo, name)["memory"] == 256, timeout=30)

    ok(toolstack(tmp_path, repo, "reconcile"))
    assert unmodelled(domain) == devices

    ok(toolstack(tmp_path, repo, "rollback", adopted))
    assert unmodelled(domain) == devices
    assert vm_record(tmp_path, repo, name)["memory"] == 192
    assert domain.isActive()


def test_memory_ballooned_outside_the_toolstack_is_drift_shown_committed_and_repaired(tmp_path, libvirt):
    name, ref = f"{libvirt.prefix}-drift", uuidlib.uuid4()
    domain = libvirt.defineXML(booting_domain(name, ref, memory_mib=256))
    domain.create()
    # Until the guest's balloon driver is up, libvirt reports the boot maximum: adopt the settled guest.
    assert wait_until(lambda: domain.info()[2] == 256 * 1024, timeout=60, interval=1), domain.info()
    repo = pool(tmp_path, "p")
    ok(toolstack(tmp_path, repo, "reconcile", "--adopt"))
    libvirt_live = 1  # VIR_DOMAIN_AFFECT_LIVE

    def ballooned() -> bool:
        domain.setMemoryFlags(200 * 1024, libvirt_live)
        return domain.info()[2] == 200 * 1024

    assert wait_until(ballooned, timeout=60, interval=2), domain.info()

    shown = ok(toolstack(tmp_path, repo, "vm", "show", name))
    assert "drift:    memory 200 MiB, desired 256 MiB (changed outside the toolstack)" in shown, shown
    assert "set-memory" in ok(toolstack(tmp_path, repo, "reconcile", "--dry-run"))

    ok(toolstack(tmp_path, repo, "reconcile"))
    log = subprocess.run(
        ["git", "--git-dir", str(repo), "log", "--format=%B", "--grep=^drift:", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"vm {name} ({ref}) memory is 200 MiB, was 256 MiB, desired 256 MiB" in log, log
    assert wait_until(lambda: domain.info()[2] == 256 * 1024, timeout=60), domain.info()
    repaired = ok(toolstack(tmp_path, repo, "vm", "show", name))
    assert not re.search(r"^drift:", repaired, re.M), repaired  # (its history still lists the drift commit)


def test_a_rollback_that_would_stop_and_undefine_a_running_domain_is_refused_without_yes(tmp_path, libvirt):
    repo = pool(tmp_path, "p")
    web, db = f"{libvirt.prefix}-web", f"{libvirt.prefix}-db"
    ok(toolstack(tmp_path, repo, "vm", "create", web, "--memory", "64M", "--start"))
    before_db = main_head(repo)
    ok(toolstack(tmp_path, repo, "vm", "create", db, "--memory", "64M", "--start"))
    head = main_head(repo)

    refused = toolstack(tmp_path, repo, "rollback", before_db)

    assert refused.returncode == REFUSED, refused
    assert "would stop" in refused.stdout and db in refused.stdout and "--yes" in refused.stderr
    assert libvirt.lookupByName(db).isActive() and libvirt.lookupByName(web).isActive()
    assert main_head(repo) == head

    ok(toolstack(tmp_path, repo, "rollback", before_db, "--yes"))
    assert db not in [domain.name() for domain in libvirt.listAllDomains()]
    assert libvirt.lookupByName(web).isActive()
