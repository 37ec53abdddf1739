"""``vm define FILE.xml`` and ``vm dumpxml NAME``: libvirt domain XML in and out, as virsh users expect.

An imported domain keeps everything the model does not describe verbatim (``DomainSpec.extra``, the same
mechanism as ``reconcile --adopt``), so that what it had survives define, update, rollback and reconcile.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import Any

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit, vm_record
from toolstack.cli.vm import vm

# What ts.create takes as its own arguments rather than as spec fields.
_CREATE_ARGUMENTS = {"uuid", "name", "memory", "vcpus", "disks", "nics"}


def spec_from_file(path: str) -> Any:
    """The DomainSpec of a libvirt domain XML file; a domain without a ``<uuid>`` gets a new one.

    Raises:
        InvalidInput: the file is not domain XML the model can read (the message names the problem).
    """
    from drivers.errors import InvalidArgument
    from drivers.libvirt.xml import xml_to_spec
    from toolstack.errors import InvalidInput

    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise InvalidInput(f"{path}: malformed XML: {err}") from None
    if root.find("uuid") is None:
        ET.SubElement(root, "uuid").text = str(uuidlib.uuid4())
        text = ET.tostring(root, encoding="unicode")
    try:
        return xml_to_spec(text)
    except (InvalidArgument, ValueError) as err:
        raise InvalidInput(f"{path}: {err}") from None


@vm.command("define")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--start", is_flag=True, help="Boot it too, in the same task")
@pass_ctx
@handled
def vm_define(c: Context, file: str, start: bool) -> None:
    """Import a libvirt domain XML file as a new managed VM, in one transaction. What the model does not
    describe (consoles, graphics, RNG, CD-ROMs, CPU...) is kept verbatim."""
    spec = spec_from_file(file)
    fields = {key: value for key, value in spec.model_dump().items() if key not in _CREATE_ARGUMENTS}
    created = c.toolstack().create(
        spec.name,
        memory=spec.memory,
        vcpus=spec.vcpus,
        disks=list(spec.disks),
        nics=list(spec.nics),
        start=start,
        uuid=str(spec.uuid),
        **fields,
    )
    kept = sum(len(entries) for entries in created.spec.extra.values())
    emit(
        vm_record(created),
        c.json,
        f"defined {created.name} ({created.uuid}) from {file}; {kept} unmodelled element(s) kept verbatim"
        + (", started" if start else ""),
    )


@vm.command("dumpxml")
@click.argument("name")
@click.option("--inactive", is_flag=True, help="The persistent configuration (what the next boot uses)")
@pass_ctx
@handled
def vm_dumpxml(c: Context, name: str, inactive: bool) -> None:
    """Print the domain XML the hypervisor has for a VM, live (or with --inactive, persistent)."""
    ts = c.toolstack()
    found = ts.vm(name)
    text = ts.driver.dump_xml(found.uuid, inactive=inactive)
    emit(
        {"name": found.name, "uuid": found.uuid, "inactive": inactive, "xml": text}, c.json, text.rstrip("\n")
    )
