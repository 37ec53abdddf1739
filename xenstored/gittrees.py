"""The xenstore tree as plain git trees: :func:`load` reads one, :class:`GitEncoder` writes.

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
"""

from __future__ import annotations

import bisect
from binascii import unhexlify
from typing import TypeVar

from store.backend import Backend
from store.objects import BLOB, TREE, ObjectId, object_id
from xenstored.tree import PERMS, VALUE, Encoding, Extra, Node, is_reserved

GitObject = tuple[ObjectId, int, bytes]
_K = TypeVar("_K")
_V = TypeVar("_V")


def _nearest_encoded(node: Node) -> Node | None:
    """The nearest earlier version of an unencoded ``node`` that has an encoding (None: there is none).

    Walks the chain of versions it was made from, and shortens it: ``node`` then names that version as its
    origin, with the children any version on the way touched, so that the walk is made once. The versions
    in between were made by requests while the journal encoded their predecessors: splicing from the
    newest encoded one looks only at what changed since, not at everything since an older one.
    """
    origin = node.origin
    if origin is None or origin.encoding is not None:
        return origin
    touched = node.touched
    while origin is not None and origin.encoding is None:
        if touched is not None:
            touched = None if origin.touched is None else touched | origin.touched
        origin = origin.origin
    node.origin, node.touched = origin, touched
    return origin


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

    Blob ids of small values are cached: most values ("1", "", a permission list) recur constantly. So are
    the encodings of leaves with small blobs: a boot storm makes the same leaf (``memory/target`` =
    ``1048576``, owned by dom0) under every VM, and a leaf is a git tree like any node. Each cache drops its
    oldest entry when full. An id is cached once its object is collected: the journal writes every object
    it takes, retrying until it can, so a cached id always names an object that is (or will be) written.
    """

    BLOB_CACHE = 8192
    LEAF_CACHE = 8192
    SMALL = 256

    def __init__(self) -> None:
        self._blobs: dict[bytes, ObjectId] = {}
        self._leaves: dict[tuple[bytes | None, bytes | None], tuple[ObjectId, Encoding]] = {}
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
        origin = _nearest_encoded(node)
        return origin is not None and origin.extra == node.extra

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
        leaf = self._leaf_key(node)
        if leaf is not None:
            known = self._leaves.get(leaf)
            if known is not None:
                node.oid, node.encoding = known
                node.origin = None
                return
        if self._spliceable(node):
            origin = node.origin  # the nearest encoded version, now
            entries, order = self._splice(node, origin, origin.encoding)  # type: ignore[arg-type,union-attr]
        else:
            entries, order = self._encode(node)
        raw = b"".join(map(entries.__getitem__, order))
        oid = object_id(TREE, raw)
        self.objects.append((oid, TREE, raw))
        node.oid = oid
        node.encoding = (entries, order)
        node.origin = None
        if leaf is not None:
            _remember(self._leaves, leaf, (oid, node.encoding), self.LEAF_CACHE)

    def _leaf_key(self, node: Node) -> tuple[bytes | None, bytes | None] | None:
        """What a leaf's encoding depends on, if ``node`` is a leaf whose blobs are small (else None)."""
        if node.children or node.extra:
            return None
        value, perms = node.value, node.perms
        if (value is not None and len(value) > self.SMALL) or (perms is not None and len(perms) > self.SMALL):
            return None
        return perms, value

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
            _remember(self._blobs, data, oid, self.BLOB_CACHE)
        return oid


def _remember(cache: dict[_K, _V], key: _K, value: _V, size: int) -> None:
    """Cache ``value`` under ``key``, dropping the oldest entry if the cache is full (dicts keep their
    insertion order), rather than emptying it: a daemon's working set stays cached."""
    if len(cache) >= size:
        del cache[next(iter(cache))]
    cache[key] = value
