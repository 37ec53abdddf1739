"""Reading history: commits, ancestry, merge bases, and per-path walks.

History walks touch tens of thousands of commits, so this module works on raw objects: a commit is read for
its tree, parents and time only, and a path is followed through trees by looking up one name in each raw
tree, never parsing a whole directory. Results are cached by object id (objects never change).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from store.backend import ObjectCache, ObjectReader
from store.errors import CorruptObject, UnknownCommit
from store.objects import COMMIT, TREE, CommitInfo, ObjectId, commit_links, decode_commit, find_entry
from store.paths import Key

FIRST_PARENT_PROBE = 64  # first parents is_ancestor looks through before walking the whole graph


@dataclass(frozen=True)
class LogEntry:
    """One commit in a log.

    Attributes:
        commit: The parsed commit.
        paths: The paths it changed against its first parent (all paths for a root commit).
    """

    commit: CommitInfo
    paths: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.commit.id

    @property
    def message(self) -> str:
        return self.commit.message

    @property
    def author(self) -> str:
        return self.commit.author

    @property
    def time(self) -> int:
        return self.commit.author_time


@dataclass(frozen=True)
class HistoryEntry:
    """A commit that changed one key, and the key's value after it (None: removed)."""

    commit: CommitInfo
    value: bytes | None

    @property
    def id(self) -> str:
        return self.commit.id


def lookup_entry(raw: bytes, name: bytes) -> tuple[bool, ObjectId] | None:
    """The (is_dir, id) of one entry of a raw tree, found without parsing the others."""
    found = find_entry(raw, name)
    if found is None:
        return None
    mode_at, sha_at = found
    return raw[mode_at : mode_at + 6] == b"40000 ", raw[sha_at : sha_at + 20].hex().encode("ascii")


class CommitGraph:
    """Commits of one repository, parsed lazily and cached."""

    def __init__(self, backend: ObjectReader) -> None:
        self.backend = backend
        self._links = ObjectCache(1 << 18)
        self._infos = ObjectCache(1 << 14)
        self._path_cache = ObjectCache(1 << 16)

    def _raw_commit(self, commit_id: str) -> bytes:
        try:
            type_num, raw = self.backend.get_raw(commit_id.encode("ascii"))
        except (KeyError, ValueError, AssertionError):
            raise UnknownCommit(commit_id) from None
        if type_num != COMMIT:
            raise UnknownCommit(commit_id, "not a commit")
        return raw

    def links(self, commit_id: str) -> tuple[ObjectId, tuple[str, ...], int]:
        """(tree id, parent ids, committer time) of a commit."""
        key = commit_id.encode("ascii")
        cached = self._links.get(key)
        if cached is None:
            cached = commit_links(self._raw_commit(commit_id))
            self._links.put(key, cached)
        return cached  # type: ignore[return-value]

    def info(self, commit_id: str) -> CommitInfo:
        key = commit_id.encode("ascii")
        cached = self._infos.get(key)
        if cached is None:
            cached = decode_commit(commit_id, self._raw_commit(commit_id))
            self._infos.put(key, cached)
        return cached  # type: ignore[return-value]

    def tree_of(self, commit_id: str | None) -> ObjectId | None:
        return None if commit_id is None else self.links(commit_id)[0]

    def parents(self, commit_id: str) -> tuple[str, ...]:
        return self.links(commit_id)[1]

    def time(self, commit_id: str) -> int:
        return self.links(commit_id)[2]

    def exists(self, commit_id: str) -> bool:
        try:
            self.links(commit_id)
        except UnknownCommit:
            return False
        return True

    # -- paths ---------------------------------------------------------------------------------------------
    def path_node(self, tree: ObjectId | None, key: Key) -> tuple[bool, ObjectId] | None:
        """The (is_dir, id) entry at ``key`` under ``tree``, or None; (True, tree) for the root."""
        if tree is None:
            return None
        node: tuple[bool, ObjectId] | None = (True, tree)
        for segment in key:
            node = self._step(node, segment)
            if node is None:
                return None
        return node

    def _step(self, node: tuple[bool, ObjectId] | None, segment: str) -> tuple[bool, ObjectId] | None:
        """The entry ``segment`` of directory ``node`` (None if absent or ``node`` is not a directory)."""
        if node is None or not node[0]:
            return None
        oid = node[1]
        cache_key = oid + b"/" + segment.encode("utf-8", "surrogateescape")
        found = self._path_cache.get(cache_key)
        if found is None:
            type_num, raw = self.backend.get_raw(oid)
            if type_num != TREE:
                raise CorruptObject(oid.decode(), "expected a tree")
            found = lookup_entry(raw, segment.encode("utf-8", "surrogateescape")) or False
            self._path_cache.put(cache_key, found)
        return None if found is False else found  # type: ignore[return-value]

    def same_at(self, tree: ObjectId | None, other: ObjectId | None, key: Key) -> bool:
        """Whether two trees hold the same entry at ``key``, descending only while they differ (equal
        subtree ids above ``key`` settle it without reading further)."""
        a: tuple[bool, ObjectId] | None = None if tree is None else (True, tree)
        b: tuple[bool, ObjectId] | None = None if other is None else (True, other)
        for segment in key:
            if a == b:
                return True
            a, b = self._step(a, segment), self._step(b, segment)
        return a == b

    # -- walks ---------------------------------------------------------------------------------------------
    def walk(self, heads: list[str]) -> Iterator[str]:
        """Every commit reachable from ``heads``, newest (by committer time) first, each once."""
        seen = set(heads)
        queue = [(-self.time(h), h) for h in heads]
        heapq.heapify(queue)
        while queue:
            _, commit_id = heapq.heappop(queue)
            yield commit_id
            for parent in self.parents(commit_id):
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(queue, (-self.time(parent), parent))

    def walk_path(self, head: str, key: Key) -> Iterator[str]:
        """Commits that changed ``key``, newest first, with git's default history simplification.

        A merge whose entry at ``key`` equals that of one parent is followed through that parent only and
        not shown; a commit is shown when its entry differs from every parent's.
        """
        seen = {head}
        queue = [(-self.time(head), head)]
        while queue:
            _, commit_id = heapq.heappop(queue)
            tree, parents, _ = self.links(commit_id)
            follow: tuple[str, ...] = parents
            changed = True
            for parent in parents:
                if self.same_at(tree, self.tree_of(parent), key):
                    follow = (parent,)
                    changed = False
                    break
            if changed and (parents or self.path_node(tree, key) is not None):
                yield commit_id
            for parent in follow:
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(queue, (-self.time(parent), parent))

    def first_parent_chain(self, head: str, stop: str | None = None) -> Iterator[str]:
        """head, its first parent, and so on, ending before ``stop`` (or at the root)."""
        commit_id: str | None = head
        while commit_id is not None and commit_id != stop:
            yield commit_id
            parents = self.parents(commit_id)
            commit_id = parents[0] if parents else None

    # -- ancestry ------------------------------------------------------------------------------------------
    def _paint_down(self, a: str, b: str) -> list[str]:
        """Common ancestors of ``a`` and ``b`` that are not below another one found first (git's
        paint_down_to_common): walks newest first and stops once every queued commit is reachable from
        both, so the cost is the history since the fork, not the whole history."""
        one, two, stale, result_flag = 1, 2, 4, 8
        flags: dict[str, int] = {a: one, b: two}
        # Newest first; among equal times (git stores whole seconds) first queued first, so that a child is
        # visited before its parents and fewer redundant candidates need weeding out afterwards.
        order = itertools.count()
        queue = [(-self.time(a), next(order), a), (-self.time(b), next(order), b)]
        heapq.heapify(queue)
        results: list[str] = []
        while any(not flags[c] & stale for _, _, c in queue):
            _, _, commit_id = heapq.heappop(queue)
            current = flags[commit_id] & (one | two | stale)
            if current & (one | two) == (one | two):
                if not flags[commit_id] & result_flag:
                    flags[commit_id] |= result_flag
                    results.append(commit_id)
                current |= stale
            for parent in self.parents(commit_id):
                if flags.get(parent, 0) & current == current:
                    continue
                flags[parent] = flags.get(parent, 0) | current
                heapq.heappush(queue, (-self.time(parent), next(order), parent))
        return results

    def merge_bases(self, a: str, b: str) -> list[str]:
        """All lowest common ancestors of two commits (more than one in criss-cross histories)."""
        if a == b:
            return [a]
        results = self._paint_down(a, b)
        if len(results) <= 1:
            return results
        for end in (a, b):
            if end in results:
                return [end]  # one is an ancestor of the other: it is the only lowest common ancestor
        # Drop candidates that are ancestors of other candidates.
        return [r for r in results if not any(other != r and self.is_ancestor(r, other) for other in results)]

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor)."""
        if ancestor == descendant:
            return True
        # The usual question ("is the head I saw still below main?") is answered a few first parents down.
        # Painting down from both ends would also visit every side branch merged in the same second
        # (commit times are whole seconds), which under load is most of the recent history.
        for steps, commit_id in enumerate(self.first_parent_chain(descendant)):
            if commit_id == ancestor:
                return True
            if steps >= FIRST_PARENT_PROBE:
                break
        return ancestor in self._paint_down(ancestor, descendant)
