"""Immutable, lazily loaded trees with structural sharing.

A :class:`Tree` is a value: ``set`` and ``remove`` return a new tree that shares every untouched subtree with
the old one. Subtrees read from the repository are parsed only when a path goes through them, and a tree's
id is computed only when asked, so writing a commit hashes and stores just the trees on changed paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Union

from store.backend import Backend
from store.errors import IsADirectory, NotADirectory
from store.objects import BLOB, TREE, ObjectId, encode_tree, find_entry, object_id
from store.paths import Key, Path, join, parse

EMPTY_TREE_ID: ObjectId = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class Leaf:
    """A value (git blob): its bytes, its id, or both, each computed on demand."""

    __slots__ = ("_backend", "_oid", "_stored", "_value")

    def __init__(self, backend: Backend, oid: ObjectId | None = None, value: bytes | None = None) -> None:
        self._backend = backend
        self._oid = oid
        self._value = value
        self._stored = value is None

    @property
    def oid(self) -> ObjectId:
        if self._oid is None:
            assert self._value is not None
            self._oid = object_id(BLOB, self._value)
        return self._oid

    @property
    def value(self) -> bytes:
        if self._value is None:
            assert self._oid is not None
            return self._backend.blob(self._oid)
        return self._value

    @property
    def is_new(self) -> bool:
        """Built in memory and not yet known to be in the repository."""
        return not self._stored


Node = Union["Tree", Leaf]
# A child is either still a stored (is_dir, id) entry or a node built in memory.
Child = Union[tuple[bool, ObjectId], "Tree", Leaf]


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

    __slots__ = ("_backend", "_children", "_dirty", "_oid", "_origin", "_raw", "_stored")

    def __init__(
        self,
        backend: Backend,
        oid: ObjectId | None = None,
        children: dict[str, Child] | None = None,
        origin: tuple[Tree, frozenset[str]] | None = None,
    ) -> None:
        self._backend = backend
        self._oid = oid
        self._children = children
        self._raw: bytes | None = None
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
    def empty(cls, backend: Backend) -> Tree:
        return cls(backend, None, {})

    @classmethod
    def of(cls, backend: Backend, oid: ObjectId | None) -> Tree:
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
        is_dir, oid = child
        return Tree(self._backend, oid) if is_dir else Leaf(self._backend, oid)

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
            raw = self._splice()
            if raw is not None:
                self._raw = raw
                self._oid = object_id(TREE, raw)
                return self._oid
            entries = []
            for name, child in self._entries().items():
                if isinstance(child, Tree):
                    entries.append((name.encode("utf-8", "surrogateescape"), True, child.oid))
                elif isinstance(child, Leaf):
                    entries.append((name.encode("utf-8", "surrogateescape"), False, child.oid))
                else:
                    entries.append((name.encode("utf-8", "surrogateescape"), child[0], child[1]))
            self._raw = encode_tree(entries)
            self._oid = object_id(TREE, self._raw)
        return self._oid

    def _has_raw(self) -> bool:
        return self._raw is not None or self._stored

    def _raw_bytes(self) -> bytes:
        if self._raw is None:
            assert self._oid is not None
            return self._backend.tree_raw(self._oid)
        return self._raw

    def _splice(self) -> bytes | None:
        """Encode by replacing the ids of the changed entries in the raw bytes of the tree this one came from.

        Committing a one-leaf change, or merging a few changed entries, then costs a byte search per changed
        entry instead of re-encoding every sibling; insertions, deletions and type changes fall back to a
        full encoding.
        """
        if self._origin is None:
            return None
        previous, names = self._origin
        self._origin = None
        old_entries, new_entries = previous._entries(), self._entries()
        replacements = []
        for name in names:
            old, new = old_entries.get(name), new_entries.get(name)
            if old is None or new is None or _is_dir(old) != _is_dir(new):
                return None
            replacements.append((name, new))
        raw = previous._raw_bytes()
        spliced = bytearray(raw)
        for name, new in replacements:
            found = find_entry(raw, name.encode("utf-8", "surrogateescape"))
            if found is None:
                return None
            new_oid = new[1] if isinstance(new, tuple) else new.oid
            spliced[found[1] : found[1] + 20] = bytes.fromhex(new_oid.decode("ascii"))
        return bytes(spliced)

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
        return self._replace(key, 0, leaf)

    def remove(self, path: Path) -> Tree:
        """A new tree without ``path`` (a value or a whole directory); emptied directories vanish.

        Removing an absent path returns this tree.
        """
        key = parse(path)
        if self._find(key) is None:
            return self
        return self._replace(key, 0, None)

    def _replace(self, key: Key, depth: int, leaf: Leaf | None) -> Tree:
        name = key[depth]
        children = dict(self._entries())
        if depth == len(key) - 1:
            existing = self._node(name)
            if leaf is None:
                children.pop(name, None)
            else:
                if isinstance(existing, Tree) and not existing.is_empty():
                    raise IsADirectory(join(key))
                children[name] = leaf
            return self.derived(children, frozenset((name,)))
        else:
            child = self._node(name)
            if isinstance(child, Leaf):
                if leaf is None:
                    return self
                raise NotADirectory(join(key[: depth + 1]))
            if child is None:
                if leaf is None:
                    return self
                child = Tree.empty(self._backend)
            new_child = child._replace(key, depth + 1, leaf)
            if new_child.is_empty():
                children.pop(name, None)
            else:
                children[name] = new_child
        return self.derived(children, frozenset((name,)))

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
        return self._graft(key, 0, subtree)

    def _graft(self, key: Key, depth: int, subtree: Tree) -> Tree:
        name = key[depth]
        children = dict(self._entries())
        if depth == len(key) - 1:
            new_child: Tree = subtree
        else:
            child = self._node(name)
            if isinstance(child, Leaf):
                raise NotADirectory(join(key[: depth + 1]))
            new_child = (child or Tree.empty(self._backend))._graft(key, depth + 1, subtree)
        if new_child.is_empty():
            children.pop(name, None)
        else:
            children[name] = new_child
        return Tree(self._backend, None, children)

    # -- comparing -----------------------------------------------------------------------------------------
    def diff(self, other: Tree) -> list[Change]:
        """The changes that turn this tree into ``other``, in tree order (segment by segment).

        Subtrees with equal ids are skipped without being read.
        """
        changes: list[Change] = []
        _diff(self, other, (), changes)
        return changes

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
        _collect(self, out)
        return out

    def _maybe_new_children(self) -> Iterable[Child]:
        entries = self._entries()
        if self._dirty is None:
            return entries.values()
        return [entries[name] for name in self._dirty if name in entries]

    def mark_stored(self) -> None:
        """Record that every object of this tree is now in the repository (after a write)."""
        if self._stored:
            return
        for child in self._maybe_new_children():
            if isinstance(child, Tree):
                child.mark_stored()
            elif isinstance(child, Leaf):
                child._stored = True
        self._stored = True


def _is_dir(child: Child) -> bool:
    return child[0] if isinstance(child, tuple) else isinstance(child, Tree)


def _walk(node: Node, key: Key) -> Iterator[tuple[str, bytes]]:
    if isinstance(node, Leaf):
        yield join(key), node.value
        return
    for name in sorted(node._entries()):
        child = node._node(name)
        assert child is not None
        yield from _walk(child, (*key, name))


def _walk_paths(node: Node, key: Key) -> Iterator[str]:
    if isinstance(node, Leaf):
        yield join(key)
        return
    for name in sorted(node._entries()):
        child = node._node(name)
        assert child is not None
        yield from _walk_paths(child, (*key, name))


def _diff(old: Node | None, new: Node | None, key: Key, out: list[Change]) -> None:
    if old is not None and new is not None and old.oid == new.oid and type(old) is type(new):
        return
    if isinstance(old, Tree) and isinstance(new, Tree):
        names = set(old._entries()) | set(new._entries())
        for name in sorted(names):
            _diff(old._node(name), new._node(name), (*key, name), out)
        return
    if isinstance(old, Leaf) and isinstance(new, Leaf):
        out.append(Change(join(key), old.value, new.value))
        return
    # One side is missing, or a value turned into a directory (or back).
    if isinstance(old, Tree):
        out.extend(Change(path, value, None) for path, value in _walk(old, key))
    elif isinstance(old, Leaf):
        out.append(Change(join(key), old.value, None))
    if isinstance(new, Tree):
        out.extend(Change(path, None, value) for path, value in _walk(new, key))
    elif isinstance(new, Leaf):
        out.append(Change(join(key), None, new.value))


def _collect(tree: Tree, out: list[tuple[ObjectId, int, bytes]]) -> None:
    if tree._stored:
        return
    oid = tree.oid
    for child in tree._maybe_new_children():
        if isinstance(child, Tree):
            _collect(child, out)
        elif isinstance(child, Leaf) and child.is_new:
            out.append((child.oid, BLOB, child.value))
    raw = tree._raw
    if raw is None:
        # The id came from the repository but children were materialised: it is stored already.
        return
    out.append((oid, TREE, raw))
