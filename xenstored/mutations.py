"""Changing the xenstore tree: each change returns a :class:`Mutation`, the new tree and the blobs it changed.

A change never alters a node anyone else may hold: it copies the path from the root to the node it changes
and shares everything else. With a :class:`~xenstored.tree.Writer` (a transaction's), the nodes that writer
built are changed in place instead, as nobody else holds them yet. The blob changes listed are what watches
fire on and quotas count; ``apply`` takes such changes from another writer of the repository.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from xenstored.paths import Key
from xenstored.perms import DEFAULT_PERMISSIONS, Caller, Permissions
from xenstored.tree import (
    EMPTY,
    PERMS,
    VALUE,
    Node,
    Writer,
    decode_permissions,
    encode_permissions,
    lookup,
    node_blob,
)


class LeafChange(NamedTuple):
    """One blob of the encoding that changed: ``key`` ends with ``.value`` or ``.perms``.

    (A named tuple rather than a dataclass: a transaction's merge makes one per blob it touches.)
    """

    key: Key
    old: bytes | None
    new: bytes | None

    @property
    def node(self) -> Key:
        return self.key[:-1]


# Builds a LeafChange from a (key, old, new) tuple without the named tuple's Python-level constructor: the
# hot loops make one per blob.
_leaf_change: Callable[[tuple[Key, bytes | None, bytes | None]], LeafChange] = functools.partial(
    tuple.__new__, LeafChange
)


@dataclass(slots=True)
class Mutation:
    """The outcome of changing a tree: the new tree, every blob that changed, and the nodes a request
    wrote even if it changed nothing there (their watches fire all the same, as in the reference daemons).
    """

    tree: Node
    changes: list[LeafChange] = field(default_factory=list)
    touched: list[Key] = field(default_factory=list)

    def then(self, step: Mutation) -> Mutation:
        """Follow this mutation with ``step`` (computed on ``self.tree``)."""
        self.tree = step.tree
        self.changes.extend(step.changes)
        self.touched.extend(step.touched)
        return self


def leaves(node: Node, key: Key, removed: bool = False) -> list[LeafChange]:
    """Every blob of the subtree at ``key``, as if it were being created (parents first), or with
    ``removed``, as if it were being removed."""
    out: list[LeafChange] = []
    stack = [(node, key)]
    make = _leaf_change
    while stack:
        current, at = stack.pop()
        perms, value = current.perms, current.value
        if perms is not None:
            out.append(make((at + _PERMS_LEAF, perms, None) if removed else (at + _PERMS_LEAF, None, perms)))
        if value is not None:
            out.append(make((at + _VALUE_LEAF, value, None) if removed else (at + _VALUE_LEAF, None, value)))
        for name, child in current.children.items():
            stack.append((child, (*at, name)))
    return out


# -- changing ------------------------------------------------------------------------------------------------
# With a ``writer``, the nodes that writer built are changed in place, and the nodes built are its own: only
# for a tree nobody else holds (a transaction's), and only once the change is known to be allowed.
def write(tree: Node, key: Key, data: bytes, caller: Caller, writer: Writer | None = None) -> Mutation:
    """Set a node's value, creating it and any missing ancestors (each inheriting its parent's permissions,
    owned by an unprivileged creator)."""
    return _create(tree, key, caller, data, writer)


def mkdir(tree: Node, key: Key, caller: Caller, writer: Writer | None = None) -> Mutation:
    """Create a node with an empty value (and missing ancestors); nothing if it exists."""
    return _create(tree, key, caller, None, writer)


def set_permissions(tree: Node, key: Key, perms: Permissions, writer: Writer | None = None) -> Mutation:
    """Replace a node's permission list (the node must exist)."""
    encoded = encode_permissions(perms)
    node = lookup(tree, key)
    assert node is not None, "callers check that the node exists"
    if node.perms == encoded:
        return Mutation(tree)
    change = LeafChange((*key, PERMS), node.perms, encoded)
    if writer is not None and node.writer is writer:
        node.perms = encoded
        return Mutation(tree, [change])
    return Mutation(_replace(tree, key, node.derive(perms=encoded), writer), [change])


def remove(tree: Node, key: Key, writer: Writer | None = None, listed: bool = True) -> Mutation:
    """Remove a node and everything under it (the root cannot be removed: callers check).

    Args:
        listed: List every blob removed in the mutation's changes (False: nobody reads them, so the
            subtree is not walked).
    """
    node = lookup(tree, key)
    if node is None or not key:
        return Mutation(tree)
    return Mutation(_replace(tree, key, None, writer), leaves(node, key, removed=True) if listed else [])


def apply(tree: Node, changes: list[LeafChange]) -> Mutation:
    """Apply blob changes (from another writer); report only those that change something.

    Setting a blob under a missing node creates the node, and its missing ancestors, with no blobs of their
    own (as git would); removing a node's last blob removes the node if it has no children.
    """
    mutation = Mutation(tree)
    for change in changes:
        node_key, leaf = change.key[:-1], change.key[-1]
        node = lookup(mutation.tree, node_key)
        old = node_blob(node, leaf)
        if old == change.new:
            continue
        base = node if node is not None else EMPTY
        if leaf == VALUE:
            updated = base.derive(value=change.new)
        elif leaf == PERMS:
            updated = base.derive(perms=change.new)
        else:
            continue  # outside the encoding: not a node's state
        mutation.tree = _replace(mutation.tree, node_key, updated)
        mutation.changes.append(LeafChange(change.key, old, change.new))
    return mutation


def _replace(tree: Node, key: Key, new: Node | None, writer: Writer | None = None) -> Node:
    """``tree`` with the node at ``key`` replaced by ``new`` (None: removed); missing nodes on the way are
    created empty, and nodes left empty are pruned."""
    path = [tree]
    for name in key[:-1]:
        path.append(path[-1].children.get(name) or EMPTY)
    return _rebuild(path, key, len(key), new, writer)


def _create(
    tree: Node, key: Key, caller: Caller, data: bytes | None, writer: Writer | None = None
) -> Mutation:
    """Create the node at ``key`` and its missing ancestors; with ``data``, also set its value."""
    path = [tree]  # path[d] is the node at key[:d], for every node that exists
    node = tree
    for name in key:
        child = node.children.get(name)
        if child is None:
            break
        path.append(child)
        node = child
    existing = len(path) - 1
    changes: list[LeafChange] = []
    if existing == len(key):
        if data is None or node.value == data:
            return Mutation(tree)
        changes.append(LeafChange(key + _VALUE_LEAF, node.value, data))
        if writer is not None and node.writer is writer:
            node.value = data
            return Mutation(tree, changes)
        new = node.derive(value=data)
        depth = existing
    else:
        # Missing from key[existing] down: each new node inherits from its new parent, the first from the
        # nearest existing node whose stored permissions decode (None: the default list).
        perms: bytes | None = None
        for ancestor in reversed(path):
            if ancestor.perms is not None and decode_permissions(ancestor.perms) is not None:
                perms = ancestor.perms
                break
        stored: list[bytes] = []
        for depth in range(existing + 1, len(key) + 1):
            perms = _child_permissions(perms, caller)
            stored.append(perms)
            node_value = data if depth == len(key) and data is not None else b""
            node_key = key[:depth]
            changes.append(LeafChange(node_key + _PERMS_LEAF, None, perms))
            changes.append(LeafChange(node_key + _VALUE_LEAF, None, node_value))
        last = len(key)
        new = Node(data if data is not None else b"", stored[-1], {}, writer=writer)
        for depth in range(last - 1, existing, -1):
            new = Node(b"", stored[depth - existing - 1], {key[depth]: new}, writer=writer)
        depth = existing + 1
    return Mutation(_rebuild(path, key, depth, new, writer), changes)


_PERMS_LEAF = (PERMS,)
_VALUE_LEAF = (VALUE,)


@functools.lru_cache(maxsize=4096)
def _child_permissions(parent: bytes | None, creator: Caller) -> bytes:
    """The stored permissions of a node ``creator`` makes under a parent storing ``parent`` (None: the
    default list)."""
    inherited = DEFAULT_PERMISSIONS if parent is None else decode_permissions(parent) or DEFAULT_PERMISSIONS
    return encode_permissions(inherited.for_new_child(creator))


def _rebuild(path: list[Node], key: Key, depth: int, new: Node | None, writer: Writer | None = None) -> Node:
    """The root of a tree whose node at ``key[:depth]`` is now ``new`` (None: removed); ``path`` holds the
    old nodes from the root down (EMPTY where missing). Git has no empty directories: a node left without
    blobs or children is pruned.

    With a ``writer``, the copy stops at the first ancestor that writer built, which is changed in place
    (the writer built every ancestor of such a node too: it copied the whole path from the root).
    """
    for up in range(depth - 1, -1, -1):
        parent = path[up]
        name = key[up]
        if writer is not None and parent.writer is writer:
            if parent.touched is not None:
                parent.touched = parent.touched | {name}
            if new is not None and not new.is_empty():
                parent.children[name] = new
                return path[0]
            parent.children.pop(name, None)
            if up and parent.is_empty():
                new = None  # pruned in turn, from its own parent
                continue
            return path[0]
        children = dict(parent.children)
        if new is None or new.is_empty():
            children.pop(name, None)
        else:
            children[name] = new
        touched = frozenset((name,))
        new = Node(parent.value, parent.perms, children, parent.extra, None, parent, writer, touched)
    return new if new is not None else EMPTY
