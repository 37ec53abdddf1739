"""Sync with other hosts and with operators' clones through any git server (GitOps): pull and push.

``pull`` fetches the remote's main and merges it. Every VM the merge changed is validated, and an invalid edit
is reverted to the VM's last valid version (:mod:`toolstack.gitops`). Then the hypervisor is reconciled.

Two guards keep a host from spreading damage through the pool:

- **No removal nobody asked for.** Before any push (``pull --push``, ``push``, the agent), the push guard
  (:func:`toolstack.gitops.unrequested_removals`) refuses to delete VMs nobody asked to delete.
- **Rewritten history is not merged.** After ``toolstack gc`` and a forced push, the remote's main shares no
  history with ours (nor does ours with the remote's after a gc here whose forced push lost its lease);
  merging two unrelated histories would resurrect squashed state, and the store refuses it. ``pull``
  recognises the rewrite (:func:`rewritten`: one pool's record on both sides, or the squash's trailers,
  :func:`store.squash.squash_marker`), changes nothing, and names the command that resynchronises:
  :func:`toolstack.resync.resync` (``toolstack pull --resync``). Another pool's history is refused too,
  naming what to check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from store import Conflict, NonFastForward, UnrelatedHistories
from store.squash import SquashMarker, root_of, squash_marker
from toolstack import layout
from toolstack.errors import (
    DestructivePlanRefused,
    HistoriesUnrelated,
    HistoryRewritten,
    Rejection,
    ToolstackError,
)
from toolstack.gitops import _guarded_push, _revert_invalid, pull_message, take_their_repairs
from toolstack.history import changed_vms
from toolstack.plan import Confirm, Plan
from toolstack.pool import Pool, read_pool

if TYPE_CHECKING:
    from store import Remote, Store
    from toolstack.ops import Toolstack


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
        reconcile_seconds: The time its reconciles took (0 if none ran).
    """

    before: str | None
    after: str | None
    changed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    plan: Plan | None = None
    pushed: bool = False
    reconcile_seconds: float = 0.0

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


# -- rewritten history ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rewrite:
    """Why main here and the remote's main, histories of one pool, share no commit.

    Attributes:
        marker: The gc squash that rewrote one of them (None: rewritten, but not by gc).
        here: The squash rewrote main here (a gc whose forced push never landed), not the remote's main.
    """

    marker: SquashMarker | None
    here: bool = False


@dataclass
class PoolRecords:
    """The pool records of main here and of the remote's main, read when first asked and then kept: telling
    a rewritten history from another pool's, and saying why a merge was refused, both go by them.

    Attributes:
        store: The repository holding both.
        head: Main here.
        incoming: The remote's main.
    """

    store: Store
    head: str
    incoming: str

    @cached_property
    def records(self) -> tuple[Pool, Pool] | None:
        """Both records (here, theirs); None when either commit holds none (or a broken one)."""
        try:
            ours, theirs = (
                read_pool(self.store.tree_at(self.head)),
                read_pool(self.store.tree_at(self.incoming)),
            )
        except ToolstackError:
            return None
        return None if ours is None or theirs is None else (ours, theirs)

    @property
    def same(self) -> bool | None:
        """Whether the two commits hold the same pool's record; None when either holds none."""
        return None if self.records is None else self.records[0].id == self.records[1].id


def rewritten(pools: PoolRecords, previous: str | None) -> Rewrite | None:
    """What rewrote the history of main here or of the remote's main, when they share no commit; else None.

    Two histories with no common commit are one pool's rewritten when both hold its record (a clone shares the
    pool's root, so nothing else makes them so). Without records, the remote's main was rewritten by gc when
    its root is a squash's root and we had shared history with the remote before: our last view of its main
    (the tracking ref before this fetch) is not in its history now, or we hold the squash point; main here
    was, when its root is a squash's whose point the remote holds. The tracking ref alone cannot tell: a
    fetch that did not merge (``push``, a pull or resync killed after its fetch) moves it onto the rewritten
    main, and a host need not hold the point (a commit it never fetched). A fresh host shares nothing with
    the pool either, but has no such past: its first pull is an ordinary merge.
    """
    store, head, incoming = pools.store, pools.head, pools.incoming
    graph = store.graph
    if graph.merge_bases(head, incoming):
        return None
    pool = pools.same
    if pool is False:
        return None  # two pools: never one history
    theirs = squash_marker(store, root_of(store, incoming))
    if theirs is not None and (
        pool
        or (previous is not None and graph.exists(previous) and not graph.is_ancestor(previous, incoming))
        or (graph.exists(theirs.point) and graph.is_ancestor(theirs.point, head))
    ):
        return Rewrite(theirs)
    ours = squash_marker(store, root_of(store, head))
    if ours is not None and (pool or (graph.exists(ours.point) and graph.is_ancestor(ours.point, incoming))):
        return Rewrite(ours, here=True)
    return Rewrite(None) if pool else None


def unrelated(ts: Toolstack, remote: str, pools: PoolRecords) -> HistoriesUnrelated:
    """The refusal to merge unrelated histories that are not this pool's rewritten one, naming the fix."""
    store, incoming = ts.store, pools.incoming
    if pools.records is not None and pools.same is False:
        ours, theirs = pools.records
        return HistoriesUnrelated(
            remote,
            incoming,
            f"it is the history of another pool ({theirs.name}, {theirs.id}), not of this one "
            f"({ours.name}, {ours.id})",
            f"check {remote}'s URL (`git -C {store.path or '.'} remote get-url {remote}`)",
        )
    if squash_marker(store, root_of(store, incoming)) is not None:
        return HistoriesUnrelated(
            remote,
            incoming,
            "it was rewritten by gc, and without a pool record on both sides nothing tells whether it is "
            "this pool's",
            f"if {remote} is this pool's server, take its main with `{resync_command(ts, remote)}`",
        )
    return HistoriesUnrelated(
        remote,
        incoming,
        "without a pool record on both sides, nothing tells whether it is this pool's",
        f"if {remote} is this pool's server, compare the two histories and reset main to {remote}/main by "
        "hand (README: History squash)",
    )


def resync_command(ts: Toolstack, remote: str) -> str:
    """The command that resynchronises this host's repository with ``remote`` after a gc."""
    where = f" --repo {ts.store.path}" if ts.store.path else ""
    which = f" --remote {remote}" if remote != "origin" else ""
    return f"toolstack{where} pull --resync{which}"


def _fetch(store: Store, link: Remote) -> tuple[str | None, str | None]:
    """(our previous view of the remote's main, its main now) around one fetch."""
    previous = store.branch(link.tracking_ref(layout.MAIN)).head
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
        HistoryRewritten: main here and the remote's main are this pool's histories, one rewritten (by gc);
            nothing moves (run :func:`toolstack.resync.resync`).
        HistoriesUnrelated: the remote's main shares no commit with ours and is not this pool's rewritten
            history (another pool's); nothing moves.
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
            pools = PoolRecords(store, head, incoming)
            rewrite = rewritten(pools, previous)
            if rewrite is not None:
                # Leave everything as it was, the tracking ref included, so that resync (and the next pull)
                # still know what we had seen of the remote before its rewrite.
                store.test_and_set(link.tracking_ref(layout.MAIN), incoming, previous)
                marker = rewrite.marker
                raise HistoryRewritten(
                    remote,
                    incoming,
                    marker.root if marker else None,
                    marker.at if marker else "",
                    resync_command(ts, remote),
                    here=rewrite.here,
                )
            try:
                merged = store.merge(
                    incoming,
                    into=layout.MAIN,
                    author=ts.author,
                    message=pull_message(store, remote, head, incoming),
                )
            except UnrelatedHistories:
                raise unrelated(ts, remote, pools) from None
            except Conflict as conflict:
                if head is None or not take_their_repairs(ts, remote, head, incoming, conflict):
                    raise
                continue  # main now agrees with the remote on those paths: merge again
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
            started = time.monotonic()
            result.plan = _reconcile(ts, confirm, placed_only=placed_only, rejections=result.rejections)
            result.reconcile_seconds += time.monotonic() - started
        if not push:
            break
        if ts.main.head == store.branch(link.tracking_ref(layout.MAIN)).head:
            break  # the remote has it all already
        try:
            _guarded_push(ts, link, incoming)
            result.pushed = True
            break
        except NonFastForward:
            continue  # someone pushed meanwhile: fetch and merge again
    result.after = ts.main.head
    return result


def _reconcile(
    ts: Toolstack, confirm: Confirm, placed_only: bool = False, rejections: list[Rejection] | None = None
) -> Plan:
    """Reconcile after main moved under a sync; a refused destructive plan says that main moved anyway, and
    names the invalid edits the merge reverted (the refusal's exit code would hide them otherwise)."""
    try:
        return ts.reconcile(placed_only=placed_only, confirm=confirm)
    except DestructivePlanRefused as err:
        reverted = (
            f"; {len(rejections)} invalid edit(s) reverted: " + "; ".join(r.describe() for r in rejections)
            if rejections
            else ""
        )
        raise DestructivePlanRefused(
            err.plan,
            "reconcile after the pull",
            declined=err.declined,
            note=f"main was updated (now {(ts.main.head or '-')[:12]}) but the hypervisor was left as it was "
            f"and nothing was pushed: `toolstack reconcile --yes` applies it{reverted}",
            rejections=rejections,
        ) from None


def push(ts: Toolstack, remote: str = "origin", url: str | None = None, force: bool = False) -> str:
    """Publish main to ``remote``.

    Without ``force``, the remote's main is fetched first and the push is refused if it would delete VMs
    that nobody asked to delete (:func:`unrequested_removals`) or discard the remote's commits. ``force``
    replaces the remote's main (the operator's explicit choice, e.g. after ``gc``), but only if it is still
    what this repository last saw of it (a lease, as ``git push --force-with-lease``): commits someone pushed
    since then, acknowledged operations among them, are never discarded.

    Raises:
        UnrequestedRemoval: the push would delete VMs that no operation deleted here.
        NonFastForward: the remote has commits main lacks; or, forced, the remote's main moved since it was
            last fetched.
    """
    link = ts.store.remote(remote, url)
    if force:
        seen = ts.store.branch(link.tracking_ref(layout.MAIN)).head
        return link.push(layout.MAIN, force=True, expect=seen)
    _, remote_head = _fetch(ts.store, link)
    return _guarded_push(ts, link, remote_head)
