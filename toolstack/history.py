"""History of the state repository, as operations on VMs: log, show, diff and rollback.

The log of operations by VM is :mod:`toolstack.log_index`'s (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

from store import Store, Tree
from store.objects import CommitInfo
from toolstack import layout
from toolstack.context import Context
from toolstack.fielddiff import FieldChange
from toolstack.log_index import LogEntry, VMLogIndex
from toolstack.messages import vm_changes
from toolstack.models import read_vm, uuid_for_name

__all__ = ["CommitView", "LogEntry", "VMLogIndex", "changed_vms", "rollback_tree", "rolled_back", "show"]


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
