"""Issue 19 from the CLI: boot media and guest options on ``vm create``, ``toolstack console``, and
``vm define``/``vm dumpxml`` keeping every device through an update and a rollback."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import drivers
from tests.toolstack.conftest import ROOT
from tests.toolstack.test_cli import git, run
from toolstack import layout
from toolstack.cli.context import in_process_notice
from toolstack.cli.group import main


def config_of(tmp_path, name: str) -> dict:
    uuid = git(tmp_path, "show", f"main:{layout.name_path(name)}").strip()
    return json.loads(git(tmp_path, "show", f"main:{layout.config_path(uuid)}")), uuid


def test_create_takes_boot_media_cpu_accel_graphics_cdrom_autostart_and_makes_a_sized_disk(tmp_path):
    run(tmp_path, "init")
    out = run(
        tmp_path,
        "vm", "create", "inst", "--memory", "128M",
        "--kernel", "/boot/vmlinuz", "--initrd", "/boot/initrd.img", "--cmdline", "console=ttyS0",
        "--cdrom", "/iso/debian.iso", "--cpu", "host", "--accel", "tcg", "--graphics", "vnc",
        "--autostart", "--disk", "root.qcow2,size=2G",
    ).stdout  # fmt: skip
    image = tmp_path / "root.qcow2"
    assert f"created {image}" in out
    assert image.stat().st_size == 2 << 30
    config, uuid = config_of(tmp_path, "inst")
    assert config["boot"] == {
        "kernel": "/boot/vmlinuz",
        "initrd": "/boot/initrd.img",
        "cmdline": "console=ttyS0",
        "device": None,
    }
    assert (config["cpu"], config["accel"], config["graphics"]) == ("host", "tcg", "vnc")
    devices = {
        d: json.loads(git(tmp_path, "show", f"main:{layout.device_path(uuid, d)}"))
        for d in ("cdrom0", "disk0")
    }
    assert devices["cdrom0"]["device"] == "cdrom" and devices["cdrom0"]["readonly"]
    assert devices["disk0"]["format"] == "qcow2"
    assert git(tmp_path, "show", f"main:{layout.autostart_path(uuid)}") == "true\n"
    shown = run(tmp_path, "vm", "show", "inst").stdout
    assert "accel:    tcg (forced for this VM)" in shown
    assert "consoles: serial, vnc on 127.0.0.1" in shown and "autostart: yes" in shown


def test_show_lists_the_consoles_the_driver_reports_with_the_vnc_port_while_it_runs(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "desk", "--memory", "64M", "--graphics", "vnc")
    run(tmp_path, "vm", "create", "plain", "--memory", "64M")
    assert "consoles: serial, vnc on 127.0.0.1\n" in run(tmp_path, "vm", "show", "desk").stdout
    run(tmp_path, "vm", "start", "desk")
    shown = run(tmp_path, "vm", "show", "desk").stdout
    port = int(re.search(r"^consoles: serial, vnc 127\.0\.0\.1:(\d+)$", shown, re.M).group(1))  # type: ignore[union-attr]
    record = json.loads(run(tmp_path, "--json", "vm", "show", "desk").stdout)
    assert record["consoles"] == [
        {"kind": "serial", "listen": None, "port": None, "path": None},
        {"kind": "vnc", "listen": "127.0.0.1", "port": port, "path": None},
    ]
    assert "consoles: serial\n" in run(tmp_path, "vm", "show", "plain").stdout


def test_create_boots_from_the_cdrom_by_default_and_refuses_an_initrd_without_a_kernel(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "live", "--memory", "64M", "--cdrom", "/iso/live.iso")
    assert config_of(tmp_path, "live")[0]["boot"]["device"] == "cdrom"
    refused = run(tmp_path, "vm", "create", "bad", "--memory", "64M", "--initrd", "/i", check=False)
    assert refused.returncode == 2 and "--initrd and --cmdline need --kernel" in refused.stderr
    bad_disk = run(
        tmp_path, "vm", "create", "bad", "--memory", "64M", "--disk", "/d.img,sise=1G", check=False
    )
    assert bad_disk.returncode == 2 and "sise=1G" in bad_disk.stderr
    assert not (tmp_path / "d.img").exists()


def test_console_on_a_terminal_shows_the_boot_log_passes_keys_and_detaches_on_ctrl_bracket(tmp_path):
    run(tmp_path, "init")
    run(
        tmp_path,
        "vm",
        "create",
        "box",
        "--memory",
        "64M",
        "--kernel",
        "/k",
        "--cmdline",
        "console=ttyS0",
        "--start",
    )
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "TOOLSTACK_REPO": str(tmp_path / "state.git"),
        "TOOLSTACK_DRIVER": f"sim://{tmp_path}/sim",
    }
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "toolstack.cli", "console", "box"],
        stdin=follower, stdout=follower, stderr=follower, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(follower)
    seen = read_until(leader, b"box login: ")
    assert b"Linux version" in seen and b"Connected to box" in seen
    os.write(leader, b"root\r")
    assert b"root" in read_until(leader, b"root")
    os.write(leader, b"\x1d")  # Ctrl-]
    assert process.wait(timeout=30) == 0
    assert b"Disconnected" in read_until(leader, b"Disconnected")
    os.close(leader)
    assert "running" in run(tmp_path, "vm", "show", "box").stdout  # detaching leaves the VM running


def read_until(fd: int, wanted: bytes, seconds: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break  # the process closed the terminal
    return seen


def test_console_of_a_stopped_vm_is_an_error_and_test_default_says_it_is_in_process_only(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "off", "--memory", "64M")
    stopped = run(tmp_path, "console", "off", check=False)
    assert stopped.returncode == 1 and "not active" in stopped.stderr
    listed = run(tmp_path, "vm", "list", env={"TOOLSTACK_DRIVER": "test:///default"})
    assert "in-process test hypervisor" in listed.stderr


def test_a_test_driver_loaded_from_a_file_is_in_process_too_and_the_cli_says_so(tmp_path):
    """``test:///FILE.xml`` loads its domains from the file in every command and never writes it back."""
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    run(tmp_path, "init")
    listed = run(tmp_path, "vm", "list", env={"TOOLSTACK_DRIVER": f"test://{node}"})
    assert f"note: test://{node} is libvirt's in-process test hypervisor" in listed.stderr
    assert f"starts from {node} (and never writes it) in every toolstack command" in listed.stderr


@pytest.mark.parametrize(
    ("uri", "in_process"),
    [
        ("test:///default", True),
        ("test:///srv/hypervisor.xml", True),
        ("test+unix:///default", False),  # a daemon's test driver keeps its domains between connections
        ("test://remote.example.org/default", False),
        ("qemu:///system", False),
        ("sim:///var/lib/toolstack/sim", False),
    ],
)
def test_only_libvirts_in_process_test_driver_gets_the_notice(uri: str, in_process: bool):
    assert (in_process_notice(uri) is not None) == in_process


# -- define and dumpxml on libvirt's test driver, in one process (its state lives as long as a connection) --

FOREIGN = """<domain type='test'>
  <name>imported</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type><boot dev='cdrom'/></os>
  <devices>
    <disk type='file' device='cdrom'>
      <source file='/iso/rescue.iso'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/><source file='/srv/imported.qcow2'/>
      <target dev='vda' bus='virtio'/><serial>imported-0042</serial>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </disk>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
"""


@pytest.fixture
def libvirt_cli(tmp_path):
    """Run CLI commands in this process on test:///default, kept alive between them by one connection."""
    keeper = drivers.open("test:///default")
    runner = CliRunner()
    repo = str(tmp_path / "state.git")

    def cli(*args: str) -> str:
        result = runner.invoke(
            main, ["--repo", repo, "--driver", "test:///default", *args], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    cli("init")
    before = {info.uuid for info in keeper.list()}
    yield cli
    # Another open connection in this process (a test's driver) keeps test:///default alive after keeper
    # closes: leave it as found, or the next test meets "a VM named 'imported' already exists".
    for info in keeper.list():
        if info.uuid not in before:
            keeper.destroy(info.uuid)
            keeper.undefine(info.uuid)
    keeper.close()


def device_contents(xml_text: str) -> list[str]:
    """Every device of a domain in canonical XML (indentation ignored), sorted."""
    import xml.etree.ElementTree as ET

    devices = ET.fromstring(xml_text).find("devices")
    return sorted(ET.canonicalize(ET.tostring(d, encoding="unicode"), strip_text=True) for d in devices)


def devices_of(xml_text: str) -> list[str]:
    import xml.etree.ElementTree as ET

    devices = ET.fromstring(xml_text).find("devices")
    return sorted(f"{d.tag}:{d.get('type') or d.get('model') or ''}:{d.get('device', '')}" for d in devices)


def test_define_imports_a_domain_keeping_every_device_through_an_update_and_a_rollback(libvirt_cli, tmp_path):
    source = tmp_path / "imported.xml"
    source.write_text(FOREIGN)
    out = libvirt_cli("vm", "define", str(source))
    assert out.startswith("defined imported (") and "kept verbatim" in out
    wanted = {"disk:file:cdrom", "serial:pty:", "console:pty:", "graphics:vnc:", "rng:virtio:"}
    defined = libvirt_cli("vm", "dumpxml", "imported", "--inactive")
    first = devices_of(defined)
    assert wanted <= set(first)
    contents = device_contents(defined)
    assert any("imported-0042" in c and 'cache="none"' in c and 'slot="0x07"' in c for c in contents)
    created = libvirt_cli("log", "imported").splitlines()[-1].split()[0]
    libvirt_cli("vm", "set", "imported", "--memory", "256M")
    updated = libvirt_cli("vm", "dumpxml", "imported", "--inactive")
    assert "<currentMemory unit='KiB'>262144</currentMemory>" in updated
    assert devices_of(updated) == first
    assert device_contents(updated) == contents
    libvirt_cli("rollback", created, "--vm", "imported", "--yes")
    rolled_back = libvirt_cli("vm", "dumpxml", "imported", "--inactive")
    assert "<currentMemory unit='KiB'>131072</currentMemory>" in rolled_back
    assert devices_of(rolled_back) == first
    assert device_contents(rolled_back) == contents


def test_show_lists_an_imported_domains_own_consoles_not_a_default_serial(libvirt_cli, tmp_path):
    """A domain kept verbatim has exactly the consoles its XML has: FOREIGN's serial and VNC, and only a
    VNC server on every address for one without a serial port."""
    source = tmp_path / "imported.xml"
    source.write_text(FOREIGN)
    libvirt_cli("vm", "define", str(source))
    assert "consoles: serial, vnc on 127.0.0.1\n" in libvirt_cli("vm", "show", "imported")
    vnc_only = FOREIGN.replace("<name>imported</name>", "<name>vnc</name>")
    vnc_only = re.sub(r"<serial type=.*</console>", "", vnc_only, flags=re.S)
    vnc_only = vnc_only.replace(
        "type='vnc' port='-1' autoport='yes' listen='127.0.0.1'",
        "type='vnc' port='5907' autoport='no' listen='0.0.0.0'",
    )
    source.write_text(vnc_only)
    libvirt_cli("vm", "define", str(source))
    assert "consoles: vnc 0.0.0.0:5907\n" in libvirt_cli("vm", "show", "vnc")


def repository_state(repo: str) -> dict[str, str]:
    """The repository's refs and their commits, but the records of failed tasks (kept for audit as
    ``refs/heads/failed-tasks/<task>``: README, "Tasks")."""
    refs = subprocess.run(
        ["git", "-C", repo, "for-each-ref", "--format=%(refname) %(objectname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    pairs = (line.split(" ") for line in refs if line)
    return {ref: commit for ref, commit in pairs if not ref.startswith("refs/heads/failed-tasks/")}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (FOREIGN.replace("</devices>", "</devics>"), "malformed XML"),
        (FOREIGN.replace("<memory unit='MiB'>128</memory>", ""), "no <memory>"),
        # parses, and the model reads it, but libvirt refuses it at define time
        (FOREIGN.replace("<graphics type='vnc'", "<graphics type='teletype'"), "teletype"),
    ],
    ids=["malformed", "unreadable", "refused-by-libvirt"],
)
def test_a_failed_define_writes_nothing(tmp_path, broken: str, message: str):
    """No commit on main nor any other ref in the repository (but the failed task's own record, where the
    hypervisor refused), and no domain on the hypervisor."""
    keeper = drivers.open("test:///default")
    try:
        repo = str(tmp_path / "state.git")
        runner = CliRunner()
        base = ["--repo", repo, "--driver", "test:///default"]
        assert runner.invoke(main, [*base, "init"]).exit_code == 0
        before = repository_state(repo)
        domains = {info.name for info in keeper.list()}
        source = tmp_path / "broken.xml"
        source.write_text(broken)
        result = runner.invoke(main, [*base, "vm", "define", str(source)])
        assert result.exit_code != 0 and message in result.output, result.output
        assert repository_state(repo) == before
        assert {info.name for info in keeper.list()} == domains
        assert "imported" not in runner.invoke(main, [*base, "vm", "list"]).output
    finally:
        keeper.close()
