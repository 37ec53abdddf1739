"""CLI commands on devices: ``disk attach/detach`` and ``nic attach/detach``. Registered on
:data:`toolstack.cli.main` when that module is imported."""

from __future__ import annotations

import click

from toolstack.cli import Context, handled, main, pass_ctx, vm_record
from toolstack.output import emit


# -- devices -----------------------------------------------------------------------------------------------
@main.group()
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


@disk.command("detach")
@click.argument("name")
@click.argument("device_id")
@pass_ctx
@handled
def disk_detach(c: Context, name: str, device_id: str) -> None:
    result = c.toolstack().detach(name, device_id)
    emit(vm_record(result), c.json, f"detached {device_id} from {result.name}")


@main.group()
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


@nic.command("detach")
@click.argument("name")
@click.argument("device_id")
@pass_ctx
@handled
def nic_detach(c: Context, name: str, device_id: str) -> None:
    result = c.toolstack().detach(name, device_id)
    emit(vm_record(result), c.json, f"detached {device_id} from {result.name}")
