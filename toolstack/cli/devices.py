"""CLI commands on devices: ``disk attach/detach`` and ``nic attach/detach``."""

from __future__ import annotations

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit, vm_record


# -- devices -----------------------------------------------------------------------------------------------
@click.group()
def disk() -> None:
    """Attach and detach disks."""


@disk.command("attach")
@click.argument("name")
@click.argument("path", type=click.Path())
@click.option("--target", default=None, help="Guest device, e.g. vdb")
@click.option("--id", "device_id", default=None)
@click.option("--readonly", is_flag=True)
@pass_ctx
@handled
def disk_attach(
    c: Context, name: str, path: str, target: str | None, device_id: str | None, readonly: bool
) -> None:
    result = c.toolstack().attach_disk(name, path, target=target, device_id=device_id, readonly=readonly)
    emit(vm_record(result), c.json, f"attached {path} to {result.name}")


@click.group()
def nic() -> None:
    """Attach and detach network interfaces."""


@nic.command("attach")
@click.argument("name")
@click.argument("network", required=False)
@click.option("--bridge", default=None, help="Attach to a bridge instead of a network")
@click.option("--mac", default=None)
@click.option("--id", "device_id", default=None)
@pass_ctx
@handled
def nic_attach(
    c: Context, name: str, network: str | None, bridge: str | None, mac: str | None, device_id: str | None
) -> None:
    if (network is None) == (bridge is None):
        raise click.UsageError("give a NETWORK or --bridge (one of them)")
    result = c.toolstack().attach_nic(name, network=network, bridge=bridge, mac=mac, device_id=device_id)
    emit(vm_record(result), c.json, f"attached a nic to {result.name}")


def _detach_command(group: click.Group) -> None:
    """``disk detach`` and ``nic detach``: one command, as a device's id names it whatever its kind."""

    @group.command("detach")
    @click.argument("name")
    @click.argument("device_id")
    @pass_ctx
    @handled
    def detach(c: Context, name: str, device_id: str) -> None:
        result = c.toolstack().detach(name, device_id)
        emit(vm_record(result), c.json, f"detached {device_id} from {result.name}")


_detach_command(disk)
_detach_command(nic)
