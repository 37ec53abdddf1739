"""Values in trees (git blobs), and the kinds of child a tree holds.

Kept apart from :mod:`store.tree` so that the modules that walk and encode trees (:mod:`store.treediff`,
:mod:`store.treewrite`) can tell a value from a directory without importing the tree class: a node that is
not a :class:`Leaf` is a tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from store.backend import ObjectReader
from store.objects import BLOB, ObjectId, object_id

if TYPE_CHECKING:
    from store.tree import Tree


class Leaf:
    """A value (git blob): its bytes, its id, or both, each computed on demand."""

    __slots__ = ("_backend", "_oid", "_stored", "_value")

    def __init__(
        self, backend: ObjectReader, oid: ObjectId | None = None, value: bytes | None = None
    ) -> None:
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


def is_dir(child: Child) -> bool:
    """Whether a child is a directory (a stored entry says so; a node in memory is one unless a leaf)."""
    return child[0] if isinstance(child, tuple) else not isinstance(child, Leaf)


def ident(child: Child | None) -> tuple[bool, ObjectId] | None:
    """(is_dir, id) of a tree entry, whether still stored or built in memory (None: absent)."""
    if child is None or isinstance(child, tuple):
        return child
    return (not isinstance(child, Leaf), child.oid)
