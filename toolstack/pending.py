"""Pending changes: what a running domain gets only at its next boot.

The hypervisor keeps two definitions of a running domain: the live one it runs and the persistent one its
next boot starts from. A change the running domain cannot take (memory or vCPUs beyond its running ceilings,
a CD-ROM, CPU model or boot media changed) lands in the persistent one only, and waits. This module lists
those differences field by field (:func:`pending_changes`), so that ``vm show``, ``vm list``, the API and the
page can say so; ``vm reboot --apply`` restarts the domain from its persistent definition to apply them.

:func:`field_changes` is a plain field-level diff of two JSON-like documents (nested objects flattened to
dotted paths, as the page's ``fields.js`` does): a merger may unify it with ``show``/``diff``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers import DriverError
from drivers.base import Driver
from drivers.models import DomainInfo, DomainSpec
from toolstack.fielddiff import flatten, unit_of  # one notion of a field, as `show` and the page have

# Balloon and hotplug state: the live value may differ from the next boot's within the running ceilings
# (``set-memory``/``set-vcpus`` reach it live; a difference there is drift, which reconcile repairs).
_LIVE_ADJUSTABLE = {"memory": "max_memory", "vcpus": "max_vcpus"}


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between two documents.

    Attributes:
        field: Its dotted path (``memory``, ``boot.kernel``, ``disks.cdrom0.source``).
        before: Its value in the first document (None when absent there).
        after: Its value in the second (None when absent there).
        unit: ``MiB`` for memory fields, else "".
    """

    field: str
    before: Any
    after: Any
    unit: str = ""

    def describe(self, before: str = "", after: str = "") -> str:
        """``memory: 256 → 1024 MiB`` (with optional labels before each value)."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.field}: {before}{_show(self.before)} → {after}{_show(self.after)}{unit}"

    def to_dict(self) -> dict[str, Any]:
        """As the CLI's ``--json`` and the API give a pending change: the live and the next-boot value."""
        return {"field": self.field, "live": self.before, "next_boot": self.after, "unit": self.unit}


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FieldChange]:
    """The fields that differ between two JSON-like documents, in the order of ``before`` then ``after``."""
    old, new = flatten(before), flatten(after)
    changes = []
    for name in dict.fromkeys([*old, *new]):
        if old.get(name) != new.get(name):
            changes.append(FieldChange(name, old.get(name), new.get(name), unit_of(name)))
    return changes


def _comparable(spec: DomainSpec) -> dict[str, Any]:
    """A spec as the fields a boot applies, ceilings as their effective values (an unset ceiling is the boot
    value), devices left out (:func:`_device_changes` compares them by id).

    Its verbatim ``extra`` is compared too: drivers read a live spec without what the hypervisor adds to a
    running domain (``drivers.libvirt.runtime``), so a difference there is a change the next boot makes.
    """
    data = spec.model_dump(mode="json", exclude={"disks", "nics"})
    data["max_memory"] = spec.effective_max_memory
    data["max_vcpus"] = spec.effective_max_vcpus
    return data


def _device_changes(live: DomainSpec, persistent: DomainSpec) -> list[FieldChange]:
    """Devices by id (an operator names ``cdrom0``, not its place on the list): one change for a device
    added or removed, its fields for one changed."""
    changes = []
    for kind in ("disks", "nics"):
        before = {d.id: d.model_dump(mode="json", exclude={"id"}) for d in getattr(live, kind)}
        after = {d.id: d.model_dump(mode="json", exclude={"id"}) for d in getattr(persistent, kind)}
        for device_id in dict.fromkeys([*before, *after]):
            old, new = before.get(device_id), after.get(device_id)
            if old is None or new is None:
                changes.append(FieldChange(f"{kind}.{device_id}", old, new))
            else:
                changes.extend(
                    FieldChange(f"{kind}.{device_id}.{c.field}", c.before, c.after, c.unit)
                    for c in field_changes(old, new)
                )
    return changes


def pending_changes(live: DomainSpec, persistent: DomainSpec) -> list[FieldChange]:
    """What the next boot of a running domain changes: each field whose live and persistent values differ.

    Memory and vCPUs count only where the running domain cannot reach the next boot's value (beyond its live
    ceiling): below it the live value is ballooning or hotplug, which reconcile applies without a boot.
    """
    changes = []
    for change in field_changes(_comparable(live), _comparable(persistent)):
        ceiling = _LIVE_ADJUSTABLE.get(change.field)
        if ceiling is not None and change.after <= getattr(live, f"effective_{ceiling}"):
            continue
        changes.append(change)
    return changes + _device_changes(live, persistent)


def pending_of(driver: Driver, uuid: str, info: DomainInfo | None) -> list[FieldChange]:
    """The pending changes of domain ``uuid`` (none unless it is active and persistent).

    A domain that stops or goes away between the reads has nothing pending: the next look sees it as it is.
    """
    if info is None or not info.state.is_active:
        return []
    try:
        live, persistent = driver.live_and_persistent(uuid)
    except DriverError:
        return []
    if live is persistent or live == persistent:
        return []
    return pending_changes(live, persistent)


def without_pending(drift: list[str], pending: list[FieldChange]) -> list[str]:
    """Resource drift lines (``memory 256 MiB, desired 1024 MiB``) less those a pending change explains: a
    value beyond the running ceiling waits for the next boot, it was not changed outside the toolstack."""
    waiting = {change.field for change in pending}
    return [line for line in drift if line.split(" ", 1)[0] not in waiting]
