"""Resynchronise with a remote whose history ``toolstack gc`` rewrote, or whose main went on without the
gc that rewrote main here (``toolstack pull --resync``).

``pull`` (:mod:`toolstack.sync`) detects the rewrite and changes nothing; :func:`resync` keeps the old main
under ``refs/resync/``, reports the commits of ours that the squash did not fold in
(:func:`local_only_commits`), points main at the remote's main, and reconciles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from store.squash import SquashMarker, root_of, squash_marker
from toolstack import layout
from toolstack.claims import Claims
from toolstack.errors import ToolstackError
from toolstack.plan import Confirm, Plan
from toolstack.sync import PoolRecords, PullResult, Rewrite, _fetch, _reconcile, pull, rewritten, unrelated

if TYPE_CHECKING:
    from store import Store
    from toolstack.ops import Toolstack

RESYNC_PREFIX = "refs/resync"


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
    store: Store,
    head: str,
    incoming: str,
    marker: SquashMarker | None,
    previous: str | None,
    here: bool = False,
) -> list[str]:
    """The commits on ``head``'s first-parent chain that the remote's main does not hold, newest first: those
    the squash behind ``incoming`` did not fold in or, with ``here``, those the squash of main here rewrote
    or made that never reached the remote.

    The rule: a commit is held if the remote's old history holds it, which is known from whichever of
    these this host has: it is an ancestor of the squash's old head or of its squash point (both named by
    the squash's root commit), or of our last view of the remote's main before the rewrite (the tracking
    ref, which a detecting pull leaves as it was); or the new main holds a commit with its tree, message,
    author and author date (the squash keeps them, so a commit of ours that reached the remote's first-parent
    chain after our last fetch is recognised without its old id). The ancestors of a held commit are held
    too, so the walk stops at the first one. When this host holds none of those anchors (it never saw the
    remote's old history), commits as old as the squash point are taken as held. With ``here``, the remote's
    main itself is the old history, and the root of ours is held when the remote holds its squash point.
    """
    graph = store.graph
    olds: list[str | None] = [incoming, previous]  # with ``here``, the remote's main is the old history
    if not here:
        olds = [c for c in ([marker.old_head, marker.point] if marker else []) + [previous] if c != incoming]
    anchors = [c for c in olds if c and graph.exists(c)]
    rewritten = {
        (info.tree, info.message, info.author, info.author_time)
        for info in map(graph.info, graph.first_parent_chain(incoming))
    }
    cut_time = graph.time(marker.root) if marker and not here else None
    local: list[str] = []
    for commit in graph.first_parent_chain(head):
        info = graph.info(commit)
        if (info.tree, info.message, info.author, info.author_time) in rewritten:
            break
        if anchors and any(graph.is_ancestor(commit, anchor) for anchor in anchors):
            break
        if not anchors and cut_time is not None and info.commit_time <= cut_time:
            break
        root = squash_marker(store, commit) if not info.parents else None
        if root and graph.exists(root.point) and any(graph.is_ancestor(root.point, a) for a in anchors):
            break  # a squash here of what the remote holds: nothing of ours
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
            ours without being this pool's rewritten (resync will not replace main by a stranger's).
        DestructivePlanRefused: the reconcile would stop or undefine domains and ``confirm`` did not say yes
            (main is resynced; the hypervisor is left as it was).
    """
    store = ts.store
    busy = Claims(store).busy()
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
    pools = PoolRecords(store, head, incoming)
    rewrite = rewritten(pools, previous)
    if rewrite is None and pools.same is None:
        # No pool record to go by: a history rewritten by gc is still recognised by its squash's root.
        marker = squash_marker(store, root_of(store, incoming))
        rewrite = Rewrite(marker) if marker is not None else None
    if rewrite is None:
        raise ToolstackError(
            f"{remote}/{layout.MAIN} shares no history with {layout.MAIN} and is not this pool's history "
            f"rewritten: refusing to replace main by it ({unrelated(ts, remote, pools).why})",
            operation="resync",
        )
    local = local_only_commits(store, head, incoming, rewrite.marker, previous, here=rewrite.here)
    kept = f"{RESYNC_PREFIX}/{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{head[:8]}"
    if not store.test_and_set(kept, None, head):
        raise ToolstackError(f"{kept} exists already: run resync again", operation="resync")
    if not store.test_and_set(store.ref_name(layout.MAIN), head, incoming):
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
