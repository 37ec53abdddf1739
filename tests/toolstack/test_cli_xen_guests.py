"""What a Xen PV guest needs from the CLI, found by running it on real Xen (issue 21, ``make xen-e2e``)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.toolstack.test_cli import run


def test_vm_create_boots_a_kernel_directly_with_initrd_and_cmdline(tmp_path: Path):
    run(tmp_path, "init")
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    created = json.loads(
        run(
            tmp_path, "--json", "vm", "create", "pv1", "--memory", "128M",
            "--kernel", str(kernel), "--initrd", str(initrd), "--cmdline", "console=hvc0",
        ).stdout
    )  # fmt: skip
    shown = json.loads(run(tmp_path, "--json", "vm", "show", created["uuid"]).stdout)
    assert shown["name"] == "pv1"
    config = run(tmp_path, "store", "get", f"vms/{created['uuid'][:2]}/{created['uuid']}/config").stdout
    boot = json.loads(config)["boot"]
    assert boot == {"kernel": str(kernel), "initrd": str(initrd), "cmdline": "console=hvc0", "device": None}


def test_initrd_or_cmdline_without_kernel_is_a_usage_error(tmp_path: Path):
    run(tmp_path, "init")
    result = run(tmp_path, "vm", "create", "pv1", "--memory", "128M", "--initrd", "/i", check=False)
    assert result.returncode == 2
    assert "--initrd and --cmdline need --kernel" in result.stderr


def test_a_disk_attached_as_xvdb_is_a_xen_pv_disk_that_xl_accepts(tmp_path: Path):
    run(tmp_path, "init")
    created = json.loads(run(tmp_path, "--json", "vm", "create", "pv1", "--memory", "128M").stdout)
    run(tmp_path, "disk", "attach", "pv1", str(tmp_path / "d.img"), "--target", "xvdb", "--id", "data")
    shown = json.loads(run(tmp_path, "--json", "vm", "show", created["uuid"]).stdout)
    (disk,) = [device for device in shown["devices"] if device["id"] == "data"]
    assert (disk["target"], disk["bus"]) == ("xvdb", "xen")  # was ("xvdb", "virtio"): xl refused it
    run(tmp_path, "disk", "attach", "pv1", str(tmp_path / "v.img"), "--id", "v")
    shown = json.loads(run(tmp_path, "--json", "vm", "show", created["uuid"]).stdout)
    assert [(d["target"], d["bus"]) for d in shown["devices"] if d["id"] == "v"] == [("vda", "virtio")]
