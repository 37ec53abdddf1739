"""History squash: replace a branch's older history by one root commit, keeping the old history archived.

The commits after the squash point are rewritten along the branch's first-parent chain (same trees,
messages, authors and dates), so the branch's content and its recent log are unchanged; the old history is
kept under ``refs/archive/<branch>/<time>`` until :func:`prune_archives` drops it, after which `git gc`
reclaims the space. Readers resuming from a squashed commit get ``HistoryLost``.

The new root commit carries trailers that mark it as a squash wherever the branch travels (a peer fetching the
rewritten branch has nothing else to go by: archive refs stay where the squash ran)::

    Squashed-by: toolstack gc
    Squash-point: <the commit squashed up to, whose tree the root holds>
    Squash-old-head: <the branch's head before the squash>
    Squash-archive: refs/archive/<branch>/<time>-<old head>
    Squashed-at: <UTC time of the squash>

:func:`squash_marker` reads them back. Each rewritten commit keeps its original's tree, message, author and
author date, so :func:`rewritten_commit` can tell which new commit an old one became by content alone, on
any host that holds the old commit (no map has to travel with the branch).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.errors import StoreError, UnknownCommit
from store.objects import COMMIT, CommitInfo, ObjectId, encode_commit, object_id

if TYPE_CHECKING:
    from store.store import Store


@dataclass(frozen=True)
class SquashResult:
    """Attributes:
    old_head: The branch head before.
    new_head: The rewritten head.
    root: The new root commit (the squash point's tree).
    archive: The ref that keeps the old history.
    rewritten: How many commits after the squash point were rewritten.
    """

    old_head: str
    new_head: str
    root: str
    archive: str
    rewritten: int


@dataclass(frozen=True)
class SquashMarker:
    """What a squash's root commit says about it (its trailers).

    Attributes:
        root: The squash's root commit.
        point: The commit squashed up to (its tree is the root's).
        old_head: The branch's head before the squash (the archive ref's target where the squash ran).
        archive: The archive ref the squash wrote on the host that ran it.
        at: When the squash ran ("YYYY-MM-DD HH:MM:SS UTC").
        by: What ran it ("toolstack gc", or the caller of :func:`squash`).
    """

    root: str
    point: str
    old_head: str
    archive: str
    at: str
    by: str


def _trailers(message: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in message.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and " " not in key:
            found[key.lower()] = value.strip()
    return found


def squash_marker(store: Store, commit: str) -> SquashMarker | None:
    """The squash marker of ``commit`` if it is the root commit a squash wrote, else None."""
    graph = store.graph
    if graph.parents(commit):
        return None
    found = _trailers(graph.info(commit).message)
    if "squash-point" not in found:
        return None
    return SquashMarker(
        root=commit,
        point=found["squash-point"],
        old_head=found.get("squash-old-head", ""),
        archive=found.get("squash-archive", ""),
        at=found.get("squashed-at", ""),
        by=found.get("squashed-by", ""),
    )


def root_of(store: Store, head: str) -> str:
    """The root commit at the end of ``head``'s first-parent chain."""
    *_, root = store.graph.first_parent_chain(head)
    return root


def _same_content(a: CommitInfo, b: CommitInfo) -> bool:
    """Whether ``b`` is a squash's rewrite of ``a`` (or ``a`` itself): what a rewrite keeps is equal."""
    return (a.tree, a.message, a.author, a.author_time) == (b.tree, b.message, b.author, b.author_time)


def rewritten_commit(store: Store, head: str, old: str) -> str | None:
    """The commit on ``head``'s first-parent chain that the squash of that chain made of ``old``, if any.

    A squash rewrites the commits after its point with the same tree, message, author and author date, and
    folds the point (and everything before it) into its root: so ``old`` maps to the chain's commit with
    its content, or to the root if ``old`` is the squash point; anything older was cut away (None). Only
    first-parent commits of the squashed branch were rewritten: a commit that was only ever on a side
    branch (a task branch, another host's unpushed work) was folded into a merge and maps to nothing.
    Several squashes in a row keep the same content too, so a commit from before all of them still maps.

    Returns:
        The new commit, or None (``old`` is unknown here, was cut away, or was never on the chain).
    """
    graph = store.graph
    if not graph.exists(old):
        return None
    wanted = graph.info(old)
    chain = list(graph.first_parent_chain(head))
    matches = [commit for commit in chain if _same_content(wanted, graph.info(commit))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        return None  # two commits alike in everything (never made by the toolstack): do not guess
    marker = squash_marker(store, chain[-1])
    if marker is not None and marker.point == old:
        return chain[-1]
    return None


def find_before(store: Store, branch: str, before: str | float) -> str:
    """The squash point: a revision, or (a timestamp) the newest first-parent commit older than it."""
    head = store.branch(branch).head
    if head is None:
        raise StoreError(f"branch {branch!r} is empty")
    if isinstance(before, str):
        return store.resolve(before)
    for commit in store.graph.first_parent_chain(head):
        if store.graph.time(commit) < before:
            return commit
    raise UnknownCommit(str(before), f"no commit on {branch} is older than that")


def squash(
    store: Store, before: str, branch: str = "main", repack: bool = True, by: str = "store.squash"
) -> SquashResult:
    """Squash ``branch``'s history up to and including commit ``before`` into a new root commit.

    Args:
        by: Who squashes, recorded in the root's ``Squashed-by`` trailer (``toolstack gc`` says so).
    """
    ref = store.ref_name(branch)
    graph = store.graph
    repo = store.repo
    with repo.locked(ref):
        head = repo.read_ref(ref)
        if head is None:
            raise StoreError(f"branch {branch!r} is empty")
        chain = list(graph.first_parent_chain(head, stop=before))
        if chain and graph.parents(chain[-1])[:1] != (before,):
            raise StoreError(f"{before[:12]} is not on {branch}'s first-parent history")
        objects: list[tuple[ObjectId, int, bytes]] = []
        info = graph.info(before)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.commit_time))
        now = time.time()
        archive = f"refs/archive/{branch}/{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{head[:8]}"
        message = (
            f"Squashed history up to {before[:12]} ({when} UTC)\n\n"
            f"The older history is archived under refs/archive/{branch}/.\n\n"
            f"Squashed-by: {by}\n"
            f"Squash-point: {before}\n"
            f"Squash-old-head: {head}\n"
            f"Squash-archive: {archive}\n"
            f"Squashed-at: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC\n"
        )
        raw = encode_commit(
            graph.tree_of(before) or b"", [], info.author, info.committer, message, timestamp=info.commit_time
        )
        previous = object_id(COMMIT, raw)
        root = previous.decode()
        objects.append((previous, COMMIT, raw))
        for commit in reversed(chain):
            old = graph.info(commit)
            raw = encode_commit(
                old.tree,
                [previous.decode()],
                old.author,
                old.committer,
                old.message,
                timestamp=old.author_time,
            )
            previous = object_id(COMMIT, raw)
            objects.append((previous, COMMIT, raw))
        new_head = previous.decode()
        # The old history stays reachable (from the archive ref) before the branch lets go of it.
        if not repo.publish(archive, None, head, objects):
            raise StoreError(f"archive ref {archive} exists already")
        if not repo.publish(ref, head, new_head):
            raise StoreError(f"branch {branch!r} moved during the squash")  # cannot happen under the lease
    if repack and store.gitdir is not None:
        subprocess.run(["git", "-C", store.gitdir, "repack", "-adq"], check=True, capture_output=True)
        repo.objects.refresh()
    return SquashResult(head, new_head, root, archive, len(chain))


def prune_archives(store: Store, gc: bool = True) -> list[str]:
    """Delete every archive ref (the squashed history becomes unreachable), then let `git gc` reclaim it."""
    archives = store.repo.list_refs("refs/archive/")
    for ref, commit in archives.items():
        store.repo.publish(ref, commit, None)
    if gc and store.gitdir is not None:
        subprocess.run(
            ["git", "-C", store.gitdir, "gc", "-q", "--prune=now"], check=True, capture_output=True
        )
        store.repo.objects.refresh()
    return sorted(archives)
