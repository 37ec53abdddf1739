"""Field-level changes: what a commit does to each field of each VM's files, e.g. "memory: 1024 → 2048 MiB".

The Python twin of the page's ``toolstack/api/static/fields.js``, agreeing with it on what a field change is:
each file's JSON is flattened to dotted fields (lists by index; a plain-text file such as ``desired`` is one
field), a field whose value differs is one change, and a file added or removed is one change of the whole
file, summarised ("memory=256 MiB, vcpus=1"). Changes are grouped by what they are: the desired
configuration (config, devices, desired state, placement) first, then observed state
(``hosts/<host>/domains/...``), task records, the name index, and anything else.

Imports no models and no drivers: ``toolstack log`` and commit messages use it without them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from toolstack.layout import UUID_PATTERN

_VM_FILE = re.compile(rf"^vms/(?:[0-9a-f]{{2}}/)?({UUID_PATTERN})/(.+)$")
_OBSERVED_FILE = re.compile(rf"^hosts/([^/]+)/domains/(?:[0-9a-f]{{2}}/)?({UUID_PATTERN})$")
MIB_FIELDS = frozenset({"memory", "max_memory"})
GROUP_ORDER = {"desired": 0, "observed": 1, "task": 2, "index": 3, "other": 4}
ABSENT = object()  # a field (or file) that is not there, as fields.js's undefined


@dataclass(frozen=True)
class Where:
    """Which part of the state a repository path is: its group, its VM, and the prefix of its fields."""

    group: str
    vm: str | None
    prefix: str


def classify(path: str) -> Where:
    """The group, VM and field prefix of a repository path (fields.js ``classify``)."""
    match = _VM_FILE.match(path)
    if match:
        vm, rest = match.groups()
        if rest == "config":
            return Where("desired", vm, "")
        if rest.startswith("devices/"):
            return Where("desired", vm, rest[len("devices/") :])
        return Where("desired", vm, rest)  # desired, host, migration, autostart
    match = _OBSERVED_FILE.match(path)
    if match:
        return Where("observed", match.group(2), f"observed on {match.group(1)}")
    last = path.rsplit("/", 1)[-1]
    if path.startswith("tasks/"):
        return Where("task", None, f"task {last}")
    if path.startswith("names/"):
        return Where("index", None, f"name {last}")
    return Where("other", None, path)


@dataclass(frozen=True)
class FieldChange:
    """One field of one file, before and after (:data:`ABSENT` where it is not there).

    Attributes:
        group: desired, observed, task, index or other.
        vm: The VM's uuid (None for what is no VM's).
        field: The field's dotted name, prefixed by its device ("disk1.source"), or the file's ("desired").
        before: Its value before; for a whole file, its summary.
        after: Its value after; for a whole file, its summary.
        unit: "MiB" for memory fields, else "".
        whole: The whole file was added (``before`` is ABSENT) or removed (``after`` is ABSENT).
    """

    group: str
    vm: str | None
    field: str
    before: object
    after: object
    unit: str
    whole: bool

    @property
    def kind(self) -> str:
        """added, removed or changed."""
        if self.before is ABSENT:
            return "added"
        return "removed" if self.after is ABSENT else "changed"

    def describe(self, arrow: str = " → ") -> str:
        """One line: "memory: 1024 → 2048 MiB", "disk1: added (source=/a.img, …)"."""
        if self.whole and self.kind == "added":
            return f"{self.field}: added ({show(self.after)})"
        if self.whole and self.kind == "removed":
            return f"{self.field}: removed ({show(self.before)})"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.field}: {show(self.before)}{arrow}{show(self.after)}{unit}"

    def to_dict(self) -> dict[str, object]:
        """JSON: absent values are null, and ``kind`` says which side is absent."""
        return {
            "group": self.group,
            "vm": self.vm,
            "field": self.field,
            "kind": self.kind,
            "before": None if self.before is ABSENT else self.before,
            "after": None if self.after is ABSENT else self.after,
            "unit": self.unit,
            "whole": self.whole,
        }


def _parse(raw: bytes | None) -> object:
    if raw is None:
        return ABSENT
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()  # desired, host and names/ hold plain text


def flatten(value: object, prefix: str = "", out: dict[str, object] | None = None) -> dict[str, object]:
    """``{"boot": {"device": "hd"}}`` → ``{"boot.device": "hd"}``; lists by index; a scalar is field ""."""
    out = {} if out is None else out
    if isinstance(value, dict | list):
        entries = (
            [(str(i), v) for i, v in enumerate(value)] if isinstance(value, list) else list(value.items())
        )
        if not entries:
            out[prefix] = value
        for key, child in entries:
            flatten(child, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def unit_of(field: str) -> str:
    return "MiB" if field.rsplit(".", 1)[-1] in MIB_FIELDS else ""


def show(value: object) -> str:
    """A value as fields.js shows it: JSON for objects, "null", "—" for absent, else its text."""
    if value is ABSENT:
        return "—"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def summary(value: object) -> str:
    """A whole file in one line: its non-null fields ("memory=256 MiB, vcpus=1")."""
    if not isinstance(value, dict | list):
        return show(value)
    parts = []
    for field, item in flatten(value).items():
        if item is not None:
            unit = unit_of(field)
            parts.append(f"{field}={show(item)}{f' {unit}' if unit else ''}")
    return ", ".join(parts)


def _join(prefix: str, field: str) -> str:
    return ".".join(part for part in (prefix, field) if part)


def file_changes(path: str, old: bytes | None, new: bytes | None) -> list[FieldChange]:
    """The field changes between two versions of one file (None: absent) (fields.js ``fileChanges``)."""
    where = classify(path)
    before, after = _parse(old), _parse(new)
    if before is ABSENT and after is ABSENT:
        return []
    if before is ABSENT or after is ABSENT:
        field = where.prefix or "config"
        value = summary(after if before is ABSENT else before)
        return [
            FieldChange(
                where.group,
                where.vm,
                field,
                ABSENT if before is ABSENT else value,
                ABSENT if after is ABSENT else value,
                "",
                True,
            )
        ]
    was, now = flatten(before), flatten(after)
    changes = []
    for field in dict.fromkeys([*was, *now]):
        a, b = was.get(field, ABSENT), now.get(field, ABSENT)
        if a is not ABSENT and b is not ABSENT and json.dumps(a) == json.dumps(b):
            continue
        name = _join(where.prefix, field) or path.rsplit("/", 1)[-1]
        changes.append(FieldChange(where.group, where.vm, name, a, b, unit_of(name), False))
    return changes


def changes_between(changes: Iterable[tuple[str, bytes | None, bytes | None]]) -> list[FieldChange]:
    """The field changes of (path, old, new) file changes, the desired configuration first (each group in
    the order of its paths, config before devices for a VM) (fields.js ``commitChanges``)."""
    found = [c for path, old, new in changes for c in file_changes(path, old, new)]
    order = {id(c): n for n, c in enumerate(found)}
    return sorted(found, key=lambda c: (GROUP_ORDER[c.group], order[id(c)]))


def by_vm(changes: Iterable[FieldChange]) -> dict[str | None, list[FieldChange]]:
    """Changes grouped by VM (None: no VM's), in the order they come."""
    grouped: dict[str | None, list[FieldChange]] = {}
    for change in changes:
        grouped.setdefault(change.vm, []).append(change)
    return grouped
