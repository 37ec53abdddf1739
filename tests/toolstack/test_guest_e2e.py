"""Issue 19 end to end on a real libvirtd (``make e2e``): the toolstack CLI boots a kernel, shows its boot
messages through ``toolstack console`` on a pseudo-terminal, attaches a disk and shuts the guest down; a
domain XML file with a serial console, graphics, an RNG and a CD-ROM goes in with ``vm define`` and every
device comes back out of ``vm dumpxml`` after an update and a rollback; and one guest boots under KVM and
under TCG, side by side, timed to its first console line.

Every domain a test defines has a unique name and is destroyed and undefined afterwards. Guests are 128 MiB.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import subprocess
import sys
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.libvirt.accel import HARDWARE_FLAGS, KVM_DEVICE, read_host_facts
from drivers.libvirt.extra import fragment
from tests.drivers.conftest import E2E_DIR, E2E_URI, _require_e2e_guest
from tests.figures import FIGURES
from tests.toolstack.conftest import ROOT

pytestmark = pytest.mark.e2e

USERSPACE = b"e2e guest: userspace up"  # printed by the e2e guest's init (scripts/e2e-setup.sh)
KERNEL_LINE = re.compile(rb"\[\s*\d+\.\d+\] ")  # a kernel log line: "[    0.000000] Linux version ..."
BOOT_SECONDS = 90
KVM_DOUBTED_SECONDS = 30  # where the probe already says why KVM cannot boot the guest in reasonable time


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique name prefix; every domain named with it is destroyed and undefined afterwards."""
    import libvirt

    _require_e2e_guest()
    name = f"g19-{secrets.token_hex(3)}"
    yield name
    connection = libvirt.open(E2E_URI.partition("?")[0])
    for domain in connection.listAllDomains():
        if domain.name().startswith(name):
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    connection.close()


def toolstack(cwd: Path, *args: str, uri: str = E2E_URI) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLSTACK_")}
    argv = [sys.executable, "-m", "toolstack.cli", "--driver", uri, "--author", "E2e <e2e@example.org>"]
    result = subprocess.run(
        [*argv, *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": ROOT},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"toolstack {' '.join(args)}: exit {result.returncode}: {result.stderr}"
    return result.stdout


def reset(name: str) -> None:
    """Reset the domain as a reset button would (libvirt's ``virDomainReset``): it reboots with the same
    definition, its serial port and any console attached to it staying."""
    import libvirt

    connection = libvirt.open(E2E_URI.partition("?")[0])
    try:
        connection.lookupByName(name).reset()
    finally:
        connection.close()


def read_until(fd: int, wanted: bytes, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_the_cli_boots_a_kernel_shows_its_console_attaches_a_disk_and_shuts_it_down(
    tmp_path, prefix, record_property
):
    """libvirt's console replays nothing of what the guest printed before it attached, and a fast host
    boots to userspace before ``vm start`` returns: so ``toolstack console`` attaches first, then the guest
    is reset (its domain and serial port stay) and its whole boot comes through, from the kernel's first
    line."""
    name = f"{prefix}-boot"
    toolstack(tmp_path, "init")
    toolstack(
        tmp_path,
        *("vm", "create", name, "--memory", "128M", "--kernel", str(E2E_DIR / "vmlinuz")),
        *(
            "--initrd",
            str(E2E_DIR / "initrd.img"),
            "--cmdline",
            "console=ttyS0 panic=-1",
            "--graphics",
            "vnc",
        ),
    )
    shown = toolstack(tmp_path, "vm", "show", name)
    accel = re.search(r"^accel: +(.*)$", shown, re.M).group(1)  # type: ignore[union-attr]
    assert re.search(r"^consoles: serial, vnc on 127\.0\.0\.1$", shown, re.M), shown
    toolstack(tmp_path, "vm", "start", name)
    running = re.search(r"^consoles: (.*)$", toolstack(tmp_path, "vm", "show", name), re.M).group(1)  # type: ignore[union-attr]
    record_property(FIGURES, f"accelerator ({E2E_URI}): {accel}\nconsoles while it runs: {running}")
    assert re.fullmatch(r"serial \(/dev/pts/\d+\), vnc 127\.0\.0\.1:59\d\d", running), running

    leader, follower = pty.openpty()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOOLSTACK_")}, "PYTHONPATH": ROOT}
    console = subprocess.Popen(
        [sys.executable, "-m", "toolstack.cli", "--driver", E2E_URI, "console", name],
        stdin=follower, stdout=follower, stderr=follower, cwd=tmp_path, env=env,
    )  # fmt: skip
    os.close(follower)
    try:
        attached = read_until(leader, b"escape character is ^]", 60)
        assert b"Connected to " + name.encode() in attached, attached[-2000:]
        reset(name)
        seen = read_until(leader, USERSPACE, BOOT_SECONDS)
        assert USERSPACE in seen, seen[-2000:]
        booted = seen[: seen.index(USERSPACE)]
        assert b"Linux version" in booted, "the whole boot came through, from the kernel's first line"
        assert KERNEL_LINE.search(booted), "the kernel's own messages reach the console too"
        os.write(leader, b"\x1d")  # Ctrl-] detaches
        assert console.wait(timeout=30) == 0
    finally:
        if console.poll() is None:
            console.kill()
        os.close(leader)

    image = tmp_path / "data.img"
    image.write_bytes(b"\0" * (1 << 20))
    toolstack(tmp_path, "disk", "attach", name, str(image), "--target", "vdb")
    assert str(image) in toolstack(tmp_path, "vm", "dumpxml", name)
    assert "shutoff" in toolstack(tmp_path, "vm", "shutdown", name, "--timeout", "90")
    live = ET.fromstring(toolstack(tmp_path, "vm", "dumpxml", name, "--inactive"))
    assert live.find("devices/serial").get("type") == "pty"


IMAGES = Path("/var/lib/libvirt/images")


@pytest.fixture
def image(prefix: str) -> Iterator[Path]:
    """A path for a new image in libvirt's images directory, deleted afterwards."""
    path = IMAGES / f"{prefix}-root.qcow2"
    yield path
    path.unlink(missing_ok=True)


def test_vm_create_makes_a_missing_qcow2_disk_through_libvirts_storage_api(tmp_path, prefix, image):
    """``--disk PATH,size=64M,format=qcow2`` creates the image through libvirt's storage API (a transient
    pool on the directory unless a pool owns it), as qemu-img sees it, and the domain names it."""
    name = f"{prefix}-vol"
    assert not image.exists()
    toolstack(tmp_path, "init")
    toolstack(
        tmp_path,
        *("vm", "create", name, "--memory", "128M", "--kernel", str(E2E_DIR / "vmlinuz")),
        *("--disk", f"{image},size=64M,format=qcow2"),
    )
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "-U", str(image)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 << 20), info
    disk = ET.fromstring(toolstack(tmp_path, "vm", "dumpxml", name, "--inactive")).find(
        f"devices/disk/source[@file='{image}']/.."
    )
    assert disk is not None and disk.find("driver").get("type") == "qcow2"
    toolstack(tmp_path, "vm", "delete", name)
    assert image.exists(), "deleting the VM leaves its image (the fixture removes it)"


def memory_kib(xml_text: str) -> int:
    """A domain XML's boot memory (``<memory>``, in KiB as libvirt writes it)."""
    element = ET.fromstring(xml_text).find("memory")
    assert element is not None and element.get("unit", "KiB") == "KiB", xml_text[:300]
    return int(element.text or 0)


def test_a_memory_change_waits_for_the_next_boot_is_shown_applied_by_reboot_apply_and_rolled_back(
    tmp_path, prefix
):
    """``vm set --memory`` beyond a running guest's ceiling lands in the next-boot definition only: ``vm
    show``, ``vm list`` (its marker) and ``vm list --json`` list it with its live and next-boot values;
    ``vm reboot --apply`` boots the new memory; a rollback to before the set brings the old memory back."""
    name = f"{prefix}-pend"
    toolstack(tmp_path, "init")
    toolstack(
        tmp_path,
        *("vm", "create", name, "--memory", "96M", "--kernel", str(E2E_DIR / "vmlinuz")),
        *("--initrd", str(E2E_DIR / "initrd.img"), "--cmdline", "console=ttyS0 panic=-1"),
    )
    toolstack(tmp_path, "vm", "start", name)
    before_set = toolstack(tmp_path, "log", name).splitlines()[1].split()[0]  # newest first, under a header

    toolstack(tmp_path, "vm", "set", name, "--memory", "128M")
    assert memory_kib(toolstack(tmp_path, "vm", "dumpxml", name)) == 96 * 1024, "the running domain keeps 96"
    assert memory_kib(toolstack(tmp_path, "vm", "dumpxml", name, "--inactive")) == 128 * 1024
    shown = toolstack(tmp_path, "vm", "show", name)
    assert re.search(r"^pending: +memory: live 96 → next boot 128 MiB$", shown, re.M), shown
    assert f"vm reboot {name} --apply" in shown
    listed = toolstack(tmp_path, "vm", "list")
    row = next(line for line in listed.splitlines() if line.startswith(name))
    assert row.endswith("running [pending reboot]"), listed
    records = json.loads(toolstack(tmp_path, "--json", "vm", "list"))
    record = next(r for r in records if r["name"] == name)
    assert {"field": "memory", "live": 96, "next_boot": 128, "unit": "MiB"} in record["pending"], record

    toolstack(tmp_path, "vm", "reboot", name, "--apply", "--timeout", "90")
    assert memory_kib(toolstack(tmp_path, "vm", "dumpxml", name)) == 128 * 1024, "the new boot has 128"
    assert json.loads(toolstack(tmp_path, "--json", "vm", "show", name))["pending"] == []
    assert "[pending reboot]" not in toolstack(tmp_path, "vm", "list")
    assert "shutoff" in toolstack(tmp_path, "vm", "shutdown", name, "--timeout", "90")

    toolstack(tmp_path, "rollback", before_set, "--vm", name, "--yes")
    assert memory_kib(toolstack(tmp_path, "vm", "dumpxml", name, "--inactive")) == 96 * 1024
    assert re.search(r"^memory: +96 MiB$", toolstack(tmp_path, "vm", "show", name), re.M)


DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='cdrom'/></os>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='{iso}'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' discard='unmap'/><source file='{image}'/>
      <target dev='vda' bus='virtio'/><serial>e2e-0042</serial>
    </disk>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
"""


def device_kinds(xml_text: str) -> set[str]:
    devices = ET.fromstring(xml_text).find("devices")
    return {f"{d.tag}:{d.get('type') or d.get('model')}:{d.get('device', '')}" for d in devices}


def device_contents(xml_text: str) -> list[str]:
    """Every device of a domain XML in canonical form (one line, attributes sorted), sorted."""
    return sorted(fragment(device) for device in ET.fromstring(xml_text).find("devices"))


def test_define_keeps_serial_graphics_rng_and_cdrom_through_an_update_and_a_rollback(
    tmp_path, prefix, record_property
):
    """Each device comes back as it was, not only its kind: the CD-ROM's ISO, the RNG's backend, a disk's
    cache mode and serial (the model describes the disk, not those), and what libvirt added at define
    (controllers, addresses), canonical XML compared element by element."""
    name = f"{prefix}-xml"
    iso = tmp_path / "rescue.iso"
    iso.write_bytes(b"\0" * 2048)
    source = tmp_path / "domain.xml"
    image = tmp_path / "root.img"
    image.write_bytes(b"\0" * (1 << 20))
    source.write_text(DOMAIN_XML.format(name=name, iso=iso, image=image))
    toolstack(tmp_path, "init")
    toolstack(tmp_path, "vm", "define", str(source))
    wanted = {"disk:file:cdrom", "serial:pty:", "console:pty:", "graphics:vnc:", "rng:virtio:"}
    defined = toolstack(tmp_path, "vm", "dumpxml", name, "--inactive")
    first = device_kinds(defined)
    assert wanted <= first, first
    contents = device_contents(defined)
    root = ET.fromstring(defined)
    assert root.find(f"devices/disk[@device='cdrom']/source[@file='{iso}']") is not None
    assert root.findtext("devices/rng/backend[@model='random']") == "/dev/urandom"
    disk = root.find(f"devices/disk/source[@file='{image}']/..")  # a modelled disk, with what it lacks
    assert (disk.find("driver").get("cache"), disk.findtext("serial")) == ("none", "e2e-0042")
    assert disk.find("address") is not None, "libvirt gave it a PCI address, which stays"
    created = toolstack(tmp_path, "log", name).splitlines()[-1].split()[0]
    toolstack(tmp_path, "vm", "set", name, "--memory", "96M")
    updated = toolstack(tmp_path, "vm", "dumpxml", name, "--inactive")
    assert "<currentMemory unit='KiB'>98304</currentMemory>" in updated
    assert device_kinds(updated) == first
    assert device_contents(updated) == contents
    toolstack(tmp_path, "rollback", created, "--vm", name, "--yes")
    rolled_back = toolstack(tmp_path, "vm", "dumpxml", name, "--inactive")
    assert "<currentMemory unit='KiB'>131072</currentMemory>" in rolled_back
    assert device_kinds(rolled_back) == first
    assert device_contents(rolled_back) == contents
    record_property(FIGURES, "devices kept through define, update, rollback:\n" + "\n".join(sorted(first)))


def emulated_instructions(uuid: uuidlib.UUID) -> int | None:
    """How many instructions KVM's emulator has run for the domain's vCPU 0 (libvirt's KVM vCPU statistics;
    None where the hypervisor gives none, as under TCG)."""
    import libvirt

    connection = libvirt.open(E2E_URI.partition("?")[0])
    try:
        domain = connection.lookupByUUIDString(str(uuid))
        stats = connection.domainListGetStats([domain], libvirt.VIR_DOMAIN_STATS_VCPU)[0][1]
        return stats.get("vcpu.0.insn_emulation.sum")
    finally:
        connection.close()


def expected_auto_choice() -> tuple[str, str]:
    """What ``auto`` must choose on this machine, and a pattern its reason matches, from the host's own
    facts: KVM needs a ``/dev/kvm`` that opens and a CPU with VMX or SVM (drivers/libvirt/accel.py)."""
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return "tcg", f"libvirt offers no kvm domains|{KVM_DEVICE} does not open"
    facts = read_host_facts()
    if facts.cpu_flags is not None and not facts.cpu_flags & HARDWARE_FLAGS:
        return "tcg", "is PVM" if "kvm_pvm" in facts.kvm_modules else "no vmx/svm flag"
    return "kvm", f"^libvirt offers kvm domains and {KVM_DEVICE} opens$"


def test_boot_time_to_the_first_console_line_under_kvm_and_under_tcg(prefix, record_property):
    """One guest, booted with each accelerator forced, timed from start to its first kernel line on the
    serial console. TCG must boot; KVM is reported as it is. Where the probe says this host's KVM cannot run
    an ordinary kernel (PVM: no VMX/SVM), the report gives the last line the guest printed and how many
    instructions a second KVM emulated for it, and waits less."""
    from drivers import Boot, DomainSpec
    from drivers.libvirt import LibvirtDriver

    results: dict[str, str] = {}
    with LibvirtDriver(E2E_URI.partition("?")[0]) as hv:
        auto = hv.host_info()
        choice, reason = expected_auto_choice()
        assert auto["accel_setting"] == "auto" and auto["accel"] == choice, auto
        assert re.search(reason, auto["accel_reason"]), auto
        for accel in ("kvm", "tcg"):
            budget = BOOT_SECONDS if accel == "tcg" or auto["accel"] == "kvm" else KVM_DOUBTED_SECONDS
            spec = DomainSpec(
                uuid=uuidlib.uuid4(),
                name=f"{prefix}-{accel}",
                memory=128,
                accel=accel,
                boot=Boot(
                    kernel=str(E2E_DIR / "vmlinuz"),
                    initrd=str(E2E_DIR / "initrd.img"),
                    cmdline="console=ttyS0 earlyprintk=ttyS0 panic=-1",
                ),
            )
            hv.define(spec)
            started = time.monotonic()
            try:
                hv.start(spec.uuid)
            except Exception as error:  # no KVM here at all: libvirt refuses the kvm domain
                results[accel] = f"did not start: {error}"
                continue
            seen = b""
            with hv.console(spec.uuid) as console:
                while not KERNEL_LINE.search(seen) and time.monotonic() - started < budget:
                    seen += console.read(timeout=0.5) or b""
            elapsed = time.monotonic() - started
            if KERNEL_LINE.search(seen):
                results[accel] = f"{elapsed:.2f} s"
            else:
                lines = seen.decode(errors="replace").replace("\r", "").strip().splitlines() or ["nothing"]
                emulated = emulated_instructions(spec.uuid)
                rate = "" if emulated is None else f"; KVM emulated {emulated / elapsed:,.0f} instructions/s"
                results[accel] = f"no kernel line within {budget} s (last line: {lines[-1]!r}{rate})"
            hv.destroy(spec.uuid)
    table = [f"auto chooses {auto['accel']}; why: {auto['accel_reason']}", "accelerator  first console line"]
    table += [f"{accel:<12} {result}" for accel, result in results.items()]
    record_property(FIGURES, "\n".join(table))
    assert results["tcg"].endswith(" s") and "within" not in results["tcg"], results
