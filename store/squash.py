"""History squash: replace a branch's older history by one root commit, keeping the old history archived.

The commits after the squash point are rewritten along the branch's first-parent chain (same trees,
messages, authors and dates), so the branch's content and its recent log are unchanged; the old history is
kept under ``refs/archive/<branch>/<time>`` until :func:`prune_archives` drops it, after which `git gc`
reclaims the space. Readers resuming from a squashed commit get ``HistoryLost``.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.errors import StoreError, UnknownCommit
from store.objects import COMMIT, ObjectId, encode_commit, object_id

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


def squash(store: Store, before: str, branch: str = "main", repack: bool = True) -> SquashResult:
    """Squash ``branch``'s history up to and including commit ``before`` into a new root commit."""
    ref = store.ref_name(branch)
    graph = store.graph
    with store.backend.locked(ref):
        head = store.backend.read_ref(ref)
        if head is None:
            raise StoreError(f"branch {branch!r} is empty")
        chain = list(graph.first_parent_chain(head, stop=before))
        if chain and graph.parents(chain[-1])[:1] != (before,):
            raise StoreError(f"{before[:12]} is not on {branch}'s first-parent history")
        objects: list[tuple[ObjectId, int, bytes]] = []
        info = graph.info(before)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.commit_time))
        message = (
            f"Squashed history up to {before[:12]} ({when} UTC)\n\n"
            f"The older history is archived under refs/archive/{branch}/.\n"
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
        store.backend.write_objects(objects)
        archive = f"refs/archive/{branch}/{time.strftime('%Y%m%dT%H%M%S')}-{head[:8]}"
        if not store.backend.compare_and_swap(archive, None, head):
            raise StoreError(f"archive ref {archive} exists already")
        if not store.backend.compare_and_swap(ref, head, new_head):
            raise StoreError(f"branch {branch!r} moved during the squash")  # cannot happen under the lease
    store.notify(ref)
    if repack and store.gitdir is not None:
        subprocess.run(["git", "-C", store.gitdir, "repack", "-adq"], check=True, capture_output=True)
        store.backend.refresh()
    return SquashResult(head, new_head, root, archive, len(chain))


def prune_archives(store: Store, gc: bool = True) -> list[str]:
    """Delete every archive ref (the squashed history becomes unreachable), then let `git gc` reclaim it."""
    archives = store.backend.list_refs("refs/archive/")
    for ref, commit in archives.items():
        store.backend.compare_and_swap(ref, commit, None)
    if gc and store.gitdir is not None:
        subprocess.run(
            ["git", "-C", store.gitdir, "gc", "-q", "--prune=now"], check=True, capture_output=True
        )
        store.backend.refresh()
    return sorted(archives)
