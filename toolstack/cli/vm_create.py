"""``vm create``: a new VM from options, with its boot media, CPU, accelerator, consoles and disks."""

from __future__ import annotations

import os
from typing import Any

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit, vm_record
from toolstack.cli.vm import Memory, vm
from toolstack.volumes import VolumeRequest, default_format, with_new_volumes


class DiskOption(click.ParamType):
    """``PATH[,size=20G][,format=qcow2]``: a disk image; with ``size``, created if missing."""

    name = "PATH[,size=SIZE][,format=FMT]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> VolumeRequest:
        if isinstance(value, VolumeRequest):
            return value
        from drivers.models import parse_memory

        path, *settings = str(value).split(",")
        options: dict[str, str] = {}
        for setting in settings:
            key, sep, item = setting.partition("=")
            if not sep or key not in ("size", "format") or key in options:
                self.fail(
                    f"{value!r}: expected PATH[,size=SIZE][,format=raw|qcow2], not {setting!r}", param, ctx
                )
            options[key] = item
        fmt = options.get("format", default_format(path))
        if fmt not in ("raw", "qcow2"):
            self.fail(f"{value!r}: format must be raw or qcow2", param, ctx)
        size = None
        if "size" in options:
            try:
                size = parse_memory(options["size"])
            except ValueError as err:
                self.fail(f"{value!r}: size {options['size']!r} is not a size (e.g. 20G): {err}", param, ctx)
        return VolumeRequest(os.path.abspath(path), size, fmt)  # type: ignore[arg-type]  # checked above


@vm.command("create")
@click.argument("name")
@click.option("--memory", type=Memory(), required=True, help="e.g. 512M, 2G")
@click.option("--vcpus", type=click.IntRange(1, 512), default=1, show_default=True)
@click.option("--max-memory", type=Memory(), default=None, help="Ballooning ceiling (default: --memory)")
@click.option(
    "--max-vcpus", type=click.IntRange(1, 512), default=None, help="Hotplug ceiling (default: --vcpus)"
)
@click.option(
    "--disk",
    "disks",
    multiple=True,
    type=DiskOption(),
    help="Disk image (repeatable); with size=, created through the hypervisor's storage when missing",
)
@click.option("--nic", "nics", multiple=True, help="Network name (repeatable)")
@click.option("--kernel", type=click.Path(), default=None, help="Boot this kernel directly")
@click.option("--initrd", type=click.Path(), default=None, help="Its initial ramdisk (needs --kernel)")
@click.option("--cmdline", default=None, help="Its command line (needs --kernel), e.g. 'console=ttyS0'")
@click.option(
    "--cdrom", type=click.Path(), default=None, help="An ISO image as a CD-ROM drive (boots from it)"
)
@click.option(
    "--boot",
    type=click.Choice(["hd", "cdrom", "network"]),
    default=None,
    help="Boot device when there is no --kernel [cdrom with --cdrom, else hd]",
)
@click.option("--cpu", default=None, help="Guest CPU: host (passed through) or a model such as qemu64")
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="kvm or tcg (QEMU's emulation) for this VM; auto: the driver's choice for the host",
)
@click.option("--graphics", type=click.Choice(["none", "vnc"]), default="none", show_default=True)
@click.option("--autostart", is_flag=True, help="Start it when its host boots (a toolstack setting)")
@click.option("--start", is_flag=True, help="Boot it too, in the same task (as xl create does)")
@click.option("--on", "placement", default=None, help="Place it on this pool host (its agent runs it)")
@pass_ctx
@handled
def vm_create(
    c: Context,
    name: str,
    memory: int,
    vcpus: int,
    max_memory: int | None,
    max_vcpus: int | None,
    disks: tuple[VolumeRequest, ...],
    nics: tuple[str, ...],
    kernel: str | None,
    initrd: str | None,
    cmdline: str | None,
    cdrom: str | None,
    boot: str | None,
    cpu: str | None,
    accel: str,
    graphics: str,
    autostart: bool,
    start: bool,
    placement: str | None,
) -> None:
    """Define a new VM. Every VM gets a serial console (``toolstack console NAME``)."""
    from toolstack.devices import cdrom_disk

    ts = c.toolstack()
    fields: dict[str, Any] = {
        key: value
        for key, value in (
            ("max_memory", max_memory),
            ("max_vcpus", max_vcpus),
            ("cpu", cpu),
            ("accel", None if accel == "auto" else accel),
            ("graphics", None if graphics == "none" else graphics),
        )
        if value is not None
    }
    if kernel is None and (initrd is not None or cmdline is not None):
        raise click.UsageError("--initrd and --cmdline need --kernel")
    if kernel or initrd or cmdline is not None:
        absolute = {k: os.path.abspath(v) for k, v in (("kernel", kernel), ("initrd", initrd)) if v}
        fields["boot"] = {**absolute, "cmdline": cmdline, "device": boot}
    else:
        fields["boot"] = {"device": boot or ("cdrom" if cdrom else "hd")}
    models: list[Any] = list(disks)
    if cdrom:
        models.append(cdrom_disk(cdrom))
    created, created_images = with_new_volumes(
        ts.driver,
        disks,
        lambda: ts.create(
            name,
            memory=memory,
            vcpus=vcpus,
            disks=models,
            nics=list(nics),
            host=placement,
            start=start,
            autostart=autostart,
            **fields,
        ),
    )
    emit(
        vm_record(created),
        c.json,
        f"created {created.name} ({created.uuid})"
        + "".join(f", created {path}" for path in created_images)
        + (", started" if start else ""),
    )
