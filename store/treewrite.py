"""How trees built in memory become git objects: hashed children before parents, encoded by splicing the raw
bytes of the tree they came from where possible, and collected (only along changed paths) for a write.

The functions here work on :class:`store.tree.Tree` internals on its behalf; :class:`~store.tree.Tree` calls
them from ``oid``, ``new_objects`` and ``mark_stored``. A node that is not a :class:`~store.leaf.Leaf` (nor a
stored ``(is_dir, id)`` entry) is a tree.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from store.leaf import Child, Leaf, is_dir
from store.objects import BLOB, TREE, ObjectId, encode_entry, locate_entry, object_id, tree_sort_key

if TYPE_CHECKING:
    from store.tree import Tree


def hash_new_trees(root: Tree) -> None:
    """Give ``root`` and every unhashed tree it needs an id, children before parents, with an explicit
    stack: each tree is encoded once its subtrees' ids are known."""
    stack: list[tuple[Tree, bool]] = [(root, False)]
    while stack:
        tree, ready = stack.pop()
        if tree._oid is not None:
            continue  # hashed already (a subtree shared by two parents)
        if ready:
            raw = splice(tree)
            if raw is None:
                raw = encode(tree)
            tree._raw = raw
            tree._oid = object_id(TREE, raw)
            continue
        stack.append((tree, True))
        stack.extend((child, False) for child in _unhashed_children(tree))


def _unhashed_children(tree: Tree) -> Iterator[Tree]:
    """The in-memory subtrees whose ids encoding ``tree`` needs and that are not hashed yet: the changed
    entries when it will be spliced from its origin, else every entry."""
    entries = tree._entries()
    if tree._origin is not None:
        for name in tree._origin[1]:
            child = entries.get(name)
            if child is not None and not isinstance(child, tuple | Leaf) and child._oid is None:
                yield child
        return
    for child in entries.values():
        if not isinstance(child, tuple | Leaf) and child._oid is None:
            yield child


def encode(tree: Tree) -> bytes:
    """Encode every entry (a tree built from nothing, or one that cannot be spliced)."""
    keyed = []
    for name, child in tree._entries().items():
        encoded = name.encode("utf-8", "surrogateescape")
        if isinstance(child, tuple):
            child_is_dir, oid = child
        else:
            child_is_dir, oid = not isinstance(child, Leaf), child.oid
        keyed.append((tree_sort_key(encoded, child_is_dir), encoded, child_is_dir, oid))
    keyed.sort()
    tree._keys = [key for key, _, _, _ in keyed]
    return b"".join(encode_entry(name, child_is_dir, oid) for _, name, child_is_dir, oid in keyed)


def splice(tree: Tree) -> bytes | None:
    """Encode ``tree`` by editing the raw bytes of the tree it came from at the changed entries only; None
    if it came from none.

    A replaced entry is found with a byte search; an inserted one goes where a binary search of the
    origin's sorted entry keys puts it; a removed one is cut out. A commit that adds a task to a directory
    of thousands then costs O(log n) comparisons and a copy of the bytes, not a Python-level re-encoding
    of every sibling. The sorted keys are handed on to the new tree for the next insertion.
    """
    if tree._origin is None:
        return None
    previous, names = tree._origin
    tree._origin = None
    old_entries, new_entries = previous._entries(), tree._entries()
    raw = previous._raw_bytes()
    old_keys = previous._sorted_keys()
    keys = list(old_keys)
    # (start, end, sort key, replacement) over the origin's bytes; an insertion is an empty range.
    edits: list[tuple[int, int, bytes, bytes]] = []
    for name in names:
        old, new = old_entries.get(name), new_entries.get(name)
        if old is None and new is None:
            continue
        encoded = name.encode("utf-8", "surrogateescape")
        start = end = 0
        old_key = b""
        if old is not None:
            old_key = tree_sort_key(encoded, is_dir(old))
            start, end = locate_entry(raw, encoded, is_dir(old))
        if new is None:
            edits.append((start, end, old_key, b""))
            del keys[bisect_left(keys, old_key)]
            continue
        new_is_dir = is_dir(new)
        new_key = tree_sort_key(encoded, new_is_dir)
        entry = encode_entry(encoded, new_is_dir, new[1] if isinstance(new, tuple) else new.oid)
        if old is not None and old_key == new_key:
            edits.append((start, end, new_key, entry))
            continue
        if old is not None:
            edits.append((start, end, old_key, b""))  # a value became a directory, or back
            del keys[bisect_left(keys, old_key)]
        at = bisect_left(old_keys, new_key)
        if at < len(old_keys):
            successor = old_keys[at]
            successor_is_dir = successor.endswith(b"/")
            gap = locate_entry(raw, successor[:-1] if successor_is_dir else successor, successor_is_dir)[0]
        else:
            gap = len(raw)
        edits.append((gap, gap, new_key, entry))
        insort(keys, new_key)
    # In byte order; at one offset, insertions (empty ranges) come before the entry they precede, and
    # among themselves go by sort key.
    edits.sort()
    parts = []
    position = 0
    for start, end, _, replacement in edits:
        parts.append(raw[position:start])
        parts.append(replacement)
        position = end
    parts.append(raw[position:])
    tree._keys = keys
    return b"".join(parts)


def _maybe_new_children(tree: Tree) -> Iterable[Child]:
    entries = tree._entries()
    if tree._dirty is None:
        return entries.values()
    return [entries[name] for name in tree._dirty if name in entries]


def collect(root: Tree, out: list[tuple[ObjectId, int, bytes]]) -> None:
    """Append the objects under ``root`` that may be new, children before parents, in entry order."""
    if root._oid is None:
        hash_new_trees(root)  # first, so that every new tree has its raw bytes
    # Items: a tree to visit, a leaf to emit, or (tree,) to emit a visited tree after its children.
    stack: list[Tree | Leaf | tuple[Tree]] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, Leaf):
            if item.is_new:
                out.append((item.oid, BLOB, item.value))
            continue
        if isinstance(item, tuple):
            tree = item[0]
            # A tree whose id came from the repository but whose children were materialised has no raw
            # bytes: it is stored already.
            if tree._raw is not None:
                out.append((tree.oid, TREE, tree._raw))
            continue
        if item._stored:
            continue
        stack.append((item,))
        children = [c for c in _maybe_new_children(item) if not isinstance(c, tuple)]
        stack.extend(reversed(children))


def mark_stored(root: Tree) -> None:
    """Record that every object of ``root`` is now in the repository (after a write)."""
    stack: list[Tree] = [root]
    while stack:
        tree = stack.pop()
        if tree._stored:
            continue
        for child in _maybe_new_children(tree):
            if isinstance(child, Leaf):
                child._stored = True
            elif not isinstance(child, tuple):
                stack.append(child)
        tree._stored = True
