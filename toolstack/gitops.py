"""GitOps validation of what a pull brings in, reverts of invalid edits, and the push guard.

Every VM a merge changed is validated with the same models as the CLI (:func:`invalid_vms`). An invalid
edit is never applied and never deletes anything: a revert commit that names the error puts back the VM's
newest valid version from history (see :func:`last_valid`); only a VM that never validated anywhere in
history is left out, and the revert says so (nothing is lost: the edit stays in history, and the revert is
pushed back for its author to see).

**No removal nobody asked for.** Before any push (``pull --push``, ``push``, the agent),
:func:`unrequested_removals` checks every VM the remote's main holds and ours lacks: the commit that dropped
it here must be a deletion someone asked for, or nothing is pushed (:class:`UnrequestedRemoval`).

Used by :mod:`toolstack.sync`, which fetches, merges and pushes.
"""

from __future__ import annotations

import heapq
import json
import re
from typing import TYPE_CHECKING

from store import Conflict, Tree
from store.paths import parse
from toolstack import layout, messages
from toolstack.errors import InvalidInput, Rejection, UnrequestedRemoval
from toolstack.models import Task, read_vm

if TYPE_CHECKING:
    from store import Remote, Store
    from toolstack.ops import Toolstack

REVERT_SUBJECT = "gitops: reverted an invalid edit"
LEFT_OUT_TRAILER = "Gitops-left-out"  # on a revert commit: a VM that never validated, left out on purpose
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    with ts.main.transaction(message=message, author=ts.author, base=merged) as tx:
        for rejection in rejections:
            tx.subtree(layout.vm_dir(rejection.uuid))
            good = rejection.restored_from
            tx.tree = _restore(tx.tree, store.tree_at(good) if good else store.tree_at(None), rejection.uuid)
    return rejections


# -- who made the edits a pull takes -------------------------------------------------------------------------
INCOMING_WALK = 500  # incoming commits read for their authors; a longer history is a joining host's


def pull_message(store: Store, remote: str, head: str | None, incoming: str) -> str:
    """The message of a pull's merge: the VMs the incoming commits changed and, for each, the authors of
    those commits (``Edited-by`` trailers): a GitOps edit is by whoever pushed it, not by who pulled it."""
    edits: dict[str, tuple[str, list[str]]] = {}
    graph = store.graph
    bases = graph.merge_bases(head, incoming) if head is not None else []
    if bases:
        for n, commit in enumerate(graph.walk([incoming])):
            if n >= INCOMING_WALK or any(graph.is_ancestor(commit, base) for base in bases):
                break
            info = graph.info(commit)
            if len(info.parents) != 1:
                continue  # a merge's changes are its parents'
            old, new = store.tree_at(info.parents[0]), store.tree_at(commit)
            for uuid in sorted(layout.changed_vm_uuids(old.subtree(layout.VMS), new.subtree(layout.VMS))):
                name, authors = edits.get(uuid, ("", []))
                if not name:
                    raw = store.tree_at(incoming).get(layout.config_path(uuid)) or old.get(
                        layout.config_path(uuid)
                    )
                    try:
                        name = str(json.loads(raw or b"{}").get("name", ""))
                    except (ValueError, AttributeError):
                        name = ""
                if info.author not in authors:
                    authors.append(info.author)
                edits[uuid] = (name, authors)
    return messages.pull_message(remote, layout.MAIN, edits)


# -- the push guard ------------------------------------------------------------------------------------------
def take_their_repairs(ts: Toolstack, remote: str, head: str, incoming: str, conflict: Conflict) -> bool:
    """Settle a pull's conflict that is only about repairs of one invalid edit: take the remote's.

    A host reverts an invalid edit on its own main; until it pushes, the pool may repair the same edit
    otherwise (another host's revert, then a valid edit). Both sides then changed the invalid value, and the
    3-way merge against it conflicts on every pull, for good. When every conflicting path belongs to a VM
    that was invalid at the merge base, the pool's repair wins: it is committed on main (so the next merge
    is clean), and the merged result is validated as any pull's is.

    Returns:
        Whether the conflict was settled so (False: it is a real conflict, left to the caller).
    """
    uuids: set[str] = set()
    for entry in conflict.conflicts:
        split = layout.split_vm_path(entry.path)
        if split is None:
            return False
        uuids.add(split[0])
    base = ts.store.merge_base_tree(head, incoming)
    if set(invalid_vms(base, sorted(uuids))) != uuids:
        return False
    theirs = ts.store.tree_at(incoming)
    paths = sorted(entry.path for entry in conflict.conflicts)
    if any(theirs.kind(path) == "directory" for path in paths):
        return False  # a file against a directory: not a repair of one value, left to the caller
    message = (
        f"gitops: took {remote}'s repair of an invalid edit of {', '.join(sorted(uuids))} over this host's "
        "own revert\n\n" + "\n".join(paths) + "\n"
    )
    with ts.main.transaction(message=message, author=ts.author, base=head) as tx:
        for path in paths:
            value = theirs.get(path)
            if value is None:
                tx.remove(path)
            else:
                tx.set(path, value)
    return True


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
