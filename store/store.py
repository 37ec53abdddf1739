"""The store: a git repository (on disk or in memory) seen as branches of immutable trees.

:class:`Store` is the front: opening and cloning repositories, branches, revisions, merges and watches. The
work is done by its :class:`~store.repository.Repository` (``store.repo``), which owns the backend and the
one path that publishes changes (write objects, then compare-and-swap a ref).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from store import revisions
from store.backend import Backend, MemoryBackend, ObjectStore
from store.branch import Branch
from store.errors import BranchExists, NotARepository, StoreError, TooManyRetries, UnknownBranch
from store.merge import Schema
from store.objects import CommitInfo
from store.paths import Path
from store.publish import DEFAULT_RETRIES
from store.repository import Repository, ref_name
from store.tree import Change, Tree
from store.watch import Watcher

if TYPE_CHECKING:
    from store.remote import Remote

# The disk backend (flock, mmap, fsync), dulwich's repository and the remotes (dulwich's client, the git
# subprocess) are imported by the methods that need them: Store.memory() must run where none of them does,
# in a browser under Pyodide (issue 22).


@dataclass(frozen=True)
class Diff:
    """The differences between two commits.

    Attributes:
        changes: Every changed path with its old and new value.
    """

    changes: list[Change] = field(default_factory=list)

    @property
    def added(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "added"]

    @property
    def removed(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "removed"]

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "changed"]

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.changes)


class Snapshot:
    """A read-only view of one commit."""

    def __init__(self, store: Store, commit_id: str) -> None:
        self.store = store
        self.id = commit_id
        self.tree = store.repo.tree_at(commit_id)

    @property
    def info(self) -> CommitInfo:
        return self.store.graph.info(self.id)

    @property
    def parents(self) -> tuple[str, ...]:
        return self.store.graph.parents(self.id)

    def get(self, path: Path, default: bytes | None = None) -> bytes | None:
        return self.tree.get(path, default)

    def list(self, path: Path = "") -> list[str]:
        return self.tree.list(path)

    def __repr__(self) -> str:
        return f"Snapshot({self.id[:12]})"


class Store:
    """A versioned store of bytes at paths, kept as a git repository.

    Use :meth:`open` for a repository on disk and :meth:`memory` for the in-memory twin.

    Args:
        backend: Where objects and refs live.
        path: The repository path, for a disk store.
        schema: Merge rules by path; ``store.schema.add(...)`` extends them.

    Attributes:
        repo: The repository core, which every write goes through.
        graph: The commit graph (parents, times, ancestry, merge bases).
    """

    def __init__(self, backend: Backend, path: str | None = None, schema: Schema | None = None) -> None:
        self.repo = Repository(backend)
        self.path = path
        self.schema = schema or Schema()
        self.graph = self.repo.graph

    # -- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        create: bool = True,
        *,
        bare: bool = True,
        durable: bool = True,
        schema: Schema | None = None,
    ) -> Store:
        """Open a git repository, creating it if needed.

        Args:
            path: A bare repository, a work tree with a ``.git``, or a directory to create one in.
            create: Create the repository if ``path`` is missing or an empty directory.
            bare: When creating, make a bare repository (the store moves refs without touching a work tree,
                so a work tree would look stale).
            durable: fsync objects and refs before a transaction returns.
            schema: Merge rules by path.

        Raises:
            NotARepository: ``path`` is a file, a non-empty directory that is not a repository, or missing
                with ``create=False``.
        """
        from dulwich.repo import Repo

        from store.disk import DiskBackend

        root = os.path.abspath(os.fspath(path))
        gitdir = cls.check(root, create)
        if gitdir is None:
            os.makedirs(root, exist_ok=True)
            repo = Repo.init_bare(root) if bare else Repo.init(root)
            repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
            repo.close()
            gitdir = root if bare else os.path.join(root, ".git")
        return cls(DiskBackend(gitdir, durable=durable), path=root, schema=schema)

    @classmethod
    def clone(
        cls,
        url: str,
        path: str | os.PathLike[str],
        *,
        name: str = "origin",
        durable: bool = True,
        schema: Schema | None = None,
        branches: Collection[str] | None = None,
    ) -> Store:
        """Create a bare repository at ``path`` with every branch of the repository at ``url`` (as
        `git clone --bare`), or only ``branches`` (as `git clone --single-branch`); every remote branch is
        tracked under ``refs/remotes/<name>/`` either way.

        Raises:
            NotARepository: ``path`` exists and is not an empty directory.
            RemoteError: the remote cannot be reached.
        """
        store = cls.open(path, create=True, durable=durable, schema=schema)
        try:
            remote = store.remote(name, url)
            for branch, commit in remote.fetch().items():
                if branches is None or branch in branches:
                    store.repo.publish(store.ref_name(branch), None, commit)
        except BaseException:
            store.close()
            raise
        return store

    def remote(self, name: str, url: str | None = None) -> Remote:
        """The remote ``name``: recorded in the repository's config when ``url`` is given (as
        `git remote add` does), read from it otherwise.

        Raises:
            StoreError: no URL is given and none is configured.
        """
        from store.remote import Remote, configured_url, remember_remote

        if self.gitdir is None:
            raise StoreError("remotes need a store on disk (Store.open), not an in-memory one")
        if url is None:
            url = configured_url(self.gitdir, name)
            if url is None:
                raise StoreError(f"no remote named {name!r}")
        elif configured_url(self.gitdir, name) != url:
            remember_remote(self.gitdir, name, url)
        return Remote(self, name, url)

    @staticmethod
    def check(path: str | os.PathLike[str], create: bool = True) -> str | None:
        """Validate a path for :meth:`open` without writing anything.

        Returns:
            The git directory of an existing repository, or None if one would be created there.

        Raises:
            NotARepository: as :meth:`open` would.
        """
        root = os.path.abspath(os.fspath(path))
        gitdir = _find_gitdir(root)
        if gitdir is not None:
            return gitdir
        if os.path.isfile(root) or (os.path.exists(root) and not os.path.isdir(root)):
            raise NotARepository(root, "is a file, not a repository")
        if os.path.isdir(root) and os.listdir(root):
            raise NotARepository(root, "is a non-empty directory that is not a git repository")
        if not create:
            raise NotARepository(root, "no repository here (and create=False)")
        return None

    @classmethod
    def memory(cls, schema: Schema | None = None) -> Store:
        """A store in memory with the same API (nothing survives the process)."""
        return cls(MemoryBackend(), schema=schema)

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def gitdir(self) -> str | None:
        return getattr(self.backend, "gitdir", None)

    @property
    def backend(self) -> Backend:
        """The storage under the repository core. Code outside the store uses the store's own methods;
        tests reach the backend to inject faults."""
        return self.repo.backend

    @property
    def objects(self) -> ObjectStore:
        """The repository's objects, for readers of raw objects by id (parsed trees and blobs are cached)."""
        return self.repo.objects

    def compact(self) -> bool:
        """Compact the stored objects now: on disk, every pack rolled up into one, compressed, with versions
        of a tree stored as deltas of one another (roll-ups do this as packs accumulate; this is for a
        repository written before they did). Safe beside writers and readers. False if nothing was done
        (in memory, or without the git CLI)."""
        return self.repo.objects.compact()

    # -- branches ------------------------------------------------------------------------------------------
    ref_name = staticmethod(ref_name)

    @property
    def default_branch(self) -> str:
        """The branch HEAD names ("main" for repositories this store creates; "master" after `git init`)."""
        return self.repo.default_branch

    def branches(self) -> list[str]:
        """Names of all branches, sorted."""
        return sorted(name[len("refs/heads/") :] for name in self.repo.list_refs("refs/heads/"))

    def list_refs(self, prefix: str = "refs/heads/") -> dict[str, str]:
        """Every ref in the directory ``prefix`` (e.g. "refs/heads/vm-task/": the branches named
        "vm-task/..."), with its commit id.

        Raises:
            ValueError: ``prefix`` is not a directory under ``refs/``.
        """
        directory = prefix.rstrip("/") + "/"
        if not directory.startswith("refs/"):
            raise ValueError(f"not a directory of refs: {prefix!r}")
        return self.repo.list_refs(directory)

    def branch(self, name: str | None = None) -> Branch:
        """The branch ``name`` (default: the repository's default branch), existing or not."""
        return Branch(self, self.default_branch if name is None else name)

    def fork(self, name: str, source: str) -> Branch:
        """Create branch ``name`` at ``source`` (a branch name or a commit id).

        Raises:
            BranchExists: ``name`` exists already.
            UnknownCommit: ``source`` names nothing.
        """
        if not self.repo.publish(self.ref_name(name), None, self.resolve(source)):
            raise BranchExists(name)
        return Branch(self, name)

    def test_and_set(self, name: str, old: str | None, new: str | None, *, sync: bool = True) -> bool:
        """Point branch ``name`` (or a full ref, "refs/...") at ``new`` if it is at ``old`` (None: absent, or
        delete): the compare-and-swap that every ref move of the store is made of.

        Args:
            sync: Make the move durable before returning; without it a crash may undo it.

        Returns:
            True if it moved (or ``new`` is ``old``), False if it was not at ``old``.
        """
        return self.repo.publish(self.ref_name(name), old, new, sync=sync)

    def delete_branch(self, name: str, *, sync: bool = True) -> None:
        """Delete a branch (its commits stay reachable from other refs, or until `git gc`).

        Args:
            name: The branch.
            sync: Make the deletion durable before returning; without it a crash may bring the branch back.

        Raises:
            UnknownBranch: no such branch.
        """
        ref = self.ref_name(name)
        for _ in range(DEFAULT_RETRIES):
            current = self.repo.read_ref(ref)
            if current is None:
                raise UnknownBranch(name)
            if self.repo.publish(ref, current, None, sync=sync):
                return
        raise TooManyRetries(ref, DEFAULT_RETRIES)

    def set_branch(self, name: str, commit: str, expected: str | object | None = ...) -> None:
        """Point a branch at ``commit`` (a reset), optionally only if it is at ``expected``."""
        ref = self.ref_name(name)
        target = self.resolve(commit)
        old = self.repo.read_ref(ref) if expected is ... else expected
        if not self.repo.publish(ref, old, target):  # type: ignore[arg-type]
            raise TooManyRetries(ref, 1)

    # -- commits -------------------------------------------------------------------------------------------
    def resolve(self, rev: str) -> str:
        """A commit id from a full or abbreviated id, a branch or ref name, with ``~N`` / ``^N`` suffixes.

        Raises:
            UnknownCommit: nothing matches, or an abbreviation is ambiguous.
        """
        return revisions.resolve(self.repo, rev)

    def at(self, commit_id: str) -> Snapshot:
        """A read-only view of a commit (any revision :meth:`resolve` accepts)."""
        return Snapshot(self, self.resolve(commit_id))

    def tree_at(self, commit_id: str | None) -> Tree:
        """The tree of a commit (the empty tree for None), cached for recent heads."""
        return self.repo.tree_at(commit_id)

    def remember_tree(self, commit_id: str, tree: Tree) -> None:
        self.repo.remember_tree(commit_id, tree)

    def changed_paths(self, commit_id: str) -> list[str]:
        """Paths a commit changed against its first parent (all paths for a root commit)."""
        return self.repo.changed_paths(commit_id)

    def diff(self, a: str, b: str) -> Diff:
        """What changed from revision ``a`` to revision ``b``: added, removed and changed paths."""
        return Diff(self.tree_at(self.resolve(a)).diff(self.tree_at(self.resolve(b))))

    def write_commit(self, tree: Tree, parents: list[str], message: str, author: str | None = None) -> str:
        """Write ``tree`` and a commit of it with ``parents`` (durably, on disk) and return the commit id.

        No ref moves: pair it with :meth:`fork` (or ``set_branch``) to publish it, for example to create a
        branch whose first commit already differs from its source in one atomic step.
        """
        return self.repo.write_commit(tree, parents, message, author)

    # -- merging -------------------------------------------------------------------------------------------
    def merge_base_tree(self, a: str, b: str, schema: Schema | None = None, depth: int = 0) -> Tree:
        """The tree to merge ``a`` and ``b`` against: their lowest common ancestor's, or, in criss-cross
        histories with several, the recursive merge of those (as git's recursive strategy does).

        Raises:
            Conflict: the common ancestors themselves do not merge cleanly.
        """
        return self.repo.merge_base_tree(a, b, schema or self.schema, depth)

    def merge(
        self,
        source: str,
        into: str | None = None,
        message: str | None = None,
        author: str | None = None,
        *,
        schema: Schema | None = None,
        retries: int = DEFAULT_RETRIES,
        ff: bool = True,
    ) -> str:
        """Merge revision ``source`` into branch ``into`` at their lowest common ancestor(s).

        Fast-forwards when ``into`` is an ancestor of ``source`` (unless ``ff=False``); does nothing when
        ``source`` is already merged. The merge is group-committed with concurrent transactions on ``into``.
        Returns the new head of ``into``.

        Raises:
            Conflict: with every conflicting path.
            TooManyRetries: ``into`` kept moving.
        """
        target = into or self.default_branch
        ref = self.ref_name(target)
        source_id = self.resolve(source)
        text = message or f"Merge {source} into {target}"
        head = self.repo.merge(source_id, ref, schema or self.schema, text, author, retries=retries, ff=ff)
        assert head is not None  # a merge leaves the branch at the source at least
        return head

    # -- watches -------------------------------------------------------------------------------------------
    @property
    def watcher(self) -> Watcher:
        return self.repo.watcher

    def notify(self, ref: str) -> None:
        """Tell in-process watchers that ``ref`` moved."""
        self.repo.notify(ref)


def _find_gitdir(root: str) -> str | None:
    def is_gitdir(path: str) -> bool:
        return all(os.path.exists(os.path.join(path, part)) for part in ("HEAD", "objects", "refs"))

    if not os.path.isdir(root):
        return None
    dotgit = os.path.join(root, ".git")
    if os.path.isdir(dotgit) and is_gitdir(dotgit):
        return dotgit
    if os.path.isfile(dotgit):
        with open(dotgit, encoding="utf-8") as f:
            line = f.read().strip()
        if line.startswith("gitdir: "):
            target = os.path.normpath(os.path.join(root, line[len("gitdir: ") :]))
            if is_gitdir(target):
                return target
    if is_gitdir(root):
        return root
    return None
