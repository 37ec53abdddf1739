"""The store: a git repository (on disk or in memory) seen as branches of immutable trees."""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass, field

from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from store.backend import Backend, MemoryBackend, ObjectCache
from store.branch import Branch
from store.disk import DiskBackend
from store.errors import (
    BranchExists,
    Conflict,
    NotARepository,
    StoreError,
    TooManyRetries,
    UnknownBranch,
    UnknownCommit,
)
from store.history import CommitGraph
from store.merge import Schema, merge_trees
from store.objects import COMMIT, CommitInfo, ObjectId, encode_commit, normalise_identity, object_id
from store.paths import Path
from store.remote import Remote, configured_url, remember_remote
from store.transaction import DEFAULT_RETRIES, Committer
from store.tree import Change, Tree
from store.watch import Watcher

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_SUFFIX = re.compile(r"^(.*?)((?:~\d*|\^\d?)*)$")


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
        self.tree = store.tree_at(commit_id)

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


@functools.lru_cache(maxsize=4096)
def _valid_ref(ref: str) -> str | None:
    """``ref`` if git's ref-name rules allow it, else None (cached: every branch access names its ref)."""
    if not check_ref_format(ref.encode("utf-8")) or any(len(p.encode()) > 200 for p in ref.split("/")):
        return None
    return ref


class Store:
    """A versioned store of bytes at paths, kept as a git repository.

    Use :meth:`open` for a repository on disk and :meth:`memory` for the in-memory twin.

    Args:
        backend: Where objects and refs live.
        path: The repository path, for a disk store.
        schema: Merge rules by path; ``store.schema.add(...)`` extends them.
    """

    def __init__(self, backend: Backend, path: str | None = None, schema: Schema | None = None) -> None:
        self.backend = backend
        self.path = path
        self.schema = schema or Schema()
        self.graph = CommitGraph(backend)
        self._committers: dict[str, Committer] = {}
        self._committers_mutex = threading.Lock()
        self._trees = ObjectCache(64)
        self._watcher: Watcher | None = None

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
    ) -> Store:
        """Create a bare repository at ``path`` with every branch of the repository at ``url``.

        Raises:
            NotARepository: ``path`` exists and is not an empty directory.
            RemoteError: the remote cannot be reached.
        """
        store = cls.open(path, create=True, durable=durable, schema=schema)
        try:
            remote = store.remote(name, url)
            for branch, commit in remote.fetch().items():
                store.backend.compare_and_swap(store.ref_name(branch), None, commit)
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
        if self._watcher is not None:
            self._watcher.stop()
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def gitdir(self) -> str | None:
        return getattr(self.backend, "gitdir", None)

    # -- branches ------------------------------------------------------------------------------------------
    @staticmethod
    def ref_name(branch: str) -> str:
        """``refs/heads/<branch>``, validated with git's ref-name rules."""
        if not isinstance(branch, str) or not branch:
            raise ValueError(f"invalid branch name {branch!r}")
        ref = _valid_ref(branch if branch.startswith("refs/") else f"refs/heads/{branch}")
        if ref is None:
            raise ValueError(f"invalid branch name {branch!r}")
        return ref

    @property
    def default_branch(self) -> str:
        """The branch HEAD names ("main" for repositories this store creates; "master" after `git init`)."""
        head = self.backend.symbolic_head()
        if head and head.startswith("refs/heads/"):
            return head[len("refs/heads/") :]
        return "main"

    def branches(self) -> list[str]:
        """Names of all branches, sorted."""
        return sorted(name[len("refs/heads/") :] for name in self.backend.list_refs("refs/heads/"))

    def branch(self, name: str | None = None) -> Branch:
        """The branch ``name`` (default: the repository's default branch), existing or not."""
        return Branch(self, self.default_branch if name is None else name)

    def fork(self, name: str, source: str) -> Branch:
        """Create branch ``name`` at ``source`` (a branch name or a commit id).

        Raises:
            BranchExists: ``name`` exists already.
            UnknownCommit: ``source`` names nothing.
        """
        commit_id = self.resolve(source)
        if not self.backend.compare_and_swap(self.ref_name(name), None, commit_id):
            raise BranchExists(name)
        return Branch(self, name)

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
            current = self.backend.read_ref(ref)
            if current is None:
                raise UnknownBranch(name)
            if self.backend.compare_and_swap(ref, current, None, sync=sync):
                return
        raise TooManyRetries(ref, DEFAULT_RETRIES)

    def set_branch(self, name: str, commit: str, expected: str | object | None = ...) -> None:
        """Point a branch at ``commit`` (a reset), optionally only if it is at ``expected``."""
        ref = self.ref_name(name)
        target = self.resolve(commit)
        old = self.backend.read_ref(ref) if expected is ... else expected
        if not self.backend.compare_and_swap(ref, old, target):  # type: ignore[arg-type]
            raise TooManyRetries(ref, 1)
        self.notify(ref)

    # -- commits -------------------------------------------------------------------------------------------
    def resolve(self, rev: str) -> str:
        """A commit id from a full or abbreviated id, a branch or ref name, with ``~N`` / ``^N`` suffixes.

        Raises:
            UnknownCommit: nothing matches, or an abbreviation is ambiguous.
        """
        if not isinstance(rev, str) or not rev:
            raise UnknownCommit(str(rev), "empty revision")
        match = _SUFFIX.match(rev)
        assert match is not None
        name, suffix = match.group(1), match.group(2)
        commit_id = self._resolve_name(name, rev)
        for step in re.findall(r"~\d*|\^\d?", suffix):
            count = int(step[1:] or 1)
            if step.startswith("~"):
                for _ in range(count):
                    parents = self.graph.parents(commit_id)
                    if not parents:
                        raise UnknownCommit(rev, "walks past the root commit")
                    commit_id = parents[0]
            else:
                parents = self.graph.parents(commit_id)
                if count == 0:
                    continue
                if len(parents) < count:
                    raise UnknownCommit(rev, f"has no parent {count}")
                commit_id = parents[count - 1]
        return commit_id

    def _resolve_name(self, name: str, rev: str) -> str:
        if _HEX40.match(name):
            if not self.graph.exists(name):
                raise UnknownCommit(rev)
            return name
        for candidate in (name, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/{name}"):
            # Only well-formed ref names reach the file system ("../../etc/passwd" is not a revision).
            if (
                candidate.startswith("refs/")
                and len(candidate) < 1024
                and check_ref_format(candidate.encode())
            ):
                value = self.backend.read_ref(candidate)
                if value is not None:
                    return value
        if name == "HEAD":
            value = self.backend.read_ref(f"refs/heads/{self.default_branch}")
            if value is not None:
                return value
        if re.fullmatch(r"[0-9a-f]{4,39}", name):
            found = {oid.decode() for oid in self.backend.find_prefix(name)}
            commits = [oid for oid in found if self.graph.exists(oid)]
            if len(commits) == 1:
                return commits[0]
            if len(commits) > 1:
                raise UnknownCommit(rev, f"ambiguous: {len(commits)} commits start with it")
        raise UnknownCommit(rev, "no such commit or branch")

    def at(self, commit_id: str) -> Snapshot:
        """A read-only view of a commit (any revision :meth:`resolve` accepts)."""
        return Snapshot(self, self.resolve(commit_id))

    def tree_at(self, commit_id: str | None) -> Tree:
        """The tree of a commit (the empty tree for None), cached for recent heads."""
        if commit_id is None:
            return Tree.empty(self.backend)
        tree = self._trees.get(commit_id)
        if not isinstance(tree, Tree):
            tree = Tree.of(self.backend, self.graph.tree_of(commit_id))
            self.remember_tree(commit_id, tree)
        return tree

    def remember_tree(self, commit_id: str, tree: Tree) -> None:
        self._trees.put(commit_id, tree)

    def changed_paths(self, commit_id: str) -> list[str]:
        """Paths a commit changed against its first parent (all paths for a root commit)."""
        parents = self.graph.parents(commit_id)
        old = self.tree_at(parents[0]) if parents else Tree.empty(self.backend)
        return [change.path for change in old.diff(self.tree_at(commit_id))]

    def diff(self, a: str, b: str) -> Diff:
        """What changed from revision ``a`` to revision ``b``: added, removed and changed paths."""
        return Diff(self.tree_at(self.resolve(a)).diff(self.tree_at(self.resolve(b))))

    def committer(self, branch: str) -> Committer:
        ref = self.ref_name(branch)
        with self._committers_mutex:
            committer = self._committers.get(ref)
            if committer is None:
                committer = self._committers[ref] = Committer(self, ref)
            return committer

    # -- merging -------------------------------------------------------------------------------------------
    def merge_base_tree(self, a: str, b: str, schema: Schema | None = None, depth: int = 0) -> Tree:
        """The tree to merge ``a`` and ``b`` against: their lowest common ancestor's, or, in criss-cross
        histories with several, the recursive merge of those (as git's recursive strategy does).

        Raises:
            Conflict: the common ancestors themselves do not merge cleanly.
        """
        return self._base_tree(self.graph.merge_bases(a, b), schema, depth)

    def _base_tree(self, bases: list[str], schema: Schema | None = None, depth: int = 0) -> Tree:
        if not bases:
            return Tree.empty(self.backend)
        tree = self.tree_at(bases[0])
        current = bases[0]
        for other in bases[1:]:
            if depth > 8:
                raise StoreError("criss-cross merge deeper than 8 levels")
            virtual_base = self.merge_base_tree(current, other, schema, depth + 1)
            tree, conflicts = merge_trees(
                self.backend, virtual_base, tree, self.tree_at(other), schema or self.schema
            )
            if conflicts:
                raise Conflict(conflicts)
            current = other
        return tree

    def write_commit(
        self,
        tree: Tree,
        parents: list[str],
        message: str,
        author: str | None = None,
    ) -> str:
        """Write ``tree`` and a commit of it with ``parents`` (durably, on disk) and return the commit id.

        No ref moves: pair it with :meth:`fork` (or ``set_branch``) to publish it, for example to create a
        branch whose first commit already differs from its source in one atomic step.
        """
        identity = normalise_identity(author)
        raw = encode_commit(tree.oid, parents, identity, identity, message)
        commit_oid = object_id(COMMIT, raw)
        self.backend.write_objects([*tree.new_objects(), (commit_oid, COMMIT, raw)])
        tree.mark_stored()
        commit_id = commit_oid.decode("ascii")
        self.remember_tree(commit_id, tree)
        return commit_id

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
        ``source`` is already merged. Returns the new head of ``into``.

        Raises:
            Conflict: with every conflicting path.
            TooManyRetries: ``into`` kept moving.
        """
        target = into or self.default_branch
        ref = self.ref_name(target)
        source_id = self.resolve(source)
        identity = normalise_identity(author)
        schema = schema or self.schema
        for _ in range(retries + 1):
            head = self.backend.read_ref(ref)
            bases = [] if head is None else self.graph.merge_bases(head, source_id)
            if head is None:
                new = source_id
            elif source_id in bases:
                return head  # already merged
            elif ff and head in bases:
                new = source_id
            else:
                base = self._base_tree(bases, schema)
                merged, conflicts = merge_trees(
                    self.backend, base, self.tree_at(head), self.tree_at(source_id), schema
                )
                if conflicts:
                    raise Conflict(conflicts, branch=target)
                text = message or f"Merge {source} into {target}"
                raw = encode_commit(merged.oid, [head, source_id], identity, identity, text)
                commit_oid: ObjectId = object_id(COMMIT, raw)
                self.backend.write_objects([*merged.new_objects(), (commit_oid, COMMIT, raw)])
                new = commit_oid.decode("ascii")
                merged.mark_stored()
                self.remember_tree(new, merged)
            if self.backend.compare_and_swap(ref, head, new):
                self.notify(ref)
                return new
        raise TooManyRetries(ref, retries + 1)

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
