"""History of the state repository, as operations on VMs: log, show, diff and rollback.

The log of operations by VM is :mod:`toolstack.log_index`'s (re-exported here).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from store import Store, Tree
from store.objects import CommitInfo
from toolstack import layout
from toolstack.context import Context
from toolstack.fielddiff import FieldChange, by_vm, changes_between
from toolstack.log_index import LogEntry, VMLogIndex
from toolstack.messages import vm_changes
from toolstack.models import read_vm, uuid_for_name

__all__ = [
    "CommitView",
    "LogEntry",
    "VMChanges",
    "VMLogIndex",
    "changed_vms",
    "changes_by_vm",
    "rollback_tree",
    "rolled_back",
    "show",
]


def changed_vms(store: Store, parent: str | None, commit: str) -> tuple[str, ...]:
    """The uuids whose ``vms/<xx>/<uuid>/`` differs between two commits (comparing subtree ids only).

    The trees come through the store's cache of recent commits' trees, so comparing a merge just made (a pull
    does) reads the entries it already holds in memory instead of parsing ``vms/`` again.
    """
    new = store.tree_at(commit).subtree(layout.VMS)
    old = store.tree_at(parent).subtree(layout.VMS) if parent else store.tree_at(None)
    if new.oid == old.oid:
        return ()
    return tuple(sorted(layout.changed_vm_uuids(old, new)))


@dataclass(frozen=True)
class CommitView:
    """A commit with what it changed against its first parent."""

    info: CommitInfo
    changes: list[tuple[str, bytes | None, bytes | None]]


def show(ctx: Context, rev: str) -> CommitView:
    """Commit ``rev`` (any revision git takes) with what it changed against its first parent."""
    store = ctx.store
    commit_id = store.resolve(rev)
    info = store.graph.info(commit_id)
    parent = info.parents[0] if info.parents else None
    old = store.tree_at(parent) if parent else store.tree_at(None)
    changes = [(c.path, c.old, c.new) for c in old.diff(store.tree_at(commit_id))]
    return CommitView(info, changes)


def rollback_tree(ctx: Context, rev: str, vm: str | None = None, base: str | None = None) -> tuple[str, Tree]:
    """The desired-state tree after rolling back to ``rev``: ``vms/`` and ``names/`` as they were then
    (only one VM's, if ``vm`` is given), applied to commit ``base`` (default: main's head). Observed state
    and task records are facts, not desired state: they stay."""
    store = ctx.store
    target = store.resolve(rev)
    old = layout.shard(store.tree_at(target))  # a commit from before the shards, read in today's layout
    tree = ctx.main.tree if base is None else store.tree_at(base)
    if vm is None:
        tree = tree.graft(layout.VMS, old.subtree(layout.VMS)).graft(layout.NAMES, old.subtree(layout.NAMES))
        return target, tree
    uuid = uuid_for_name(tree, vm) or uuid_for_name(old, vm) or vm
    for _, path in layout.name_records(tree):
        if tree.get(path) == f"{uuid}\n".encode():
            tree = tree.remove(path)
    tree = tree.graft(layout.vm_dir(uuid), old.subtree(layout.vm_dir(uuid)))
    if old.kind(layout.vm_dir(uuid)) == "directory":
        tree = tree.set(layout.name_path(read_vm(old, uuid).name), f"{uuid}\n".encode())
    return target, tree


def rolled_back(before: Tree, after: Tree, only: set[str] | None = None) -> list[FieldChange]:
    """The field changes a rollback makes to VMs' desired files: those of ``only`` (uuids), else of every VM
    whose directory differs."""
    uuids = only
    if uuids is None:
        uuids = layout.changed_vm_uuids(before.subtree(layout.VMS), after.subtree(layout.VMS))
    return [change for uuid in sorted(uuids) for change in vm_changes(before, after, uuid)]


@dataclass(frozen=True)
class VMChanges:
    """The field changes of one VM (``vm`` None: of no VM's files: task records, names, anything else)."""

    vm: str | None
    name: str
    changes: list[FieldChange]

    def to_dict(self) -> dict[str, object]:
        return {"vm": self.vm, "name": self.name, "changes": [c.to_dict() for c in self.changes]}


def _name_of(trees: tuple[Tree, Tree], uuid: str) -> str:
    for tree in reversed(trees):  # the name it has after the change, else the one it had
        raw = tree.get(layout.config_path(uuid))
        try:
            name = json.loads(raw).get("name") if raw else None
        except (ValueError, AttributeError):
            name = None
        if isinstance(name, str):
            return name
    return uuid[:8]


def changes_by_vm(
    changes: Iterable[tuple[str, bytes | None, bytes | None]], before: Tree, after: Tree, everything: bool
) -> tuple[list[VMChanges], int]:
    """Field changes per VM, the desired configuration first (fields.js's grouping).

    Args:
        everything: Include observed state, task records and the name index (else only counted).

    Returns:
        The groups (VMs in the order their first change comes; no VM's last), and how many changes were
        left out.
    """
    found = changes_between(changes)
    shown = [c for c in found if everything or c.group == "desired"]
    groups = [
        VMChanges(vm, _name_of((before, after), vm) if vm else "", items)
        for vm, items in by_vm(c for c in shown if c.vm is not None).items()
    ]
    rest = [c for c in shown if c.vm is None]
    if rest:
        groups.append(VMChanges(None, "", rest))
    return groups, len(found) - len(shown)
