"""``vm set`` takes what ``vm create`` takes about how a VM boots and runs (issue 19): a kernel, its initrd
and command line, the boot device, a CD-ROM image, the CPU, the accelerator, graphics and autostart. Each
option changes its own field only, ``none`` removes what is there, every change is one ``vm set`` commit,
and a refused change writes nothing."""

from __future__ import annotations

import json

from tests.toolstack.test_cli import git, run
from tests.toolstack.test_cli_guest import config_of
from toolstack import layout


def device_file(tmp_path, uuid: str, device_id: str) -> dict | None:
    listing = git(tmp_path, "ls-tree", "--name-only", f"main:{layout.vm_dir(uuid)}/devices")
    if device_id not in listing.split():
        return None
    return json.loads(git(tmp_path, "show", f"main:{layout.device_path(uuid, device_id)}"))


def shown(tmp_path, name: str) -> dict:
    return json.loads(run(tmp_path, "vm", "show", name, "--json").stdout)


def head(tmp_path) -> str:
    return git(tmp_path, "rev-parse", "main").strip()


def test_set_moves_a_vm_to_a_direct_kernel_and_back_to_a_boot_device(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "k", "--memory", "128M")
    run(tmp_path, "vm", "set", "k", "--kernel", "/boot/vmlinuz", "--initrd", "/boot/initrd.img",
        "--cmdline", "console=ttyS0")  # fmt: skip
    config, _ = config_of(tmp_path, "k")
    assert config["boot"] == {
        "kernel": "/boot/vmlinuz",
        "initrd": "/boot/initrd.img",
        "cmdline": "console=ttyS0",
        "device": None,
    }
    assert git(tmp_path, "log", "-1", "--format=%s", "main").startswith("vm set k")
    # One field at a time: the command line alone, then the initrd removed.
    run(tmp_path, "vm", "set", "k", "--cmdline", "console=ttyS0 quiet")
    run(tmp_path, "vm", "set", "k", "--initrd", "none")
    config, _ = config_of(tmp_path, "k")
    assert (config["boot"]["kernel"], config["boot"]["initrd"]) == ("/boot/vmlinuz", None)
    assert config["boot"]["cmdline"] == "console=ttyS0 quiet"
    # Back to a boot device.
    out = run(tmp_path, "vm", "set", "k", "--kernel", "none", "--boot", "network").stdout
    assert "boot:     from network" in out
    assert config_of(tmp_path, "k")[0]["boot"] == {
        "kernel": None,
        "initrd": None,
        "cmdline": None,
        "device": "network",
    }


def test_set_inserts_swaps_and_removes_the_cdrom(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "inst", "--memory", "128M", "--disk", "/srv/inst.img")
    _, uuid = config_of(tmp_path, "inst")
    run(tmp_path, "vm", "set", "inst", "--cdrom", "/iso/debian.iso", "--boot", "cdrom")
    cdrom = device_file(tmp_path, uuid, "cdrom0")
    assert cdrom is not None
    assert (cdrom["source"], cdrom["device"], cdrom["readonly"]) == ("/iso/debian.iso", "cdrom", True)
    assert config_of(tmp_path, "inst")[0]["boot"]["device"] == "cdrom"
    run(tmp_path, "vm", "set", "inst", "--cdrom", "/iso/rescue.iso")
    swapped = device_file(tmp_path, uuid, "cdrom0")
    assert swapped == {**cdrom, "source": "/iso/rescue.iso"}  # the same drive, another image
    run(tmp_path, "vm", "set", "inst", "--cdrom", "none", "--boot", "hd")
    assert device_file(tmp_path, uuid, "cdrom0") is None
    assert device_file(tmp_path, uuid, "disk0") is not None
    assert [d["id"] for d in shown(tmp_path, "inst")["devices"]] == ["disk0"]


def test_set_changes_cpu_accel_graphics_and_autostart_and_resets_them(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "g", "--memory", "128M")
    _, uuid = config_of(tmp_path, "g")
    assert shown(tmp_path, "g")["autostart"] is False
    run(tmp_path, "vm", "set", "g", "--cpu", "host", "--accel", "tcg", "--graphics", "vnc", "--autostart")
    config, _ = config_of(tmp_path, "g")
    assert (config["cpu"], config["accel"], config["graphics"]) == ("host", "tcg", "vnc")
    assert git(tmp_path, "show", f"main:{layout.autostart_path(uuid)}") == "true\n"
    assert shown(tmp_path, "g")["autostart"] is True
    text = run(tmp_path, "vm", "show", "g").stdout
    assert "cpu:      host" in text and "autostart: yes" in text
    run(tmp_path, "vm", "set", "g", "--cpu", "none", "--accel", "auto", "--graphics", "none",
        "--no-autostart")  # fmt: skip
    config, _ = config_of(tmp_path, "g")
    assert not {"cpu", "accel", "graphics"} & set(config)  # unset fields are left out of the config
    assert "autostart" not in git(tmp_path, "ls-tree", "--name-only", f"main:{layout.vm_dir(uuid)}").split()
    assert shown(tmp_path, "g")["autostart"] is False


def test_set_on_a_running_vm_changes_the_next_boot_and_keeps_it_running(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "r", "--memory", "128M", "--start")
    run(tmp_path, "vm", "set", "r", "--kernel", "/boot/vmlinuz", "--cpu", "qemu64")
    record = shown(tmp_path, "r")
    assert record["state"] == "running"
    config, _ = config_of(tmp_path, "r")
    assert (config["boot"]["kernel"], config["cpu"]) == ("/boot/vmlinuz", "qemu64")


def test_a_refused_set_writes_nothing(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "d", "--memory", "128M")
    before = head(tmp_path)
    initrd = run(tmp_path, "vm", "set", "d", "--initrd", "/boot/initrd.img", check=False)
    assert initrd.returncode == 1 and "need a 'kernel'" in initrd.stderr
    assert head(tmp_path) == before
    run(tmp_path, "vm", "set", "d", "--kernel", "/boot/vmlinuz")
    before = head(tmp_path)
    both = run(tmp_path, "vm", "set", "d", "--boot", "cdrom", check=False)
    assert both.returncode == 1 and "mutually exclusive" in both.stderr
    bad_cpu = run(tmp_path, "vm", "set", "d", "--cpu", "bad model!", check=False)
    assert bad_cpu.returncode == 1 and "cpu" in bad_cpu.stderr
    nothing = run(tmp_path, "vm", "set", "d", check=False)
    assert nothing.returncode == 1 and "give what to change" in nothing.stderr
    bad_choice = run(tmp_path, "vm", "set", "d", "--accel", "fast", check=False)
    assert bad_choice.returncode == 2
    assert head(tmp_path) == before
