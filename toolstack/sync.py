"""Sync with other hosts and with operators' clones through any git server (GitOps).

``pull`` fetches the remote's main and merges it. Every VM the merge changed is validated with the same
models as the CLI. An invalid edit is never applied and never deletes anything: a revert commit that names
the error puts back the VM's newest valid version from history (see :func:`last_valid`); only a VM that never
validated anywhere in history is left out, and the revert says so (nothing is lost: the edit stays in
history, and the revert is pushed back for its author to see). Then the hypervisor is reconciled.

Two guards keep a host from spreading damage through the pool:

- **No removal nobody asked for.** Before any push (``pull --push``, ``push``, the agent),
  :func:`unrequested_removals` checks every VM the remote's main holds and ours lacks: the commit that dropped
  it here must be a deletion someone asked for, or nothing is pushed (:class:`UnrequestedRemoval`).
- **Rewritten history is not merged.** After ``toolstack gc`` and a forced push, the remote's main shares no
  history with ours; merging two unrelated histories would conflict on every changed field (or silently
  resurrect squashed state). ``pull`` recognises the squash (:func:`store.squash.squash_marker`), changes
  nothing, and names the command that resynchronises: :func:`resync` (``toolstack pull --resync``).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from store import NonFastForward, Tree
from store.paths import parse
from store.squash import SquashMarker, root_of, squash_marker
from toolstack import layout
from toolstack.errors import (
    DestructivePlanRefused,
    HistoryRewritten,
    InvalidInput,
    Rejection,
    ToolstackError,
    UnrequestedRemoval,
)
from toolstack.history import changed_vms
from toolstack.models import Task, read_vm
from toolstack.reconcile import Confirm, Plan

if TYPE_CHECKING:
    from store import Remote, Store
    from toolstack.ops import Toolstack

REVERT_SUBJECT = "gitops: reverted an invalid edit"
LEFT_OUT_TRAILER = "Gitops-left-out"  # on a revert commit: a VM that never validated, left out on purpose
RESYNC_PREFIX = "refs/resync"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class PullResult:
    """What a pull did.

    Attributes:
        before: main's head before the pull.
        after: main's head after it (merge and any revert included).
        changed: VMs the incoming commits changed.
        rejected: {uuid: error} for VMs whose edit was reverted.
        rejections: The same, in full: the commit, its author, the path, and what was restored.
        plan: The reconcile that followed (None when nothing came in).
        pushed: Whether main was pushed back.
    """

    before: str | None
    after: str | None
    changed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    plan: Plan | None = None
    pushed: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "changed": self.changed,
            "rejected": self.rejected,
            "rejections": [r.to_dict() for r in self.rejections],
            "plan": self.plan.to_dict() if self.plan is not None else None,  # one with nothing to do too
            "pushed": self.pushed,
        }


def _name_holders(tree: Tree, uuid: str) -> list[str]:
    """The names/ paths in ``tree`` that name ``uuid``."""
    mine = f"{uuid}\n".encode()
    return [path for _, path in layout.name_records(tree) if tree.get(path) == mine]


def invalid_vms(tree: Tree, uuids: list[str]) -> dict[str, str]:
    """The VMs among ``uuids`` that do not validate in ``tree``, with the error naming path and field.

    A VM whose directory is gone is a deletion, and valid, when no name still names it; a name left behind
    means the deletion was half done (a deletion removes the directory and the name).
    """
    errors: dict[str, str] = {}
    for uuid in uuids:
        if tree.kind(layout.vm_dir(uuid)) is None:
            left = _name_holders(tree, uuid)
            if left:
                errors[uuid] = f"{layout.vm_dir(uuid)} is gone, but {left[0]} still names it"
            continue
        try:
            vm = read_vm(tree, uuid)
        except InvalidInput as err:
            errors[uuid] = str(err)
            continue
        holder = tree.get(layout.name_path(vm.name))
        if holder is None or holder.decode().strip() != uuid:
            errors[uuid] = f"{layout.name_path(vm.name)} does not name {uuid} (a rename must update names/)"
    return errors


def _named_by_changes(old: Tree, new: Tree) -> set[str]:
    """The uuids named before or after by the name records that changed between two trees: a name left
    behind by a deletion, or taken from its VM, leaves no trace under vms/, so they are found here."""
    found: set[str] = set()
    for change in old.subtree(layout.NAMES).diff(new.subtree(layout.NAMES)):
        for value in (change.old, change.new):
            uuid = (value or b"").decode(errors="replace").strip()
            if _UUID.fullmatch(uuid):  # anything else is no VM of ours: nothing to validate or restore
                found.add(uuid)
    return found


def _restore(tree: Tree, good: Tree, uuid: str) -> Tree:
    """``tree`` with VM ``uuid`` (its directory and its names/ entries) as it is in ``good`` (left out if
    ``good`` lacks it)."""
    mine = f"{uuid}\n".encode()
    for path in _name_holders(tree, uuid):
        tree = tree.remove(path)
    for name, path in layout.name_records(good):
        if good.get(path) == mine:
            tree = tree.set(layout.name_path(name), mine)
    return tree.graft(layout.vm_dir(uuid), good.subtree(layout.vm_dir(uuid)))


def last_valid(store: Store, heads: list[str], uuid: str) -> str | None:
    """The newest commit in the history of ``heads`` where VM ``uuid`` exists and validates, or None.

    Walks the commits that changed the VM's directory (git's history simplification, newest first, through
    both sides of merges: the newest valid version wins, wherever it was made) and checks each one's whole
    VM, name record included. Pass the merge and the incoming commit: a merge whose directory equals its
    first parent's (a fresh host's merge that a deletion left without the VM) hides the incoming side from
    the simplified walk. None means the VM never validated anywhere: it was born broken.
    """
    graph = store.graph
    walks = [graph.walk_path(head, parse(layout.vm_dir(uuid))) for head in dict.fromkeys(heads)]
    seen: set[str] = set()
    for commit in heapq.merge(*walks, key=lambda c: -graph.time(c)):
        if commit in seen:
            continue
        seen.add(commit)
        tree = store.tree_at(commit)
        if tree.kind(layout.vm_dir(uuid)) is not None and not invalid_vms(tree, [uuid]):
            return commit
    return None


_PATH = re.compile(r"((?:vms|names)/[^\s:]+)")


def _rejection(
    store: Store, incoming: str, merged: str, uuid: str, error: str, good: str | None
) -> Rejection:
    """Who made the invalid edit: the incoming commit that last touched the offending path (else the VM)."""
    found = _PATH.match(error)
    path = found.group(1) if found else layout.vm_dir(uuid)
    commit = None
    for key in dict.fromkeys([path, layout.vm_dir(uuid)]):
        commit = next(store.graph.walk_path(incoming, parse(key)), None)
        if commit is not None:
            break
    name = ""
    for source in ([good] if good else []) + [merged]:
        try:
            name = read_vm(store.tree_at(source), uuid).name
            break
        except InvalidInput:
            continue
    return Rejection(
        uuid=uuid,
        name=name,
        error=error,
        path=path,
        commit=commit,
        author=store.graph.info(commit).author if commit else None,
        restored_from=good,
    )


def _revert_invalid(
    ts: Toolstack, remote: str, head: str | None, incoming: str, merged: str, changed: list[str]
) -> list[Rejection]:
    """Revert the VMs the merge made invalid to their last valid version, in one commit that says why."""
    store = ts.store
    tree = store.tree_at(merged)
    suspects = sorted(set(changed) | (_named_by_changes(store.tree_at(head), tree) if head else set()))
    errors = invalid_vms(tree, suspects)
    if not errors:
        return []
    rejections = [
        _rejection(store, incoming, merged, uuid, error, last_valid(store, [merged, incoming], uuid))
        for uuid, error in errors.items()
    ]
    body = "\n".join(f"- {r.describe()}" for r in rejections)
    left_out = [r.uuid for r in rejections if r.restored_from is None]
    trailers = "".join(f"{LEFT_OUT_TRAILER}: {uuid}\n" for uuid in left_out)
    message = f"{REVERT_SUBJECT} from {remote}: {'; '.join(errors.values())}\n\n{body}\n" + (
        f"\n{trailers}" if trailers else ""
    )
    # On the merge that was validated, reading each rejected VM: an edit of it made meanwhile is a conflict,
    # not silently reverted with the invalid one.
    with ts.main.transaction(message=message, author=ts.runner.author, base=merged) as tx:
        for rejection in rejections:
            tx.subtree(layout.vm_dir(rejection.uuid))
            good = rejection.restored_from
            tx.tree = _restore(
                tx.tree, store.tree_at(good) if good else Tree.empty(store.backend), rejection.uuid
            )
    return rejections


# -- the push guard ------------------------------------------------------------------------------------------
def _has_vm(store: Store, commit: str, uuid: str) -> bool:
    graph = store.graph
    return graph.path_node(graph.tree_of(commit), parse(layout.vm_dir(uuid))) is not None


def _removal_commit(store: Store, head: str, uuid: str) -> str | None:
    """The commit that dropped VM ``uuid`` from ``head``'s history (absent at ``head``), or None if it was
    never there. Follows first parents down to where the VM is back; a merge that took the removal from a
    side branch leads into that side, so the answer is the commit that removed it, not the merge."""
    graph = store.graph
    commit = head
    while True:
        parents = graph.parents(commit)
        if not parents:
            return None
        if not _has_vm(store, parents[0], uuid):
            commit = parents[0]
            continue
        side = [p for p in parents[1:] if not _has_vm(store, p, uuid)]
        if not side:
            return commit
        commit = side[0]


def _why_not_deliberate(store: Store, commit: str, uuid: str) -> str | None:
    """None if ``commit`` removed VM ``uuid`` because someone asked for it, else why it does not count.

    A removal someone asked for is one of:
    - a delete task merged by the runner (or completed by recovery): the commit records a task whose
      operation is ``delete`` on this VM;
    - a ``toolstack rollback`` to a state without the VM;
    - a GitOps revert that left out a VM that never validated (its ``Gitops-left-out`` trailer names it);
    - a commit made by a person with plain git that removes the VM's whole directory and its name.
    Anything else (a GitOps revert that dropped a VM, a merge that lost it, a half-done deletion) is not.
    """
    info = store.graph.info(commit)
    message = info.message
    if re.search(rf"^{LEFT_OUT_TRAILER}: {re.escape(uuid)}$", message, re.MULTILINE):
        return None
    if message.startswith(REVERT_SUBJECT):
        return f"dropped by a GitOps revert ({message.splitlines()[0][:80]!r})"
    if message.startswith("rollback "):
        return None
    tree = store.tree_at(commit)
    for path in store.changed_paths(commit):
        if layout.is_task_path(path):
            raw = tree.get(path)
            try:
                task = Task.model_validate_json(raw) if raw is not None else None
            except ValueError:
                task = None
            if task is not None and task.operation == "delete" and task.vm == uuid:
                return None
    if message.startswith(("vm ", "task ", "recover:", "drift:", "Merge ")) or len(info.parents) > 1:
        return f"no operation deleted it: {message.splitlines()[0][:80]!r} dropped it"
    if _name_holders(tree, uuid):
        return f"{message.splitlines()[0][:80]!r} removed its directory but left its name"
    return None  # a person's deletion: its whole directory and its name, in one commit


def unrequested_removals(
    store: Store, remote_head: str | None, local: str | None
) -> dict[str, tuple[str, str | None, str]]:
    """The VMs that pushing ``local`` over ``remote_head`` would delete although nobody asked for it.

    Only a push that fast-forwards the remote can delete anything without --force (any other is refused by
    the server), so only then is each VM that the remote holds and ``local`` lacks traced to the commit that
    dropped it (:func:`_removal_commit`) and checked (:func:`_why_not_deliberate`).

    Returns:
        {uuid: (name, commit that dropped it or None, why it does not count)}; empty if the push is safe.
    """
    graph = store.graph
    if remote_head is None or local is None or remote_head == local or not graph.exists(remote_head):
        return {}
    if not graph.is_ancestor(remote_head, local):
        return {}
    theirs, ours = store.tree_at(remote_head), store.tree_at(local)
    changed = layout.changed_vm_uuids(theirs.subtree(layout.VMS), ours.subtree(layout.VMS))
    found: dict[str, tuple[str, str | None, str]] = {}
    for uuid in sorted(changed):
        if ours.kind(layout.vm_dir(uuid)) is not None or theirs.kind(layout.vm_dir(uuid)) is None:
            continue
        raw = theirs.get(layout.config_path(uuid))
        try:
            name = str(json.loads(raw).get("name", "")) if raw else ""
        except (ValueError, AttributeError):
            name = ""
        commit = _removal_commit(store, local, uuid)
        reason = (
            "it is missing from main here" if commit is None else _why_not_deliberate(store, commit, uuid)
        )
        if reason is not None:
            found[uuid] = (name, commit, reason)
    return found


def _guarded_push(ts: Toolstack, link: Remote, remote_head: str | None) -> str:
    """Push main unless that deletes VMs nobody asked to delete (see :func:`unrequested_removals`)."""
    removals = unrequested_removals(ts.store, remote_head, ts.main.head)
    if removals:
        assert remote_head is not None
        raise UnrequestedRemoval(link.name, removals, remote_head)
    return link.push(layout.MAIN)


# -- rewritten history ------------------------------------------------------------------------------------
def _rewritten(store: Store, head: str, incoming: str, previous: str | None) -> SquashMarker | None:
    """The squash that rewrote the remote's main under us, or None.

    The remote's main was rewritten by gc when it shares no history with ours, its root is a squash's root,
    and we had shared history with the remote before: our last view of its main (the tracking ref before
    this fetch) is not in its history now, or we hold the squash point. A fresh host shares nothing with
    the pool either, but has no such past: its first pull is an ordinary merge.
    """
    graph = store.graph
    if graph.merge_bases(head, incoming):
        return None
    marker = squash_marker(store, root_of(store, incoming))
    if marker is None:
        return None
    if previous is not None and graph.exists(previous) and not graph.is_ancestor(previous, incoming):
        return marker
    if graph.exists(marker.point) and graph.is_ancestor(marker.point, head):
        return marker
    return None


def resync_command(ts: Toolstack, remote: str) -> str:
    """The command that resynchronises this host's repository with ``remote`` after a gc."""
    where = f" --repo {ts.store.path}" if ts.store.path else ""
    which = f" --remote {remote}" if remote != "origin" else ""
    return f"toolstack{where} pull --resync{which}"


def _fetch(store: Store, link: Remote) -> tuple[str | None, str | None]:
    """(our previous view of the remote's main, its main now) around one fetch."""
    previous = store.backend.read_ref(link.tracking_ref(layout.MAIN))
    return previous, link.fetch().get(layout.MAIN)


def pull(
    ts: Toolstack,
    remote: str = "origin",
    url: str | None = None,
    push: bool = False,
    reconcile: bool = True,
    attempts: int = 5,
    placed_only: bool = False,
    validate_all: bool = False,
    confirm: Confirm = True,
) -> PullResult:
    """Fetch and merge the remote's main, revert invalid VM edits, reconcile, and optionally push back.

    Args:
        validate_all: Validate every VM on main first, not only those the merge changes: for a host that
            just joined the pool by cloning it, for which everything on main is new.
        confirm: Asked before a reconcile that stops or undefines domains (see
            :func:`toolstack.reconcile.confirm_plan`).

    Raises:
        Conflict: the merge conflicts (the error lists each path with both values); nothing moves.
        HistoryRewritten: the remote's main was rewritten by gc; nothing moves (run :func:`resync`).
        UnrequestedRemoval: pushing back would delete VMs nobody asked to delete; nothing was pushed.
        DestructivePlanRefused: the reconcile would stop or undefine domains and ``confirm`` did not say
            yes: main is merged, the hypervisor is left as it was, nothing was pushed.
        RemoteError: the remote cannot be reached.
    """
    store = ts.store
    link = store.remote(remote, url)
    result = PullResult(before=ts.main.head, after=ts.main.head)
    joined = ts.main.head
    if validate_all and joined is not None:
        tree = ts.main.tree
        # Every VM, and every uuid a name names: a VM removed but for its name is a half deletion.
        named = {
            (tree.get(path) or b"").decode(errors="replace").strip() for _, path in layout.name_records(tree)
        }
        everything = sorted(set(layout.vm_uuids(tree)) | {uuid for uuid in named if layout.is_vm_uuid(uuid)})
        for rejection in _revert_invalid(ts, remote, None, joined, joined, everything):
            result.rejected[rejection.uuid] = rejection.error
            result.rejections.append(rejection)
        result.changed.extend(everything)
    for _ in range(attempts):
        previous, incoming = _fetch(store, link)
        head = ts.main.head
        if incoming is not None and head is not None and not store.graph.is_ancestor(incoming, head):
            marker = _rewritten(store, head, incoming, previous)
            if marker is not None:
                # Leave everything as it was, the tracking ref included, so that resync (and the next pull)
                # still know what we had seen of the remote before its rewrite.
                store.backend.compare_and_swap(link.tracking_ref(layout.MAIN), incoming, previous)
                raise HistoryRewritten(remote, incoming, marker.root, marker.at, resync_command(ts, remote))
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
            for rejection in _revert_invalid(ts, remote, head, incoming, merged, changed):
                result.rejected[rejection.uuid] = rejection.error
                result.rejections.append(rejection)
        elif incoming is None and head is None:
            break
        if reconcile and (result.changed or result.plan is None):
            result.plan = _reconcile(ts, confirm, placed_only=placed_only)
        if not push:
            break
        if ts.main.head == store.backend.read_ref(link.tracking_ref(layout.MAIN)):
            break  # the remote has it all already
        try:
            _guarded_push(ts, link, incoming)
            result.pushed = True
            break
        except NonFastForward:
            continue  # someone pushed meanwhile: fetch and merge again
    result.after = ts.main.head
    return result


def _reconcile(ts: Toolstack, confirm: Confirm, placed_only: bool = False) -> Plan:
    """Reconcile after main moved under a sync; a refused destructive plan says that main moved anyway."""
    try:
        return ts.reconcile(placed_only=placed_only, confirm=confirm)
    except DestructivePlanRefused as err:
        raise DestructivePlanRefused(
            err.plan,
            "reconcile after the pull",
            declined=err.declined,
            note=f"main was updated (now {(ts.main.head or '-')[:12]}) but the hypervisor was left as it was "
            "and nothing was pushed: `toolstack reconcile --yes` applies it",
        ) from None


def push(ts: Toolstack, remote: str = "origin", url: str | None = None, force: bool = False) -> str:
    """Publish main to ``remote``.

    Without ``force``, the remote's main is fetched first and the push is refused if it would delete VMs
    that nobody asked to delete (:func:`unrequested_removals`) or discard the remote's commits. ``force``
    replaces the remote's main whatever it holds: the operator's explicit choice (e.g. after ``gc``).

    Raises:
        UnrequestedRemoval: the push would delete VMs that no operation deleted here.
        NonFastForward: the remote has commits main lacks.
    """
    link = ts.store.remote(remote, url)
    if force:
        return link.push(layout.MAIN, force=True)
    _, remote_head = _fetch(ts.store, link)
    return _guarded_push(ts, link, remote_head)


# -- resync after gc ----------------------------------------------------------------------------------------
@dataclass
class ResyncResult:
    """What a resync did.

    Attributes:
        before: main's head before (kept under ``kept``).
        after: main's head after (the remote's main).
        kept: The ref that keeps the old main (``refs/resync/<time>-<old head>``); None if nothing was
            rewritten and an ordinary pull ran instead.
        local_only: The commits of the old main's first-parent chain that the squash did not fold in
            (newest first): {"commit", "author", "message"}.
        plan: The reconcile that followed.
        pull: The ordinary pull's result, when the remote had not been rewritten.
    """

    before: str | None
    after: str | None
    kept: str | None = None
    local_only: list[dict[str, str]] = field(default_factory=list)
    plan: Plan | None = None
    pull: PullResult | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "kept": self.kept,
            "local_only": self.local_only,
            "plan": self.plan.to_dict() if self.plan is not None else None,  # one with nothing to do too
            "pull": self.pull.to_dict() if self.pull else None,
        }


def local_only_commits(
    store: Store, head: str, incoming: str, marker: SquashMarker, previous: str | None
) -> list[str]:
    """The commits on ``head``'s first-parent chain that the squash behind ``incoming`` did not fold in,
    newest first.

    The rule: a commit was folded in if the remote's old history holds it, which is known from whichever of
    these this host has: it is an ancestor of the squash's old head or of its squash point (both named by
    the squash's root commit), or of our last view of the remote's main before the rewrite (the tracking
    ref, which a detecting pull leaves as it was); or the new main holds a commit with its tree, message,
    author and author date (the squash keeps them, so a commit of ours that reached the remote's first-parent
    chain after our last fetch is recognised without its old id). The ancestors of a folded commit are
    folded too, so the walk stops at the first one. When this host holds none of those anchors (it never
    saw the remote's old history), commits as old as the squash point are taken as folded.
    """
    graph = store.graph
    anchors = [
        commit
        for commit in (marker.old_head, marker.point, previous)
        if commit and commit != incoming and graph.exists(commit)
    ]
    rewritten = {
        (info.tree, info.message, info.author, info.author_time)
        for info in map(graph.info, graph.first_parent_chain(incoming))
    }
    cut_time = graph.time(marker.root)
    local: list[str] = []
    for commit in graph.first_parent_chain(head):
        info = graph.info(commit)
        if (info.tree, info.message, info.author, info.author_time) in rewritten:
            break
        if anchors and any(graph.is_ancestor(commit, anchor) for anchor in anchors):
            break
        if not anchors and info.commit_time <= cut_time:
            break
        local.append(commit)
    return local


def resync(
    ts: Toolstack,
    remote: str = "origin",
    url: str | None = None,
    reconcile: bool = True,
    confirm: Confirm = True,
    placed_only: bool = False,
) -> ResyncResult:
    """Resynchronise main with a remote whose history ``toolstack gc`` rewrote.

    ``placed_only``: reconcile only the VMs placed on this host (an agent's share of the pool).

    Keeps the old main under ``refs/resync/<time>-<old head>`` (nothing is lost, and ``toolstack rollback
    <commit> --vm NAME`` re-applies a VM from any of its commits), reports the commits of ours that the squash
    did not fold in (:func:`local_only_commits`), points main at the remote's main, and reconciles. Refs only:
    it works on the bare state repository. If the remote's main was not rewritten, it is an ordinary pull.

    Raises:
        ToolstackError: an operation is in progress, the remote has no main, or its history is unrelated to
            ours without being a gc squash (resync will not replace main by a stranger's).
        DestructivePlanRefused: the reconcile would stop or undefine domains and ``confirm`` did not say yes
            (main is resynced; the hypervisor is left as it was).
    """
    store = ts.store
    busy = store.backend.list_refs(f"refs/heads/{layout.LOCK_PREFIX}/")
    if busy:
        raise ToolstackError(
            f"{len(busy)} operation(s) in progress: resync when no VM is busy", operation="resync"
        )
    link = store.remote(remote, url)
    previous, incoming = _fetch(store, link)
    head = ts.main.head
    if incoming is None:
        raise ToolstackError(f"{remote} has no {layout.MAIN} to resync with", operation="resync")
    graph = store.graph
    if head is None or graph.merge_bases(head, incoming):
        result = pull(ts, remote, reconcile=reconcile, confirm=confirm, placed_only=placed_only)
        return ResyncResult(before=result.before, after=result.after, plan=result.plan, pull=result)
    marker = squash_marker(store, root_of(store, incoming))
    if marker is None:
        raise ToolstackError(
            f"{remote}/{layout.MAIN} shares no history with {layout.MAIN} and is not a history rewritten by "
            "gc: refusing to replace main by it",
            operation="resync",
        )
    local = local_only_commits(store, head, incoming, marker, previous)
    kept = f"{RESYNC_PREFIX}/{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{head[:8]}"
    if not store.backend.compare_and_swap(kept, None, head):
        raise ToolstackError(f"{kept} exists already: run resync again", operation="resync")
    if not store.backend.compare_and_swap(store.ref_name(layout.MAIN), head, incoming):
        raise ToolstackError("main moved during the resync: run it again", operation="resync")
    store.notify(store.ref_name(layout.MAIN))
    result = ResyncResult(before=head, after=incoming, kept=kept)
    for commit in local:
        info = graph.info(commit)
        subject = info.message.splitlines()[0] if info.message else ""
        result.local_only.append({"commit": commit, "author": info.author, "message": subject})
    if reconcile:
        result.plan = _reconcile(ts, confirm, placed_only)
    return result
