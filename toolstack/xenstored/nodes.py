"""Xenstore nodes in git trees.

Encoding (readable with plain ``git show``):

- every node is a git directory at its path: ``/local/domain/3`` is the directory ``local/domain/3``, and the
  root node ``/`` is the commit's root tree;
- the directory holds ``.value`` (a blob: the node's raw value) and ``.perms`` (a blob: its permission list,
  one entry per line, owner first, e.g. ``b3\\nr0\\n``);
- each child node is a subdirectory under its own name. Xenstore names never contain ``.``, so children can
  never collide with the two reserved dot-files and no escaping is needed.

So ``git show main:local/domain/3/name/.value`` prints a node's value and ``git show main:local/domain/3``
lists its children. A directory that lacks ``.value`` or ``.perms`` (left by a merge, or by another writer
of the repository) still is a node: its value reads as empty and its permissions are its parent's, which is
exactly what xenstore gives a node created implicitly as the parent of another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from store import Tree
from store.errors import StoreError
from toolstack.xenstored.errors import StorageFailure
from toolstack.xenstored.paths import Key, from_key
from toolstack.xenstored.perms import DEFAULT_PERMISSIONS, Caller, Permissions

VALUE = ".value"
PERMS = ".perms"
RESERVED = (VALUE, PERMS)


def is_reserved(name: str) -> bool:
    return name.startswith(".")


@dataclass(frozen=True, slots=True)
class LeafChange:
    """One blob of the encoding that changed: ``key`` ends with ``.value`` or ``.perms``."""

    key: Key
    old: bytes | None
    new: bytes | None

    @property
    def node(self) -> Key:
        return self.key[:-1]


@dataclass(slots=True)
class Mutation:
    """The outcome of changing a tree: the new tree and every blob that changed."""

    tree: Tree
    changes: list[LeafChange] = field(default_factory=list)

    def then(self, step: Mutation) -> Mutation:
        """Follow this mutation with ``step`` (computed on ``self.tree``)."""
        self.tree = step.tree
        self.changes.extend(step.changes)
        return self


def exists(tree: Tree, key: Key) -> bool:
    return not key or tree.kind(key) == "directory"


def value(tree: Tree, key: Key) -> bytes | None:
    """The node's value, or None if there is no such node."""
    if not exists(tree, key):
        return None
    return tree.get((*key, VALUE)) or b""


def permissions(tree: Tree, key: Key) -> Permissions:
    """The node's permissions, inherited from the nearest ancestor that records some."""
    for depth in range(len(key), -1, -1):
        stored = tree.get((*key[:depth], PERMS))
        if stored is not None:
            decoded = Permissions.decode(stored)
            if decoded is not None:
                return decoded
    return DEFAULT_PERMISSIONS


def children(tree: Tree, key: Key) -> list[str]:
    """Child names, sorted (as oxenstored lists them)."""
    return [name for name in tree.list(key) if not is_reserved(name)]


def fingerprint(tree: Tree, key: Key) -> tuple[bytes | None, bytes | None, tuple[str, ...]] | None:
    """What a reader of the node can observe (value, permissions, children); None if absent.

    Two trees with equal fingerprints at a node look the same to READ, GET_PERMS and DIRECTORY there: this
    plays the part of C xenstored's per-node generation count.
    """
    if not exists(tree, key):
        return None
    return tree.get((*key, VALUE)), tree.get((*key, PERMS)), tuple(children(tree, key))


def generation(tree: Tree, key: Key) -> int:
    """A number that changes whenever the node's children change (for DIRECTORY_PART)."""
    digest = hashlib.blake2b("\0".join(children(tree, key)).encode("ascii"), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def write(tree: Tree, key: Key, data: bytes, caller: Caller) -> Mutation:
    """Set a node's value, creating it and any missing ancestors (each inheriting its parent's permissions,
    owned by an unprivileged creator)."""
    mutation = Mutation(tree)
    _create_missing(mutation, key, caller, data)
    _set_leaf(mutation, (*key, VALUE), data)
    return mutation


def mkdir(tree: Tree, key: Key, caller: Caller) -> Mutation:
    """Create a node with an empty value (and missing ancestors); nothing if it exists."""
    mutation = Mutation(tree)
    _create_missing(mutation, key, caller)
    return mutation


def set_permissions(tree: Tree, key: Key, perms: Permissions) -> Mutation:
    mutation = Mutation(tree)
    _set_leaf(mutation, (*key, PERMS), perms.encode())
    return mutation


def remove(tree: Tree, key: Key) -> Mutation:
    """Remove a node and everything under it (the root cannot be removed: callers check)."""
    removed = [LeafChange(tuple(path.split("/")), old, None) for path, old in tree.walk(key)]
    try:
        new_tree = tree.remove(key)
    except StoreError as err:
        raise StorageFailure(f"the repository refused the removal: {err}", from_key(key)) from err
    return Mutation(new_tree, removed)


def apply(tree: Tree, changes: list[LeafChange]) -> Mutation:
    """Apply blob changes (from a transaction or another writer); report only those that change something."""
    mutation = Mutation(tree)
    for change in changes:
        _set_leaf(mutation, change.key, change.new)
    return mutation


def _create_missing(mutation: Mutation, key: Key, caller: Caller, data: bytes = b"") -> None:
    depth = len(key)
    while depth > 0 and not exists(mutation.tree, key[:depth]):
        depth -= 1
    if depth == len(key):
        return
    perms = permissions(mutation.tree, key[:depth])
    for end in range(depth + 1, len(key) + 1):
        perms = perms.for_new_child(caller)
        _set_leaf(mutation, (*key[:end], PERMS), perms.encode())
        _set_leaf(mutation, (*key[:end], VALUE), data if end == len(key) else b"")


def _set_leaf(mutation: Mutation, key: Key, data: bytes | None) -> None:
    tree = mutation.tree
    old = tree.get(key)
    if old == data:
        return
    try:
        mutation.tree = tree.remove(key) if data is None else tree.set(key, data)
    except StoreError as err:
        raise StorageFailure(f"the repository layout refuses this change: {err}", from_key(key[:-1])) from err
    mutation.changes.append(LeafChange(key, old, data))
