"""Xenstore nodes: a persistent in-memory tree that is written to git as plain git trees.

Encoding in git (readable with plain ``git show``):

- every node is a git directory at its path: ``/local/domain/3`` is the directory ``local/domain/3``, and the
  root node ``/`` is the commit's root tree;
- the directory holds ``.value`` (a blob: the node's raw value) and ``.perms`` (a blob: its permission list,
  one entry per line, owner first, e.g. ``b3\\nr0\\n``);
- each child node is a subdirectory under its own name. Xenstore names never contain ``.``, so children can
  never collide with the two reserved dot-files and no escaping is needed.

So ``git show main:local/domain/3/name/.value`` prints a node's value and ``git show main:local/domain/3``
lists its children. A directory that lacks ``.value`` or ``.perms`` (left by a merge, or by another writer
of the repository) still is a node: its value reads as empty and its permissions are its parent's, which is
exactly what xenstore gives a node created implicitly as the parent of another. Entries that are not part of
the encoding (a blob under a node's name, another dot-file) are kept as they are and written back unchanged.

In memory the state is a tree of :class:`Node` objects, persistent in the functional sense: a change copies
the nodes on the path to it and shares every other node, so a snapshot (a transaction's fork) is one
reference, and two versions share identical objects wherever they do not differ. (One exception, invisible
from outside: a transaction changes in place the nodes it built itself, which nobody else holds yet; see
:class:`Writer`.) A node learns its git id the first time it is written, so that each commit encodes only
the nodes made since the last one, and it records which children it touched since its last written
version, so that a directory of hundreds is encoded by splicing only those. (The
generic :class:`store.Tree` would do, but a xenstore request touches a handful of nodes seven levels deep,
and this tree does that with dict lookups; see bench/xenstore_bench.py.)
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from binascii import unhexlify
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from store.backend import Backend
from store.objects import BLOB, TREE, ObjectId, object_id
from xenstored.paths import Key
from xenstored.perms import DEFAULT_PERMISSIONS, Caller, Permissions

VALUE = ".value"
PERMS = ".perms"

GitObject = tuple[ObjectId, int, bytes]
Encoding = tuple[dict[bytes, bytes], list[bytes]]  # git entries by sort key, and the sorted keys
_Same = type(...)
Extra = tuple[str, bool, ObjectId]  # a git entry outside the encoding: (name, is_dir, id)


def is_reserved(name: str) -> bool:
    return name.startswith(".")


class Writer:
    """A transaction's right to change, in place, the nodes it built and nobody else holds yet.

    A transaction's tree is private until TRANSACTION_END: copying the path from the root on each of its
    writes (as a write to the shared state must) would be wasted work, so the nodes a transaction creates
    carry its writer and its later writes change them in place. The writer is dropped with the transaction,
    after which those nodes are as immutable as any other.
    """

    __slots__ = ()


class Node:
    """One node: its value, its stored permissions and its children. Never changed once shared: only the
    transaction whose :class:`Writer` built it changes it, in place, before anyone else sees it.

    Attributes:
        value: The stored value (None: no ``.value`` blob; reads as empty).
        perms: The stored permission list (None: no ``.perms`` blob; inherited from the parent).
        children: Child nodes by name.
        extra: Git entries that are not part of the encoding, kept verbatim.
        oid: The node's git tree id, once known (cached; the node never changes).
        encoding: Once encoded, its git entries by sort key and their order, so that a later version of
            the node is encoded by splicing rather than from scratch.
        origin: The nearest earlier version of this node that has an encoding (until this one is encoded).
        touched: The names of the children that may differ from ``origin``'s (None: unknown, any may), so
            that splicing a directory of hundreds does not compare them all.
        writer: The transaction that may still change this node in place (None: nobody may).
    """

    __slots__ = ("children", "encoding", "extra", "oid", "origin", "perms", "touched", "value", "writer")

    def __init__(
        self,
        value: bytes | None,
        perms: bytes | None,
        children: dict[str, Node],
        extra: tuple[Extra, ...] = (),
        oid: ObjectId | None = None,
        origin: Node | None = None,
        writer: Writer | None = None,
        touched: frozenset[str] | None = None,
    ) -> None:
        """``touched``: the children that may differ from those of ``origin`` (the version this one is
        made from), if known."""
        self.value = value
        self.perms = perms
        self.children = children
        self.extra = extra
        self.oid = oid
        self.encoding: Encoding | None = None
        self.writer = writer
        if origin is None or origin.encoding is not None:
            self.origin = origin
            self.touched = touched
        else:  # splice from origin's own origin: what either version touched
            self.origin = origin.origin
            previous = origin.touched
            self.touched = None if touched is None or previous is None else previous | touched

    def derive(self, value: bytes | _Same | None = ..., perms: bytes | _Same | None = ...) -> Node:
        """A new version of this node with its value or permissions replaced (same children)."""
        return Node(
            self.value if value is ... else value,  # type: ignore[arg-type]
            self.perms if perms is ... else perms,  # type: ignore[arg-type]
            self.children,
            self.extra,
            origin=self,
            touched=NO_NAMES,
        )

    def is_empty(self) -> bool:
        return self.value is None and self.perms is None and not self.children and not self.extra

    def __repr__(self) -> str:
        return f"Node(value={self.value!r}, perms={self.perms!r}, children={sorted(self.children)!r})"


EMPTY = Node(None, None, {})
NO_NAMES: frozenset[str] = frozenset()


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


# -- reading -------------------------------------------------------------------------------------------------
def lookup(tree: Node, key: Key) -> Node | None:
    node: Node | None = tree
    for name in key:
        node = node.children.get(name)  # type: ignore[union-attr]
        if node is None:
            return None
    return node


def exists(tree: Node, key: Key) -> bool:
    return lookup(tree, key) is not None


def value(tree: Node, key: Key) -> bytes | None:
    """The node's value, or None if there is no such node."""
    node = lookup(tree, key)
    if node is None:
        return None
    return node.value or b""


def blob(tree: Node, key: Key) -> bytes | None:
    """A blob of the encoding by its key (``(*node, ".value")``), or None."""
    return _leaf(lookup(tree, key[:-1]), key[-1]) if key else None


@functools.lru_cache(maxsize=4096)
def decode_permissions(stored: bytes) -> Permissions | None:
    return Permissions.decode(stored)


@functools.lru_cache(maxsize=4096)
def encode_permissions(perms: Permissions) -> bytes:
    return perms.encode()


def permissions(tree: Node, key: Key) -> Permissions:
    """The node's permissions, inherited from the nearest ancestor that records some."""
    found = DEFAULT_PERMISSIONS
    node: Node | None = tree
    depth = 0
    while node is not None:
        if node.perms is not None:
            decoded = decode_permissions(node.perms)
            if decoded is not None:
                found = decoded
        if depth == len(key):
            break
        node = node.children.get(key[depth])
        depth += 1
    return found


def nearest(tree: Node, key: Key) -> tuple[int, Permissions]:
    """How deep ``key`` exists (``len(key)``: all of it), and the permissions of its deepest existing node."""
    found = DEFAULT_PERMISSIONS
    node = tree
    depth = 0
    while True:
        if node.perms is not None:
            found = decode_permissions(node.perms) or found
        if depth == len(key):
            return depth, found
        child = node.children.get(key[depth])
        if child is None:
            return depth, found
        node = child
        depth += 1


def children(tree: Node, key: Key) -> list[str]:
    """Child names, sorted (as oxenstored lists them)."""
    node = lookup(tree, key)
    return [] if node is None else sorted(node.children)


def fingerprint(tree: Node, key: Key) -> tuple[bytes | None, bytes | None, tuple[str, ...]] | None:
    """What a reader of the node can observe (value, permissions, children); None if absent.

    Two trees with equal fingerprints at a node look the same to READ, GET_PERMS and DIRECTORY there: this
    plays the part of C xenstored's per-node generation count.
    """
    node = lookup(tree, key)
    if node is None:
        return None
    return node.value, node.perms, tuple(sorted(node.children))


def same_subtree(a: Node | None, b: Node | None) -> bool:
    """Whether two subtrees hold the same nodes (shared nodes are compared by identity).

    A loop over an explicit stack rather than recursion: a client chooses how deep a tree goes.
    """
    pairs = [(a, b)]
    while pairs:
        a, b = pairs.pop()
        if a is b:
            continue
        if a is None or b is None:
            return False
        if a.oid is not None and a.oid == b.oid:
            continue
        if (a.value, a.perms, a.extra) != (b.value, b.perms, b.extra):
            return False
        if a.children.keys() != b.children.keys():
            return False
        b_children = b.children
        pairs.extend((child, b_children[name]) for name, child in a.children.items())
    return True


def generation(tree: Node, key: Key) -> int:
    """A number that changes whenever the node's children change (for DIRECTORY_PART)."""
    digest = hashlib.blake2b("\0".join(children(tree, key)).encode("ascii"), digest_size=6).digest()
    return int.from_bytes(digest, "big")


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


def count_owners(tree: Node) -> dict[int, int]:
    """Nodes that record an owner, per owner."""
    counts: dict[int, int] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.perms is not None:
            decoded = decode_permissions(node.perms)
            if decoded is not None:
                counts[decoded.owner] = counts.get(decoded.owner, 0) + 1
        stack.extend(node.children.values())
    return counts


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
        old = _leaf(node, leaf)
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


def merge(base: Node, ours: Node, theirs: Node) -> Mutation:
    """Three-way merge, node by node: ``theirs`` (a transaction forked at ``base``) onto ``ours`` (the state
    now).

    Every field a side left as it was at ``base`` takes the other side's version; a field both changed
    takes theirs (the transaction writes last, as in C xenstored, where nodes only written are last-writer-
    wins; nodes it read were checked unchanged before). Subtrees shared with ``base`` are not visited.

    Returns:
        The merged tree, and the changes from ``ours`` to it.
    """
    changes: list[LeafChange] = []
    merged = _merge(base, ours, theirs, (), changes)
    return Mutation(merged if merged is not None else EMPTY, changes)


def _leaf(node: Node | None, leaf: str) -> bytes | None:
    if node is None:
        return None
    return node.value if leaf == VALUE else node.perms if leaf == PERMS else None


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


def _diff(old: Node | None, new: Node | None, key: Key, changes: list[LeafChange]) -> None:
    """The blob changes that turn subtree ``old`` into ``new`` (parents before their children; an explicit
    stack, as the depth is the client's)."""
    stack = [(old, new, key)]
    while stack:
        old, new, key = stack.pop()
        if old is new:
            continue
        if new is None:
            changes.extend(leaves(old, key, removed=True))  # type: ignore[arg-type]
            continue
        if old is None:
            changes.extend(leaves(new, key))
            continue
        if old.perms != new.perms:
            changes.append(LeafChange((*key, PERMS), old.perms, new.perms))
        if old.value != new.value:
            changes.append(LeafChange((*key, VALUE), old.value, new.value))
        differing = {name for name, _ in new.children.items() - old.children.items()}
        differing.update(old.children.keys() - new.children.keys())
        for name in differing:
            stack.append((old.children.get(name), new.children.get(name), (*key, name)))


class _MergeFrame:
    """A node of a three-way merge whose changed children are still being merged (see :func:`_merge`)."""

    __slots__ = (
        "changed",
        "children",
        "extra",
        "key",
        "name",
        "ours",
        "pending",
        "perms",
        "start",
        "theirs",
        "value",
    )

    def __init__(
        self,
        ours: Node,
        start: Node,
        theirs: Node,
        key: Key,
        fields: tuple[bytes | None, bytes | None, tuple[Extra, ...]],
        changed: set[str],
    ) -> None:
        self.ours, self.start, self.theirs, self.key = ours, start, theirs, key
        self.value, self.perms, self.extra = fields
        self.changed = changed
        self.pending = list(changed)
        self.children = ours.children
        self.name = ""  # its name under its parent frame

    def adopt(self, name: str, child: Node | None) -> None:
        """Take the merged version of child ``name``."""
        if child is self.ours.children.get(name):
            return
        if self.children is self.ours.children:
            self.children = dict(self.ours.children)
        if child is None:
            self.children.pop(name, None)
        else:
            self.children[name] = child

    def result(self) -> Node | None:
        ours = self.ours
        if (self.value, self.perms, self.extra) == (ours.value, ours.perms, ours.extra) and (
            self.children is ours.children
        ):
            return None if ours.is_empty() else ours
        touched = NO_NAMES if self.children is ours.children else frozenset(self.changed)
        merged = Node(self.value, self.perms, self.children, self.extra, origin=ours, touched=touched)
        return None if merged.is_empty() else merged


def _merge_node(
    base: Node | None, ours: Node | None, theirs: Node | None, key: Key, changes: list[LeafChange]
) -> tuple[Node | None, _MergeFrame | None]:
    """Merge one node's own fields: the merged node if that settles it, else a frame whose changed
    children are left to merge."""
    if theirs is base or theirs is ours:
        return ours, None
    if ours is base:
        _diff(ours, theirs, key, changes)
        return theirs, None
    if theirs is None:
        _diff(ours, None, key, changes)  # the transaction removed it: it read the whole subtree to do so
        return None, None
    if ours is None:
        # Removed meanwhile and changed by the transaction: its changes come back (and create the node),
        # but what it did not touch stays removed.
        ours = EMPTY
    start = base if base is not None else EMPTY
    value = theirs.value if theirs.value != start.value else ours.value
    perms = theirs.perms if theirs.perms != start.perms else ours.perms
    extra = theirs.extra if theirs.extra != start.extra else ours.extra
    if perms != ours.perms:
        changes.append(LeafChange((*key, PERMS), ours.perms, perms))
    if value != ours.value:
        changes.append(LeafChange((*key, VALUE), ours.value, value))
    # Only the children the transaction changed: the rest of a directory of hundreds is not visited.
    changed = {name for name, _ in theirs.children.items() - start.children.items()}
    changed.update(start.children.keys() - theirs.children.keys())
    return None, _MergeFrame(ours, start, theirs, key, (value, perms, extra), changed)


def _merge(
    base: Node | None, ours: Node | None, theirs: Node | None, key: Key, changes: list[LeafChange]
) -> Node | None:
    """The three-way merge of one subtree, depth first over an explicit stack of frames (a client chooses
    how deep the tree goes: recursion would let it overflow the interpreter's stack)."""
    merged, frame = _merge_node(base, ours, theirs, key, changes)
    if frame is None:
        return merged
    stack = [frame]
    while True:
        top = stack[-1]
        if top.pending:
            name = top.pending.pop()
            child, child_frame = _merge_node(
                top.start.children.get(name),
                top.ours.children.get(name),
                top.theirs.children.get(name),
                (*top.key, name),
                changes,
            )
            if child_frame is None:
                top.adopt(name, child)
            else:
                child_frame.name = name
                stack.append(child_frame)
            continue
        stack.pop()
        merged = top.result()
        if not stack:
            return merged
        stack[-1].adopt(top.name, merged)


# -- git -----------------------------------------------------------------------------------------------------
def load(backend: Backend, oid: ObjectId) -> Node:
    """The node tree of a git tree (every node knows its id: nothing is written again).

    Walked over an explicit stack: the repository may hold a tree as deep as any client made it.
    """
    top: dict[str, Node] = {}
    pending: list[tuple[ObjectId, dict[str, Node], str]] = [(oid, top, "")]
    while pending:
        tree_oid, parent_children, name = pending.pop()
        perms: bytes | None = None
        node_value: bytes | None = None
        kids: dict[str, Node] = {}
        extra: list[Extra] = []
        for entry, (is_dir, child) in backend.tree_entries(tree_oid).items():
            if entry == VALUE and not is_dir:
                node_value = backend.blob(child)
            elif entry == PERMS and not is_dir:
                perms = backend.blob(child)
            elif is_dir and not is_reserved(entry):
                pending.append((child, kids, entry))  # filled in before anyone sees this node
            else:
                extra.append((entry, is_dir, child))
        parent_children[name] = Node(node_value, perms, kids, tuple(extra), tree_oid)
    return top[""]


class GitEncoder:
    """Gives nodes their git ids, collecting the objects not written yet.

    Blob ids of small values are cached: most values ("1", "", a permission list) recur constantly.
    """

    BLOB_CACHE = 8192
    SMALL = 256

    def __init__(self) -> None:
        self._blobs: dict[bytes, ObjectId] = {}
        self.objects: list[GitObject] = []

    def take(self) -> list[GitObject]:
        """The objects collected since the last call."""
        objects, self.objects = self.objects, []
        return objects

    def tree_id(self, node: Node) -> ObjectId:
        """The node's git tree id, encoding it and every node below it that has none yet.

        Children are encoded before their parents, over an explicit stack: a client chooses how deep the
        tree goes, and recursion would overflow the interpreter's stack (a path of 600 components did).
        """
        if node.oid is not None:
            return node.oid
        stack: list[tuple[Node, bool]] = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if current.oid is not None:  # a node shared by two parents: encoded already
                continue
            if expanded:
                self._encode_node(current)
                continue
            stack.append((current, True))
            stack.extend((child, False) for child in self._unencoded_children(current))
        assert node.oid is not None
        return node.oid

    def _spliceable(self, node: Node) -> bool:
        origin = node.origin
        return origin is not None and origin.encoding is not None and origin.extra == node.extra

    def _unencoded_children(self, node: Node) -> list[Node]:
        """The children the encoding of ``node`` will need ids of and that have none yet: with a splice,
        only those it touched (see :meth:`_splice`)."""
        children = node.children
        if not self._spliceable(node):
            return [child for child in children.values() if child.oid is None]
        before = node.origin.children  # type: ignore[union-attr]
        if children is before:
            return []
        names = node.touched
        if names is None:
            names = {name for name, _ in children.items() - before.items()}
        out = []
        for name in names:
            child = children.get(name)
            if child is not None and child.oid is None and child is not before.get(name):
                out.append(child)
        return out

    def _encode_node(self, node: Node) -> None:
        """Encode one node whose children the encoding needs all have ids."""
        origin = node.origin
        if origin is not None and self._spliceable(node):
            entries, order = self._splice(node, origin, origin.encoding)  # type: ignore[arg-type]
        else:
            entries, order = self._encode(node)
        raw = b"".join(map(entries.__getitem__, order))
        oid = object_id(TREE, raw)
        self.objects.append((oid, TREE, raw))
        node.oid = oid
        node.encoding = (entries, order)
        node.origin = None

    def _encode(self, node: Node) -> Encoding:
        # git's entry order: by name, a directory's name read as if it ended in "/".
        entries: dict[bytes, bytes] = {}
        if node.perms is not None:
            entries[b".perms"] = b"100644 .perms\0" + unhexlify(self.blob_id(node.perms))
        if node.value is not None:
            entries[b".value"] = b"100644 .value\0" + unhexlify(self.blob_id(node.value))
        for name, child in node.children.items():
            encoded = name.encode("utf-8", "surrogateescape")
            entries[encoded + b"/"] = b"40000 " + encoded + b"\0" + unhexlify(self.tree_id(child))
        for name, is_dir, extra_oid in node.extra:
            encoded = name.encode("utf-8", "surrogateescape")
            entry = (b"40000 " if is_dir else b"100644 ") + encoded + b"\0" + unhexlify(extra_oid)
            entries[encoded + b"/" if is_dir else encoded] = entry
        return entries, sorted(entries)

    def _splice(self, node: Node, origin: Node, encoding: Encoding) -> Encoding:
        """The entries of ``node`` from those of an earlier version: only what differs is encoded, and
        only the children ``node`` says it touched are looked at."""
        entries = dict(encoding[0])
        added: list[bytes] = []
        dropped: list[bytes] = []
        for sort_key, old, new in (
            (b".perms", origin.perms, node.perms),
            (b".value", origin.value, node.value),
        ):
            if old != new:
                if new is None:
                    del entries[sort_key]
                    dropped.append(sort_key)
                else:
                    if old is None:
                        added.append(sort_key)
                    entries[sort_key] = b"100644 " + sort_key + b"\0" + unhexlify(self.blob_id(new))
        children, before = node.children, origin.children
        if children is not before:
            names = node.touched
            if names is None:
                names = {name for name, _ in children.items() - before.items()}
                names.update(before.keys() - children.keys())
            for name in names:
                child = children.get(name)
                if child is before.get(name):
                    continue
                encoded = name.encode("utf-8", "surrogateescape")
                sort_key = encoded + b"/"
                if child is None:
                    del entries[sort_key]
                    dropped.append(sort_key)
                else:
                    if sort_key not in entries:
                        added.append(sort_key)
                    entries[sort_key] = b"40000 " + encoded + b"\0" + unhexlify(self.tree_id(child))
        order = encoding[1]
        if added or dropped:
            order = list(order)  # shared with the earlier version: never changed in place
            for sort_key in dropped:
                del order[bisect.bisect_left(order, sort_key)]
            for sort_key in added:
                bisect.insort(order, sort_key)
        return entries, order

    def blob_id(self, data: bytes) -> ObjectId:
        small = len(data) <= self.SMALL
        if small:
            known = self._blobs.get(data)
            if known is not None:
                return known
        oid = object_id(BLOB, data)
        self.objects.append((oid, BLOB, data))
        if small:
            if len(self._blobs) >= self.BLOB_CACHE:
                self._blobs.clear()
            self._blobs[data] = oid
        return oid
