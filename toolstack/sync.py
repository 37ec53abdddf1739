"""Sync with other hosts and with operators' clones through any git server (GitOps).

``pull`` fetches the remote's main and merges it. Every VM the merge changed is validated with the same
models as the CLI; an invalid edit is not applied: a revert commit that names the error restores those VMs
(nothing is lost: the edit stays in history, and the revert is pushed back for its author to see). Then the
hypervisor is reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from store import NonFastForward, Tree
from toolstack import layout
from toolstack.errors import InvalidInput
from toolstack.history import changed_vms
from toolstack.models import read_vm
from toolstack.reconcile import Plan

if TYPE_CHECKING:
    from toolstack.ops import Toolstack


@dataclass
class PullResult:
    """What a pull did.

    Attributes:
        before: main's head before the pull.
        after: main's head after it (merge and any revert included).
        changed: VMs the incoming commits changed.
        rejected: {uuid: error} for VMs whose edit was reverted.
        plan: The reconcile that followed (None when nothing came in).
        pushed: Whether main was pushed back.
    """

    before: str | None
    after: str | None
    changed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    plan: Plan | None = None
    pushed: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "changed": self.changed,
            "rejected": self.rejected,
            "plan": self.plan.to_dict() if self.plan else None,
            "pushed": self.pushed,
        }


def invalid_vms(tree: Tree, uuids: list[str]) -> dict[str, str]:
    """The VMs among ``uuids`` that do not validate in ``tree``, with the error naming path and field."""
    errors: dict[str, str] = {}
    for uuid in uuids:
        if tree.kind(layout.vm_dir(uuid)) is None:
            continue  # deleted: nothing to validate
        try:
            vm = read_vm(tree, uuid)
        except InvalidInput as err:
            errors[uuid] = str(err)
            continue
        holder = tree.get(layout.name_path(vm.name))
        if holder is None or holder.decode().strip() != uuid:
            errors[uuid] = f"{layout.name_path(vm.name)} does not name {uuid} (a rename must update names/)"
    return errors


def _restore(tree: Tree, good: Tree, uuid: str) -> Tree:
    """``tree`` with VM ``uuid`` (its directory and its names/ entries) as it is in ``good``."""
    mine = f"{uuid}\n".encode()
    for _, path in layout.name_records(tree):
        if tree.get(path) == mine:
            tree = tree.remove(path)
    for name, path in layout.name_records(good):
        if good.get(path) == mine:
            tree = tree.set(layout.name_path(name), mine)
    return tree.graft(layout.vm_dir(uuid), good.subtree(layout.vm_dir(uuid)))


def pull(
    ts: Toolstack,
    remote: str = "origin",
    url: str | None = None,
    push: bool = False,
    reconcile: bool = True,
    attempts: int = 5,
    placed_only: bool = False,
) -> PullResult:
    """Fetch and merge the remote's main, revert invalid VM edits, reconcile, and optionally push back.

    Raises:
        Conflict: the merge conflicts (the error lists each path with both values); nothing moves.
        RemoteError: the remote cannot be reached.
    """
    store = ts.store
    link = store.remote(remote, url)
    result = PullResult(before=ts.main.head, after=ts.main.head)
    for _ in range(attempts):
        incoming = link.fetch().get(layout.MAIN)
        head = ts.main.head
        if incoming is not None and head is not None and not store.graph.is_ancestor(incoming, head):
            merged = store.merge(
                incoming,
                into=layout.MAIN,
                author=ts.runner.author,
                message=f"Merge {remote}/{layout.MAIN} into {layout.MAIN}",
            )
            if ts.shard_layout():  # the remote had VMs in the layout of before the shards
                merged = ts.main.head
                assert merged is not None
            changed = list(changed_vms(store, head, merged))
            result.changed.extend(u for u in changed if u not in result.changed)
            rejected = invalid_vms(store.tree_at(merged), changed)
            if rejected:
                good = store.tree_at(head)
                reasons = "; ".join(rejected.values())
                # On the merge that was validated, reading each rejected VM: an edit of it made meanwhile
                # is a conflict, not silently reverted with the invalid one.
                with ts.main.transaction(
                    message=f"gitops: reverted an invalid edit from {remote}: {reasons}",
                    author=ts.runner.author,
                    base=merged,
                ) as tx:
                    for uuid in rejected:
                        tx.subtree(layout.vm_dir(uuid))
                        tx.tree = _restore(tx.tree, good, uuid)
                result.rejected.update(rejected)
        elif incoming is None and head is None:
            break
        if reconcile and (result.changed or result.plan is None):
            result.plan = ts.reconcile(placed_only=placed_only)
        if not push:
            break
        if ts.main.head == store.backend.read_ref(link.tracking_ref(layout.MAIN)):
            break  # the remote has it all already
        try:
            link.push(layout.MAIN)
            result.pushed = True
            break
        except NonFastForward:
            continue  # someone pushed meanwhile: fetch and merge again
    result.after = ts.main.head
    return result


def push(ts: Toolstack, remote: str = "origin", url: str | None = None, force: bool = False) -> str:
    return ts.store.remote(remote, url).push(layout.MAIN, force=force)
