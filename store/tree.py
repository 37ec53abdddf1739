"""Immutable, lazily loaded trees with structural sharing.

A :class:`Tree` is a value: ``set`` and ``remove`` return a new tree that shares every untouched subtree with
the old one. Subtrees read from the repository are parsed only when a path goes through them, and a tree's
id is computed only when asked, so writing a commit hashes and stores just the trees on changed paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from store import treewrite
from store.backend import ObjectReader
from store.errors import IsADirectory, NotADirectory
from store.leaf import Child, Leaf, Node, ident, is_dir
from store.objects import ObjectId, tree_sort_key
from store.paths import Key, Path, join, parse

EMPTY_TREE_ID: ObjectId = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class Change:
    """One path that differs between two trees.

    Attributes:
        path: "a/b/c".
        old: The value before (None: added).
        new: The value after (None: removed).
    """

    path: str
    old: bytes | None
    new: bytes | None

    @property
    def kind(self) -> Literal["added", "removed", "changed"]:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"


class Tree:
    """An immutable directory of values and subtrees.

    Build one from a store (``branch.tree``, ``store.at(commit).tree``) or start from ``Tree.empty(...)``.
    """

    __slots__ = ("_backend", "_children", "_dirty", "_keys", "_oid", "_origin", "_raw", "_stored")

    def __init__(
        self,
        backend: ObjectReader,
        oid: ObjectId | None = None,
        children: dict[str, Child] | None = None,
        origin: tuple[Tree, frozenset[str]] | None = None,
    ) -> None:
        self._backend = backend
        self._oid = oid
        self._children = children
        self._raw: bytes | None = None
        # Git sort keys of the entries in raw order (filled in on demand; see store.treewrite.splice).
        self._keys: list[bytes] | None = None
        # The tree this one was derived from and the names of the children that differ: its raw bytes can
        # be spliced.
        self._origin = origin
        # Names of children that may not be in the repository yet (None: any of them), so that writing
        # and marking a commit visit only the changed paths, not every sibling.
        self._dirty: frozenset[str] | None = None
        if origin is not None:
            previous, names = origin
            if previous._stored:
                self._dirty = names
            elif previous._dirty is not None:
                self._dirty = previous._dirty | names
        # A tree with an id and no in-memory children came from the repository: nothing to write.
        self._stored = oid is not None and children is None

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, backend: ObjectReader) -> Tree:
        return cls(backend, None, {})

    @classmethod
    def of(cls, backend: ObjectReader, oid: ObjectId | None) -> Tree:
        """The stored tree with this id (the empty tree for None)."""
        if oid is None or oid == EMPTY_TREE_ID:
            return cls.empty(backend)
        return cls(backend, oid)

    # -- internals -----------------------------------------------------------------------------------------
    def _entries(self) -> dict[str, Child]:
        children = self._children
        if children is None:
            assert self._oid is not None
            children = self._backend.tree_entries(self._oid)  # type: ignore[assignment]
            self._children = children
        return children  # type: ignore[return-value]

    def _node(self, name: str) -> Node | None:
        child = self._entries().get(name)
        if child is None or isinstance(child, Tree | Leaf):
            return child
        directory, oid = child
        return Tree(self._backend, oid) if directory else Leaf(self._backend, oid)

    def _find(self, key: Key) -> Node | None:
        node: Node | None = self
        for segment in key:
            if not isinstance(node, Tree):
                return None
            node = node._node(segment)
            if node is None:
                return None
        return node

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The git tree id (computed, and cached, for trees built in memory)."""
        return self.oid.decode("ascii")

    @property
    def oid(self) -> ObjectId:
        if self._oid is None:
            treewrite.hash_new_trees(self)
        assert self._oid is not None
        return self._oid

    def _has_raw(self) -> bool:
        return self._raw is not None or self._stored

    def _raw_bytes(self) -> bytes:
        if self._raw is None:
            assert self._oid is not None
            return self._backend.tree_raw(self._oid)
        return self._raw

    def _sorted_keys(self) -> list[bytes]:
        """The git sort keys of the entries, in the order of the raw bytes (see :mod:`store.treewrite`)."""
        if self._keys is None:
            if self._raw is None and self._oid is not None:
                self._keys = self._backend.tree_keys(self._oid)
            else:
                self._keys = sorted(
                    tree_sort_key(name.encode("utf-8", "surrogateescape"), is_dir(child))
                    for name, child in self._entries().items()
                )
        return self._keys

    def derived(self, children: dict[str, Child], changed: frozenset[str]) -> Tree:
        """A tree whose children are ``children``, known to differ from this tree's only at ``changed``."""
        if self._has_raw():
            return Tree(self._backend, None, children, origin=(self, changed))
        if self._origin is not None and self._origin[0]._has_raw():
            # Several changes in one directory before anything was hashed: splice them all from the base.
            base, earlier = self._origin
            return Tree(self._backend, None, children, origin=(base, earlier | changed))
        return Tree(self._backend, None, children)

    def is_empty(self) -> bool:
        return not self._entries()

    def get(self, path: Path, default: bytes | None = None) -> bytes | None:
        """The value at ``path``, or ``default`` if absent or a directory."""
        node = self._find(parse(path))
        if isinstance(node, Leaf):
            return node.value
        return default

    def id_at(self, path: Path) -> ObjectId | None:
        """The id of the value or directory at ``path`` (None if absent), without reading it: a cache key
        for anything derived from what is there."""
        node = self._find(parse(path, allow_root=True))
        return None if node is None else node.oid

    def kind(self, path: Path) -> Literal["value", "directory"] | None:
        """Whether ``path`` holds a value, a directory, or nothing."""
        node = self._find(parse(path, allow_root=True))
        if node is None:
            return None
        return "directory" if isinstance(node, Tree) else "value"

    def __contains__(self, path: Path) -> bool:
        return self.kind(path) is not None

    def list(self, path: Path = "") -> list[str]:
        """Sorted child names of the directory at ``path`` ([] if absent or a value)."""
        node = self._find(parse(path, allow_root=True))
        if not isinstance(node, Tree):
            return []
        return sorted(node._entries())

    def subtree(self, path: Path) -> Tree:
        """The directory at ``path`` as a tree of its own (empty if absent).

        Raises:
            NotADirectory: ``path`` holds a value.
        """
        key = parse(path, allow_root=True)
        node = self._find(key)
        if node is None:
            return Tree.empty(self._backend)
        if isinstance(node, Leaf):
            raise NotADirectory(join(key))
        return node

    def walk(self, path: Path = "") -> Iterator[tuple[str, bytes]]:
        """Every (path, value) at or under ``path``, in sorted order."""
        key = parse(path, allow_root=True)
        node = self._find(key)
        if node is None:
            return
        yield from _walk(node, key)

    def paths(self, path: Path = "") -> Iterator[str]:
        """Every value path at or under ``path``, without reading the values."""
        key = parse(path, allow_root=True)
        node = self._find(key)
        if node is not None:
            yield from _walk_paths(node, key)

    # -- writing -------------------------------------------------------------------------------------------
    def set(self, path: Path, value: bytes) -> Tree:
        """A new tree with ``value`` at ``path``; missing directories are created.

        Raises:
            InvalidPath: ``path`` is malformed.
            NotADirectory: a prefix of ``path`` holds a value.
            IsADirectory: ``path`` holds a directory.
            TypeError: ``value`` is not bytes.
        """
        key = parse(path)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"value for {join(key)!r} must be bytes, not {type(value).__name__}")
        leaf = Leaf(self._backend, None, bytes(value))
        return self._replace(key, leaf)

    def remove(self, path: Path) -> Tree:
        """A new tree without ``path`` (a value or a whole directory); emptied directories vanish.

        Removing an absent path returns this tree.
        """
        key = parse(path)
        if self._find(key) is None:
            return self
        return self._replace(key, None)

    def _replace(self, key: Key, leaf: Leaf | None) -> Tree:
        """This tree with ``leaf`` at ``key`` (None: without ``key``), copying only the directories on the
        path: down the path in a loop, then back up it, never recursing (clients choose how deep it goes)."""
        # The directories from this tree down to the parent of key[-1].
        path: list[Tree] = [self]
        node = self
        for depth in range(len(key) - 1):
            child = node._node(key[depth])
            if isinstance(child, Leaf):
                if leaf is None:
                    return self
                raise NotADirectory(join(key[: depth + 1]))
            if child is None:
                if leaf is None:
                    return self
                child = Tree.empty(self._backend)
            path.append(child)
            node = child
        name = key[-1]
        children = dict(node._entries())
        if leaf is None:
            children.pop(name, None)
        else:
            existing = node._node(name)
            if isinstance(existing, Tree) and not existing.is_empty():
                raise IsADirectory(join(key))
            children[name] = leaf
        new_child = node.derived(children, frozenset((name,)))
        for depth in range(len(key) - 2, -1, -1):
            parent, name = path[depth], key[depth]
            children = dict(parent._entries())
            if new_child.is_empty():
                children.pop(name, None)
            else:
                children[name] = new_child
            new_child = parent.derived(children, frozenset((name,)))
        return new_child

    def apply(self, changes: Iterable[Change]) -> Tree:
        """A new tree with each change applied (``new`` None removes the path)."""
        tree = self
        for change in changes:
            tree = tree.remove(change.path) if change.new is None else tree.set(change.path, change.new)
        return tree

    def graft(self, path: Path, subtree: Tree) -> Tree:
        """A new tree whose directory at ``path`` is replaced by ``subtree`` (removed if it is empty)."""
        key = parse(path, allow_root=True)
        if not key:
            return subtree
        return self._graft(key, subtree)

    def _graft(self, key: Key, subtree: Tree) -> Tree:
        # As _replace: down the path in a loop, then back up it.
        path: list[Tree] = [self]
        node = self
        for depth in range(len(key) - 1):
            child = node._node(key[depth])
            if isinstance(child, Leaf):
                raise NotADirectory(join(key[: depth + 1]))
            node = child or Tree.empty(self._backend)
            path.append(node)
        new_child = subtree
        for depth in range(len(key) - 1, -1, -1):
            name = key[depth]
            children = dict(path[depth]._entries())
            if new_child.is_empty():
                children.pop(name, None)
            else:
                children[name] = new_child
            new_child = Tree(self._backend, None, children)
        return new_child

    # -- comparing -----------------------------------------------------------------------------------------
    def diff(self, other: Tree) -> list[Change]:
        """The changes that turn this tree into ``other``, in tree order (segment by segment).

        Subtrees with equal ids are skipped without being read.
        """
        changes: list[Change] = []
        _diff(self, other, (), changes)
        return changes

    def changed_names(self, other: Tree) -> set[str]:
        """The names of the entries that differ between this directory and ``other`` (added, removed, or
        with another id), found with one C-level set operation over the entries rather than a Python loop
        over every name."""
        mine, theirs = self._entries(), other._entries()
        # Entries built in memory compare by identity there: a superset, narrowed by comparing ids.
        candidates = {name for name, _ in mine.items() ^ theirs.items()}
        return {name for name in candidates if ident(mine.get(name)) != ident(theirs.get(name))}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tree) and self.oid == other.oid

    def __hash__(self) -> int:
        return hash(self.oid)

    def __repr__(self) -> str:
        return f"Tree({self.id[:12]})"

    # -- persistence ---------------------------------------------------------------------------------------
    def new_objects(self) -> list[tuple[ObjectId, int, bytes]]:
        """Objects built in memory that the repository may not have yet (only along changed paths)."""
        out: list[tuple[ObjectId, int, bytes]] = []
        treewrite.collect(self, out)
        return out

    def mark_stored(self) -> None:
        """Record that every object of this tree is now in the repository (after a write)."""
        treewrite.mark_stored(self)


# The walks below use explicit stacks, not recursion: a tree is as deep as its writers made it (a xenstore
# client chooses its paths), and Python's stack is not.
def _walk(node: Node, key: Key) -> Iterator[tuple[str, bytes]]:
    for path, leaf in _walk_leaves(node, key):
        yield path, leaf.value


def _walk_paths(node: Node, key: Key) -> Iterator[str]:
    for path, _leaf in _walk_leaves(node, key):
        yield path


def _walk_leaves(node: Node, key: Key) -> Iterator[tuple[str, Leaf]]:
    """Every leaf at or under ``node``, with its path, in sorted order (values are not read)."""
    stack: list[tuple[Node, Key]] = [(node, key)]
    while stack:
        current, at = stack.pop()
        if isinstance(current, Leaf):
            yield join(at), current
            continue
        for name in sorted(current._entries(), reverse=True):
            child = current._node(name)
            assert child is not None
            stack.append((child, (*at, name)))


def _diff(old: Node | None, new: Node | None, key: Key, out: list[Change]) -> None:
    stack: list[tuple[Node | None, Node | None, Key]] = [(old, new, key)]
    while stack:
        old, new, key = stack.pop()
        if old is not None and new is not None and old.oid == new.oid and type(old) is type(new):
            continue
        if isinstance(old, Tree) and isinstance(new, Tree):
            names = set(old._entries()) | set(new._entries())
            for name in sorted(names, reverse=True):
                stack.append((old._node(name), new._node(name), (*key, name)))
            continue
        if isinstance(old, Leaf) and isinstance(new, Leaf):
            out.append(Change(join(key), old.value, new.value))
            continue
        # One side is missing, or a value turned into a directory (or back).
        if isinstance(old, Tree):
            out.extend(Change(path, value, None) for path, value in _walk(old, key))
        elif isinstance(old, Leaf):
            out.append(Change(join(key), old.value, None))
        if isinstance(new, Tree):
            out.extend(Change(path, None, value) for path, value in _walk(new, key))
        elif isinstance(new, Leaf):
            out.append(Change(join(key), None, new.value))
