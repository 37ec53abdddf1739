"""The repository core: a backend's objects and refs, the commit graph, and the one publish path.

:class:`~store.store.Store` is the front that users hold (as Irmin keeps ``Store`` apart from ``Repo``).
Everything that moves a ref goes through :meth:`Repository.publish`: write the objects the new value needs
(durable, in one pack shared with concurrent writers), then compare-and-swap the ref, then wake in-process
watchers. Transactions and merges, which fold onto whatever the head is when they land, are queued on the
ref's :class:`~store.publish.Publisher` (group commit), which publishes through it; the history squash, the
xenstored journal and plain ref moves (forks, resets, tracking refs) call it directly.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager

from dulwich.refs import check_ref_format

from store.backend import Backend, ObjectCache
from store.errors import Conflict, StoreError, UnrelatedHistories
from store.history import CommitGraph
from store.merge import Schema, merge_trees
from store.objects import normalise_identity
from store.publish import DEFAULT_RETRIES, Folded, Publisher, RawObject, Update, commit_objects
from store.tree import Tree
from store.watch import Watcher


@functools.lru_cache(maxsize=4096)
def _valid_ref(ref: str) -> str | None:
    """``ref`` if git's ref-name rules allow it, else None (cached: every branch access names its ref)."""
    if not check_ref_format(ref.encode("utf-8")) or any(len(p.encode()) > 200 for p in ref.split("/")):
        return None
    return ref


def ref_name(branch: str) -> str:
    """``refs/heads/<branch>`` (a name starting with "refs/" is kept), validated with git's ref-name rules.

    Raises:
        ValueError: not a valid branch or ref name.
    """
    if not isinstance(branch, str) or not branch:
        raise ValueError(f"invalid branch name {branch!r}")
    ref = _valid_ref(branch if branch.startswith("refs/") else f"refs/heads/{branch}")
    if ref is None:
        raise ValueError(f"invalid branch name {branch!r}")
    return ref


class Repository:
    """Objects, refs, commits and trees of one repository, and the path that publishes changes to them.

    Args:
        backend: Where objects and refs live.

    Attributes:
        backend: The storage. Writes go through its methods (where tests inject faults); reads go straight
            to its object and ref stores, which saves a call on every read.
        objects: The object store, for readers (trees, history, remotes).
        graph: The commit graph.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.objects = backend.objects
        self._refs = backend.refs
        self.graph = CommitGraph(backend.objects)
        self._trees = ObjectCache(64)
        self._publishers: dict[str, Publisher] = {}
        self._publishers_mutex = threading.Lock()
        self._watcher: Watcher | None = None

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self.backend.close()

    # -- refs ----------------------------------------------------------------------------------------------
    def read_ref(self, ref: str) -> str | None:
        """The commit a ref points to, or None."""
        return self._refs.read_ref(ref)

    def list_refs(self, prefix: str) -> dict[str, str]:
        """Every ref under the directory ``prefix`` ("refs/heads/vm-task/") with its commit."""
        return self.backend.list_refs(prefix)

    def locked(self, ref: str) -> AbstractContextManager[None]:
        """Keep every writer of this library off ``ref`` while held (see :meth:`RefStore.locked`)."""
        return self.backend.locked(ref)

    @property
    def default_branch(self) -> str:
        """The branch HEAD names ("main" for repositories this store creates; "master" after `git init`)."""
        head = self.backend.symbolic_head()
        if head and head.startswith("refs/heads/"):
            return head[len("refs/heads/") :]
        return "main"

    # -- trees ---------------------------------------------------------------------------------------------
    def tree_at(self, commit_id: str | None) -> Tree:
        """The tree of a commit (the empty tree for None), cached for recent heads."""
        if commit_id is None:
            return Tree.empty(self.objects)
        tree = self._trees.get(commit_id)
        if not isinstance(tree, Tree):
            tree = Tree.of(self.objects, self.graph.tree_of(commit_id))
            self.remember_tree(commit_id, tree)
        return tree

    def remember_tree(self, commit_id: str, tree: Tree) -> None:
        self._trees.put(commit_id, tree)

    def changed_paths(self, commit_id: str) -> list[str]:
        """Paths a commit changed against its first parent (all paths for a root commit)."""
        parents = self.graph.parents(commit_id)
        old = self.tree_at(parents[0] if parents else None)
        return [change.path for change in old.diff(self.tree_at(commit_id))]

    # -- publishing ----------------------------------------------------------------------------------------
    def publish(
        self,
        ref: str,
        old: str | None,
        new: str | None,
        objects: Sequence[RawObject] = (),
        *,
        sync: bool = True,
    ) -> bool:
        """Write ``objects``, then move ``ref`` from ``old`` to ``new`` (None: absent), then wake watchers.

        The one way this library moves a ref: the objects it will name are durable before it names them.

        Args:
            sync: Make the ref's move durable before returning (see :meth:`RefStore.compare_and_swap`).

        Returns:
            True if ``ref`` was at ``old`` and is now at ``new``; False if it was not at ``old`` (the objects
            are written all the same: a caller that folds again need not write them again).
        """
        if objects:
            self.backend.write_objects(objects)
        if not self.backend.compare_and_swap(ref, old, new, sync=sync):
            return False
        self.notify(ref)
        return True

    def write(self, objects: Sequence[RawObject]) -> None:
        """Make ``objects`` durable without moving a ref (as :meth:`publish` does first)."""
        if objects:
            self.backend.write_objects(objects)

    def set_ref(self, ref: str, new: str | None, attempts: int = 1) -> bool:
        """Point ``ref`` at ``new`` whatever it points at now (a remote-tracking or an audit ref): read it,
        then compare-and-swap, up to ``attempts`` times. Returns whether it was set."""
        return any(self.publish(ref, self.read_ref(ref), new) for _ in range(attempts))

    def submit(self, ref: str, update: Update) -> str | None:
        """Publish ``update`` on ``ref`` with group commit (see :mod:`store.publish`); returns the head."""
        with self._publishers_mutex:
            publisher = self._publishers.get(ref)
            if publisher is None:
                publisher = self._publishers[ref] = Publisher(self, ref)
        return publisher.submit(update)

    def write_commit(self, tree: Tree, parents: list[str], message: str, author: str | None = None) -> str:
        """Write ``tree`` and a commit of it on ``parents`` (durably); returns the commit. No ref moves."""
        commit_id, objects = commit_objects(tree, parents, normalise_identity(author), message)
        self.write(objects)
        tree.mark_stored()
        self.remember_tree(commit_id, tree)
        return commit_id

    # -- merging -------------------------------------------------------------------------------------------
    def merge_base_tree(self, a: str, b: str, schema: Schema, depth: int = 0) -> Tree:
        """The tree to merge ``a`` and ``b`` against: their lowest common ancestor's, or, in criss-cross
        histories with several, the recursive merge of those (as git's recursive strategy does).

        Raises:
            Conflict: the common ancestors themselves do not merge cleanly.
        """
        return self.base_tree(self.graph.merge_bases(a, b), schema, depth)

    def base_tree(self, bases: list[str], schema: Schema, depth: int = 0) -> Tree:
        """The tree of ``bases`` (merge bases): the empty tree, the one base's, or their recursive merge."""
        if not bases:
            return self.tree_at(None)
        tree = self.tree_at(bases[0])
        current = bases[0]
        for other in bases[1:]:
            if depth > 8:
                raise StoreError("criss-cross merge deeper than 8 levels")
            virtual_base = self.merge_base_tree(current, other, schema, depth + 1)
            tree, conflicts = merge_trees(self.objects, virtual_base, tree, self.tree_at(other), schema)
            if conflicts:
                raise Conflict(conflicts)
            current = other
        return tree

    def merge(
        self,
        source: str,
        ref: str,
        schema: Schema,
        message: str,
        author: str | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
        ff: bool = True,
    ) -> str | None:
        """Merge commit ``source`` into ``ref`` (see :meth:`store.store.Store.merge`), with group commit."""
        identity = normalise_identity(author)
        return self.submit(ref, _Merge(self, source, ref, schema, message, identity, retries, ff))

    # -- watches -------------------------------------------------------------------------------------------
    @property
    def watcher(self) -> Watcher:
        if self._watcher is None:
            self._watcher = Watcher()
        return self._watcher

    def notify(self, ref: str) -> None:
        """Tell in-process watchers that ``ref`` moved."""
        if self._watcher is not None:
            self._watcher.notify()


class _Merge(Update):
    """A merge of a commit into a ref, folded onto the ref's head when its batch is published: nothing if
    the commit is merged already, a fast-forward where the head is its ancestor (unless ``ff`` is False), a
    merge commit otherwise."""

    def __init__(
        self,
        repo: Repository,
        source: str,
        ref: str,
        schema: Schema,
        message: str,
        identity: str,
        retries: int,
        ff: bool,
    ) -> None:
        super().__init__(retries)
        self._repo = repo
        self._source = source
        self._branch = ref.removeprefix("refs/heads/")
        self._schema = schema
        self._message = message
        self._identity = identity
        self._ff = ff

    def fold(self, head: str | None, head_tree: Tree) -> Folded | None:
        repo, source = self._repo, self._source
        if head is None:
            return source, repo.tree_at(source), []
        bases = repo.graph.merge_bases(head, source)
        if not bases:
            raise UnrelatedHistories(self._branch, head, source)
        if source in bases:
            return None  # merged already
        if self._ff and head in bases:
            return source, repo.tree_at(source), []
        base = repo.base_tree(bases, self._schema)
        merged, conflicts = merge_trees(repo.objects, base, head_tree, repo.tree_at(source), self._schema)
        if conflicts:
            raise Conflict(conflicts, branch=self._branch)
        commit_id, objects = commit_objects(merged, [head, source], self._identity, self._message)
        merged.mark_stored()  # written with this attempt (or the whole batch fails)
        return commit_id, merged, objects
