"""Parsers for ``xl list`` (the state table) and ``xl list -l`` (libxl's JSON domain configurations).

``xl list -l`` prints a JSON array with one object per domain: ``{"domid": N, "config": {...}}`` where config
is libxl_domain_config as JSON (``c_info``, ``b_info``, ``disks``, ``nics``, ``on_*``); libxl omits fields
left at their default. It has no run state, which only the table of ``xl list`` shows (``r b p s c d`` flags).
"""

from __future__ import annotations

import json
import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from drivers.errors import DriverError
from drivers.models import Boot, Disk, DomainSpec, DomainState, Nic

DOM0_UUID = uuidlib.UUID(int=0)
_HVM_BOOT = {"c": "hd", "d": "cdrom", "n": "network"}


@dataclass(frozen=True)
class XlDomain:
    """One running domain as ``xl list -l`` reports it.

    Attributes:
        domid: Xen domain id.
        uuid: c_info.uuid.
        name: c_info.name.
        config: The raw libxl configuration object.
    """

    domid: int
    uuid: uuidlib.UUID
    name: str
    config: dict[str, Any]

    @property
    def memory(self) -> int:
        """Balloon target in MiB."""
        b_info = self.config.get("b_info", {})
        return int(b_info.get("target_memkb", b_info.get("max_memkb", 0))) // 1024

    @property
    def vcpus(self) -> int:
        """Online vCPUs (libxl keeps ``avail_vcpus`` current)."""
        b_info = self.config.get("b_info", {})
        available = b_info.get("avail_vcpus")
        return len(available) if available else int(b_info.get("max_vcpus", 1))


def parse_list_long(text: str) -> list[XlDomain]:
    """Parse ``xl list -l`` output; Domain-0 and entries without a uuid are kept (callers filter).

    Raises:
        DriverError: The text is not the JSON array xl prints.
    """
    try:
        entries = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as error:
        raise DriverError(f"cannot parse `xl list -l` output: {error}", operation="list") from None
    if not isinstance(entries, list):
        raise DriverError("`xl list -l` output is not a JSON array", operation="list")
    domains = []
    for entry in entries:
        config = entry.get("config", {})
        c_info = config.get("c_info", {})
        domains.append(
            XlDomain(
                domid=int(entry["domid"]),
                uuid=uuidlib.UUID(c_info["uuid"]) if "uuid" in c_info else DOM0_UUID,
                name=c_info.get("name", f"domid-{entry['domid']}"),
                config=config,
            )
        )
    return domains


_ROW = re.compile(
    r"^(?P<name>.+?)\s+(?P<domid>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+(?P<state>[-rbpscwSd?]{6})\s+"
)


def parse_list_table(text: str) -> dict[int, DomainState]:
    """Parse ``xl list``: domid → run state (from the six state flags ``rbpsSd`` columns)."""
    states = {}
    for line in text.splitlines()[1:]:
        match = _ROW.match(line)
        if match:
            states[int(match["domid"])] = state_from_flags(match["state"])
    return states


def state_from_flags(flags: str) -> DomainState:
    """Map xl's flags: running, blocked, paused, shutdown, shutdown reason, dying."""
    _running, _blocked, paused, shutdown, reason, dying = flags
    if shutdown == "s" and reason == "c":
        return DomainState.CRASHED
    if shutdown == "s" or dying == "d":
        return DomainState.SHUTDOWN
    if paused == "p":
        return DomainState.PAUSED
    return DomainState.RUNNING  # 'r' on a CPU, 'b' blocked (idle), or neither: all running for a toolstack


def live_spec(domain: XlDomain, persistent: DomainSpec | None) -> DomainSpec:
    """Rebuild a DomainSpec from the live libxl config; device ids and metadata come from the persistent spec.

    Args:
        domain: The running domain.
        persistent: Our spec for it, if we have one (gives device ids, bus and model names, metadata).
    """
    config = domain.config
    b_info = config.get("b_info", {})
    known_disks = {disk.target: disk for disk in persistent.disks} if persistent else {}
    known_nics = {nic.mac: nic for nic in persistent.nics} if persistent else {}
    disks = []
    for raw in config.get("disks", []):
        if raw.get("is_cdrom") or not raw.get("pdev_path"):
            continue
        vdev = raw["vdev"]
        known = known_disks.get(vdev)
        disks.append(
            Disk(
                id=known.id if known else vdev,
                source=raw["pdev_path"],
                format=raw.get("format", "raw") if raw.get("format") in ("raw", "qcow2") else "raw",
                target=vdev,
                bus=known.bus if known else ("xen" if vdev.startswith("xvd") else "ide"),
                readonly=not raw.get("readwrite", 0),
            )
        )
    nics = []
    for raw in config.get("nics", []):
        mac = raw.get("mac", "").lower()
        known = known_nics.get(mac)
        nics.append(
            Nic(
                id=known.id if known else f"vif{raw.get('devid', len(nics))}",
                mac=mac,
                bridge=raw.get("bridge") or "xenbr0",
                model=raw.get("model") or (known.model if known else "netfront"),
            )
        )
    kernel = b_info.get("kernel")
    if kernel:
        boot = Boot(kernel=kernel, initrd=b_info.get("ramdisk"), cmdline=b_info.get("cmdline"))
    else:
        boot = Boot(device=_HVM_BOOT.get(b_info.get("type.hvm", {}).get("boot", "c")[:1], "hd"))  # type: ignore[arg-type]
    max_memory = int(b_info.get("max_memkb", 0)) // 1024 or domain.memory
    return DomainSpec(
        uuid=domain.uuid,
        name=domain.name,
        memory=min(domain.memory, max_memory) or max_memory,
        max_memory=max_memory,
        vcpus=domain.vcpus,
        max_vcpus=max(int(b_info.get("max_vcpus", domain.vcpus)), domain.vcpus),
        boot=boot,
        disks=tuple(disks),
        nics=tuple(nics),
        on_poweroff=config.get("on_poweroff", "destroy").replace("_", "-"),
        on_reboot=config.get("on_reboot", "restart").replace("_", "-"),
        on_crash=config.get("on_crash", "destroy").replace("_", "-"),
        metadata=dict(persistent.metadata) if persistent else {},
        # libxl's config does not give xl.cfg's settings back: the running domain has our config's, as far
        # as anyone can tell (without them, every running domain with extras would look pending a reboot).
        extra=dict(persistent.extra) if persistent else {},
    )
