"""Xenstore nodes: a persistent in-memory tree that is written to git as plain git trees.

The one module to use them through (``from xenstored import nodes``, then ``nodes.write(...)``). They are
defined by responsibility in:

- :mod:`xenstored.tree`: the :class:`Node` model (persistent, shared between versions) and the reads;
- :mod:`xenstored.mutations`: the changes (``write``, ``mkdir``, ``set_permissions``, ``remove``, ``apply``),
  each returning a :class:`Mutation` with the blobs it changed;
- :mod:`xenstored.merge`: the three-way merge of a transaction's tree onto the state now;
- :mod:`xenstored.gittrees`: the encoding as git trees (``git show main:local/domain/3/name/.value`` prints
  a node's value): ``load`` and :class:`GitEncoder`.
"""

from __future__ import annotations

from xenstored.gittrees import GitEncoder, GitObject, load
from xenstored.merge import merge
from xenstored.mutations import LeafChange, Mutation, apply, leaves, mkdir, remove, set_permissions, write
from xenstored.tree import (
    EMPTY,
    NO_NAMES,
    PERMS,
    VALUE,
    Encoding,
    Extra,
    Node,
    Writer,
    blob,
    children,
    count_owners,
    decode_permissions,
    encode_permissions,
    exists,
    fingerprint,
    generation,
    is_reserved,
    lookup,
    nearest,
    node_blob,
    permissions,
    same_subtree,
    value,
)

__all__ = [
    "EMPTY",
    "NO_NAMES",
    "PERMS",
    "VALUE",
    "Encoding",
    "Extra",
    "GitEncoder",
    "GitObject",
    "LeafChange",
    "Mutation",
    "Node",
    "Writer",
    "apply",
    "blob",
    "children",
    "count_owners",
    "decode_permissions",
    "encode_permissions",
    "exists",
    "fingerprint",
    "generation",
    "is_reserved",
    "leaves",
    "load",
    "lookup",
    "merge",
    "mkdir",
    "nearest",
    "node_blob",
    "permissions",
    "remove",
    "same_subtree",
    "set_permissions",
    "value",
    "write",
]
