"""Pending changes (issue 19): a change a running domain gets only at its next boot (memory beyond its running
ceiling, a CD-ROM, a CPU model, boot media) is listed by ``vm show``, marked by ``vm list`` and given by the
API, each field with its live and next-boot values; ``vm reboot --apply`` restarts the domain from its
persistent definition and leaves nothing pending, where a plain (guest) reboot keeps the running one.

The CLI runs as a process on the simulator, which keeps a running domain's live and persistent definitions
apart as libvirt does.
"""

from __future__ import annotations

import json

import drivers
from drivers.models import DomainSpec
from tests.toolstack.test_cli import git, run
from toolstack.pending import pending_changes


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


def test_what_the_hypervisor_adds_to_a_running_domains_verbatim_parts_is_not_pending():
    """libvirt decorates a running domain's unmodelled XML (aliases, pty paths, <seclabel>) and a disk's
    (<source index>, <backingStore/>): on a real libvirtd, every running imported domain looked pending."""
    from drivers.models import Disk

    disk = Disk(id="disk0", source="/var/lib/libvirt/images/a.qcow2", target="vda")
    persistent = DomainSpec(
        uuid="6f1c2b1e-0000-4000-8000-000000000002",
        name="imported",
        memory=512,
        disks=[
            disk.model_copy(update={"extra": {"libvirt/device": ("<disk><address type='pci'/></disk>",)}})
        ],
        extra={"libvirt/devices": ("<serial type='pty'><target port='0'/></serial>",)},
    )
    live = persistent.model_copy(
        update={
            "extra": {"libvirt/devices": ("<serial type='pty'><source path='/dev/pts/3'/></serial>",)},
            "disks": [
                disk.model_copy(update={"extra": {"libvirt/device": ("<disk><backingStore/></disk>",)}})
            ],
        }
    )
    assert pending_changes(live, persistent) == []
    grown = persistent.evolve(memory=2048)
    assert [c.field for c in pending_changes(live, grown)] == ["memory", "max_memory"]


def test_pending_changes_and_reboot_apply_hold_on_the_simulator_and_libvirts_test_driver(ts):
    from tests.toolstack.conftest import unique
    from toolstack.status import lookup

    name = unique("pend")
    ts.create(name, "128M", start=True)
    ts.set_resources(name, memory="512M", settings={"cpu": "qemu64"})
    found = {c.field: (c.before, c.after) for c in lookup(ts, name).pending}
    assert found == {"memory": (128, 512), "max_memory": (128, 512), "cpu": (None, "qemu64")}
    ts.reboot(name, apply=True)
    status = lookup(ts, name)
    assert (status.state, status.pending, status.memory) == ("running", [], 512)
