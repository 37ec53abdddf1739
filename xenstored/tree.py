"""The xenstore tree in memory: :class:`Node` objects, and the functions that read them.

The tree is persistent in the functional sense: a change (see :mod:`xenstored.mutations`) copies the nodes
on the path to it and shares every other node, so a snapshot (a transaction's fork) is one reference, and two
versions share identical objects wherever they do not differ. (One exception, invisible from outside: a
transaction changes in place the nodes it built itself, which nobody else holds yet; see :class:`Writer`.)
A node learns its git id the first time it is written (see :mod:`xenstored.gittrees`), so that each commit
encodes only the nodes made since the last one, and it records which children it touched since its last
written version, so that a directory of hundreds is encoded by splicing only those. (The generic
:class:`store.Tree` would do, but a xenstore request touches a handful of nodes seven levels deep, and this
tree does that with dict lookups; see bench/xenstore_bench.py.)

Reads walk over explicit loops, never recursion: a client chooses how deep a tree goes.
"""

from __future__ import annotations

import functools
import hashlib

from store.objects import ObjectId
from xenstored.paths import Key
from xenstored.perms import DEFAULT_PERMISSIONS, Permissions

# A node's two blobs in git (see xenstored.gittrees); xenstore names never start with '.'.
VALUE = ".value"
PERMS = ".perms"
Encoding = tuple[dict[bytes, bytes], list[bytes]]  # git entries by sort key, and the sorted keys
_Unchanged = type(...)  # Node.derive's default, ``...``: keep the field as it is (None means "no blob")
Extra = tuple[str, bool, ObjectId]  # a git entry outside the encoding: (name, is_dir, id)


def is_reserved(name: str) -> bool:
    """Whether a git entry name cannot be a node's: the encoding's dot-files, or any other dot-file."""
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
        origin: The version this one was made from (until this one is encoded): the encoder splices from
            the nearest version along this chain that has an encoding.
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
        # Kept even while ``origin`` has no encoding: the journal may encode it before this version (it
        # writes the versions its queue holds, while requests keep making newer ones), and a splice from the
        # nearest encoded version looks at fewer children than one from an older version (see gittrees).
        self.origin = origin
        self.touched = touched

    def derive(self, value: bytes | _Unchanged | None = ..., perms: bytes | _Unchanged | None = ...) -> Node:
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
    return node_blob(lookup(tree, key[:-1]), key[-1]) if key else None


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


def node_blob(node: Node | None, leaf: str) -> bytes | None:
    """A node's blob by its name (``.value`` or ``.perms``), or None."""
    if node is None:
        return None
    return node.value if leaf == VALUE else node.perms if leaf == PERMS else None
