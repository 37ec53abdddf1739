"""Pending changes (issue 19): a change a running domain gets only at its next boot (memory beyond its running
ceiling, a CD-ROM, a CPU model, boot media) is listed by ``vm show``, marked by ``vm list`` and given by the
API, each field with its live and next-boot values; ``vm reboot --apply`` restarts the domain from its
persistent definition and leaves nothing pending, where a plain (guest) reboot keeps the running one.

The CLI runs as a process on the simulator, which keeps a running domain's live and persistent definitions
apart as libvirt does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

import drivers
from drivers.libvirt import LibvirtDriver
from drivers.libvirt.runtime import without_runtime
from drivers.libvirt.xml import xml_to_spec
from drivers.models import Boot, Disk, DomainSpec
from tests.toolstack.conftest import unique
from tests.toolstack.test_cli import git, run
from toolstack.pending import pending_changes, pending_of


def shown(tmp_path, name: str) -> dict:
    return json.loads(run(tmp_path, "vm", "show", name, "--json").stdout)


def pending(tmp_path, name: str) -> dict[str, tuple]:
    return {p["field"]: (p["live"], p["next_boot"]) for p in shown(tmp_path, name)["pending"]}


def running_vm(tmp_path, name: str = "web") -> None:
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", name, "--memory", "256M", "--vcpus", "1")
    run(tmp_path, "vm", "start", name)


def test_memory_beyond_the_running_ceiling_is_pending_with_its_live_and_next_boot_values(tmp_path):
    running_vm(tmp_path)
    assert pending(tmp_path, "web") == {}
    run(tmp_path, "vm", "set", "web", "--memory", "1G", "--vcpus", "2")
    assert pending(tmp_path, "web") == {
        "memory": (256, 1024),
        "max_memory": (256, 1024),
        "vcpus": (1, 2),
        "max_vcpus": (1, 2),
    }
    out = run(tmp_path, "vm", "show", "web").stdout
    assert "pending:  memory: live 256 → next boot 1024 MiB" in out
    assert "pending:  vcpus: live 1 → next boot 2" in out
    assert "vm reboot web --apply" in out
    assert "drift:" not in out  # beyond the running ceiling: it waits, nobody changed it behind our back
    assert shown(tmp_path, "web")["drift"] == []
    # Reconcile has nothing to do: the persistent definition is main's already.
    assert "nothing to do" in run(tmp_path, "reconcile").stdout.lower()
    assert pending(tmp_path, "web")["memory"] == (256, 1024)


def test_cdrom_cpu_and_boot_media_changed_while_running_wait_for_the_next_boot(tmp_path):
    running_vm(tmp_path, "inst")
    run(tmp_path, "vm", "set", "inst", "--cdrom", "/iso/debian.iso", "--boot", "cdrom", "--cpu", "host")
    found = pending(tmp_path, "inst")
    assert found["boot.device"] == ("hd", "cdrom")
    assert found["cpu"] == (None, "host")
    assert found["disks.cdrom0"] == (None, found["disks.cdrom0"][1])
    assert found["disks.cdrom0"][1]["source"] == "/iso/debian.iso"


def test_vm_list_marks_the_vms_with_pending_changes_only(tmp_path):
    running_vm(tmp_path, "a")
    run(tmp_path, "vm", "create", "b", "--memory", "128M")
    run(tmp_path, "vm", "start", "b")
    run(tmp_path, "vm", "set", "a", "--memory", "512M")
    rows = {line.split()[0]: line for line in run(tmp_path, "vm", "list").stdout.splitlines()[1:]}
    assert "[pending reboot]" in rows["a"]
    assert "[pending reboot]" not in rows["b"]
    listed = {r["name"]: r["pending"] for r in json.loads(run(tmp_path, "vm", "list", "--json").stdout)}
    assert listed["b"] == []
    assert {p["field"] for p in listed["a"]} == {"memory", "max_memory"}


def test_a_stopped_vm_has_nothing_pending(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "off", "--memory", "128M")
    run(tmp_path, "vm", "set", "off", "--memory", "1G", "--cpu", "host")
    assert shown(tmp_path, "off")["pending"] == []


def test_reboot_apply_restarts_from_the_next_boot_definition_where_a_guest_reboot_does_not(tmp_path):
    running_vm(tmp_path)
    run(tmp_path, "vm", "set", "web", "--memory", "1G")
    run(tmp_path, "vm", "reboot", "web")  # the guest's reboot keeps the running configuration
    assert pending(tmp_path, "web")["memory"] == (256, 1024)
    out = run(tmp_path, "vm", "reboot", "web", "--apply").stdout
    assert "reboot web: running" in out
    record = shown(tmp_path, "web")
    assert record["pending"] == []
    assert (record["state"], record["memory"]) == ("running", 1024)
    with drivers.open(f"sim://{tmp_path}/sim") as hv:
        (info,) = hv.list()
        assert info.memory == 1024
    assert git(tmp_path, "log", "-1", "--format=%s", "main").startswith("vm reboot web")


def test_reboot_apply_starts_a_stopped_vm(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "off", "--memory", "128M")
    out = run(tmp_path, "vm", "reboot", "off", "--apply").stdout
    assert "reboot off: running" in out


def test_the_pending_diff_ignores_ballooning_within_the_running_ceiling():
    live = DomainSpec(uuid="6f1c2b1e-0000-4000-8000-000000000001", name="b", memory=512, max_memory=1024)
    assert pending_changes(live.evolve(memory=256), live) == []  # reconcile's set-memory reaches it live
    grown = live.evolve(memory=2048, max_memory=2048)
    changes = {c.field: (c.before, c.after, c.unit) for c in pending_changes(live, grown)}
    assert changes == {"memory": (512, 2048, "MiB"), "max_memory": (1024, 2048, "MiB")}


# A running domain as qemu:///system reports it (live) and its next boot (inactive): libvirt has added
# aliases, a pty path, this run's security labels, a cgroup partition, a disk's backing chain and source
# index, a VNC port, a tap name and a channel's state; user aliases and a configured seclabel stay.
_INACTIVE = """<domain type='kvm'>
  <name>imported</name><uuid>6f1c2b1e-0000-4000-8000-000000000002</uuid>
  <memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:56'/><source bridge='br0'/><model type='virtio'/>
      <alias name='ua-net0'/>
    </interface>
    <serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'><listen type='address'
      address='127.0.0.1'/></graphics>
    <memballoon model='virtio'/>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
</domain>"""
_LIVE = """<domain type='kvm' id='7'>
  <name>imported</name><uuid>6f1c2b1e-0000-4000-8000-000000000002</uuid>
  <memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource><partition>/machine</partition></resource>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/a.qcow2' index='1'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:56'/><source bridge='br0'/><target dev='vnet3'/><model type='virtio'/>
      <alias name='ua-net0'/>
    </interface>
    <serial type='pty'><source path='/dev/pts/3'/><target type='isa-serial' port='0'><model
      name='isa-serial'/></target><alias name='serial0'/></serial>
    <console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/><alias
      name='serial0'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/><alias
      name='channel0'/></channel>
    <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1'><listen type='address'
      address='127.0.0.1'/></graphics>
    <memballoon model='virtio'><alias name='balloon0'/></memballoon>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'><label>libvirt-6f1c2b1e</label><imagelabel
    >libvirt-6f1c2b1e</imagelabel></seclabel>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+994</label><imagelabel
    >+64055:+994</imagelabel></seclabel>
</domain>"""


def test_what_libvirt_adds_to_a_running_domain_is_not_pending_and_a_change_in_its_verbatim_parts_is():
    """libvirt decorates a running domain's XML (aliases, pty paths, <seclabel>, a disk's source index...):
    read without those, a running imported domain has nothing pending, but an edit to what the model keeps
    verbatim (a disk's <driver cache>) waits for the next boot like any other."""
    live = xml_to_spec(without_runtime(_LIVE, _INACTIVE))
    assert pending_changes(live, xml_to_spec(_INACTIVE)) == []
    assert pending_changes(xml_to_spec(_LIVE), xml_to_spec(_INACTIVE)) != []  # the decorations do differ
    edited = xml_to_spec(_INACTIVE.replace("cache='none'", "cache='writeback'"))
    changes = [(c.field, c.before, c.after) for c in pending_changes(live, edited)]
    assert changes == [
        (
            "disks.vda.extra.libvirt/device.0",
            '<disk><driver cache="none" /></disk>',
            '<disk><driver cache="writeback" /></disk>',
        )
    ]


def test_a_user_alias_a_chosen_tap_and_a_configured_label_are_no_runtime_decoration():
    live = _LIVE.replace("vnet3", "tap-web").replace("ua-net0", "ua-uplink")
    kept = without_runtime(live, _INACTIVE)
    assert "tap-web" in kept and "ua-uplink" in kept
    assert 'model="apparmor"' in kept and 'model="dac"' not in kept
    assert "/machine" in without_runtime(_LIVE, _LIVE)  # a configured partition is the domain's own


@pytest.fixture
def test_driver() -> Iterator[LibvirtDriver]:
    """libvirt's test:///default, leaving it as found: it is one per process while a connection is open."""
    driver = LibvirtDriver("test:///default")
    made: list[DomainSpec] = []
    driver.made = made  # type: ignore[attr-defined]
    yield driver
    for spec in made:
        driver.destroy(spec.uuid)
        driver.undefine(spec.uuid)
    driver.close()


def test_a_disk_cache_changed_while_running_is_pending_on_libvirts_test_driver(test_driver):
    disk = Disk(id="disk0", source="/var/lib/libvirt/images/p.img", target="vda")
    cached = {"libvirt/device": ("<disk><driver cache='none'/></disk>",)}
    spec = DomainSpec(
        uuid=uuid.uuid4(),
        name=unique("pend"),
        memory=128,
        boot=Boot(kernel="/boot/vmlinuz"),
        disks=[disk.model_copy(update={"extra": cached})],
        extra={"libvirt/devices": ("<serial type='pty'><target port='0'/></serial>",)},
    )
    test_driver.define(spec)
    test_driver.made.append(spec)
    test_driver.start(spec.uuid)
    assert pending_of(test_driver, str(spec.uuid), test_driver.info(spec.uuid)) == []
    writeback = {"libvirt/device": ("<disk><driver cache='writeback'/></disk>",)}
    test_driver.define(spec.model_copy(update={"disks": [disk.model_copy(update={"extra": writeback})]}))
    changes = pending_of(test_driver, str(spec.uuid), test_driver.info(spec.uuid))
    assert [(c.field, c.before, c.after) for c in changes] == [
        (
            "disks.disk0.extra.libvirt/device.0",
            '<disk><driver cache="none" /></disk>',
            '<disk><driver cache="writeback" /></disk>',
        )
    ]


def test_pending_changes_and_reboot_apply_hold_on_the_simulator_and_libvirts_test_driver(ts):
    from toolstack.status import lookup

    name = unique("pend")
    ts.create(name, "128M", start=True)
    ts.set_resources(name, memory="512M", settings={"cpu": "qemu64"})
    found = {c.field: (c.before, c.after) for c in lookup(ts, name).pending}
    assert found == {"memory": (128, 512), "max_memory": (128, 512), "cpu": (None, "qemu64")}
    ts.reboot(name, apply=True)
    status = lookup(ts, name)
    assert (status.state, status.pending, status.memory) == ("running", [], 512)
