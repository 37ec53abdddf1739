"""``vm set``: change a VM's memory and vCPUs (live where it allows) and how it boots and runs (next boot).

Every option is optional and changes only its own field: ``--kernel``, ``--initrd``, ``--cmdline``,
``--cdrom`` and ``--cpu`` take ``none`` to remove what is there, ``--accel auto`` and ``--graphics none``
reset theirs. All of it is one ``set`` operation (:meth:`toolstack.devices.ConfigOperations.set_resources`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit, vm_record
from toolstack.cli.vm import Memory, guest_lines, vm

if TYPE_CHECKING:
    from drivers.spec import Boot

NONE = "none"


def _path(value: str) -> str | None:
    return None if value == NONE else os.path.abspath(value)


def boot_fields(
    current: Boot, kernel: str | None, initrd: str | None, cmdline: str | None, device: str | None
) -> dict[str, Any] | None:
    """The VM's boot with the options given applied to it; None when none was given.

    ``--kernel none`` goes back to booting from a device (``--boot``, else hd). A kernel given to a VM that
    booted from a device replaces the device. The result is validated by the operation (``--initrd`` without
    a kernel, or ``--boot`` with one, is refused there, naming the field).
    """
    if kernel is None and initrd is None and cmdline is None and device is None:
        return None
    fields = current.model_dump()
    if kernel == NONE:
        fields = {"kernel": None, "initrd": None, "cmdline": None, "device": device or "hd"}
    elif kernel is not None:
        fields.update(kernel=_path(kernel), device=None)
    if initrd is not None:
        fields["initrd"] = _path(initrd)
    if cmdline is not None:
        fields["cmdline"] = None if cmdline == NONE else cmdline
    if device is not None:
        fields["device"] = device
    return fields


@vm.command("set")
@click.argument("name")
@click.option("--memory", type=Memory(), default=None)
@click.option("--vcpus", type=click.IntRange(1, 512), default=None)
@click.option("--kernel", default=None, help="Boot this kernel directly; none: boot from a device again")
@click.option("--initrd", default=None, help="The kernel's initial ramdisk; none removes it")
@click.option("--cmdline", default=None, help="The kernel's command line; none removes it")
@click.option(
    "--cdrom",
    default=None,
    help="Put this ISO image in the CD-ROM drive (added if missing); none removes the drive",
)
@click.option(
    "--boot",
    type=click.Choice(["hd", "cdrom", "network"]),
    default=None,
    help="Boot device (without a kernel)",
)
@click.option("--cpu", default=None, help="Guest CPU: host, a model such as qemu64, or none (the default)")
@click.option(
    "--accel", type=click.Choice(["auto", "kvm", "tcg"]), default=None, help="auto: the driver's choice"
)
@click.option("--graphics", type=click.Choice(["none", "vnc"]), default=None)
@click.option(
    "--autostart/--no-autostart", default=None, help="Start it when its host boots (a toolstack setting)"
)
@pass_ctx
@handled
def vm_set(
    c: Context,
    name: str,
    memory: int | None,
    vcpus: int | None,
    kernel: str | None,
    initrd: str | None,
    cmdline: str | None,
    cdrom: str | None,
    boot: str | None,
    cpu: str | None,
    accel: str | None,
    graphics: str | None,
    autostart: bool | None,
) -> None:
    """Change memory and/or vCPUs (live where the VM allows, persistently always), and how the VM boots and
    runs: boot media, CPU, accelerator, graphics (from its next boot) and autostart."""
    ts = c.toolstack()
    settings: dict[str, Any] = {}
    current = ts.vm(name)
    fields = boot_fields(current.spec.boot, kernel, initrd, cmdline, boot)
    if fields is not None:
        settings["boot"] = fields
    if cdrom is not None:
        settings["cdrom"] = _path(cdrom)
    if cpu is not None:
        settings["cpu"] = None if cpu == NONE else cpu
    if accel is not None:
        settings["accel"] = None if accel == "auto" else accel
    if graphics is not None:
        settings["graphics"] = None if graphics == NONE else graphics
    if autostart is not None:
        settings["autostart"] = autostart
    result = ts.set_resources(current.uuid, memory=memory, vcpus=vcpus, settings=settings)
    text = f"{result.name}: memory {result.spec.memory} MiB, vcpus {result.spec.vcpus}"
    if settings:
        text += "".join(f"\n{line}" for line in guest_lines(ts, result))
    emit(vm_record(result), c.json, text)
