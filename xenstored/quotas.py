"""Quotas, with the reference daemons' defaults, and the per-domain node count they need.

As in C xenstored, quotas bind unprivileged domains; dom0 is only held to hard safety limits that keep one
runaway client from exhausting the daemon's memory.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from xenstored.nodes import PERMS, LeafChange, Node, count_owners, decode_permissions


@dataclass
class Quotas:
    """Limits for unprivileged domains (C xenstored's defaults), and hard limits for everyone.

    Attributes:
        nodes: Nodes a domain may own.
        watches: Watches a domain may hold.
        value_size: Bytes in one node's value.
        transactions: Open transactions per connection.
        path_max: Bytes in a node path below the domain's home (C xenstored's ``path-max`` quota, whose
            default is XENSTORE_REL_PATH_MAX, 2,048; neither reference daemon limits a path's depth).
        hard_watches: Watches per connection, for every caller.
        hard_transactions: Open transactions per connection, for every caller.
    """

    nodes: int = 1000
    watches: int = 128
    value_size: int = 2048
    transactions: int = 10
    path_max: int = 2048
    hard_watches: int = 8192
    hard_transactions: int = 1024

    def describe(self) -> str:
        return "".join(f"{name} {value}\n" for name, value in vars(self).items())

    def set(self, name: str, value: int) -> None:
        """Change one limit (CONTROL quota).

        Raises:
            KeyError: No such quota.
        """
        if name not in vars(self):
            raise KeyError(name)
        setattr(self, name, value)


@functools.lru_cache(maxsize=4096)  # a handful of distinct lists; counted on every change of every request
def owner_of(stored: bytes | None) -> int | None:
    if stored is None:
        return None
    perms = decode_permissions(stored)
    return None if perms is None else perms.owner


def owner_deltas(changes: Iterable[LeafChange]) -> dict[int, int]:
    """How many nodes each domain gains (or loses) through these changes."""
    deltas: dict[int, int] = {}
    for key, old_perms, new_perms in changes:
        if key and key[-1] == PERMS:
            old, new = owner_of(old_perms), owner_of(new_perms)
            if old != new:
                if old is not None:
                    deltas[old] = deltas.get(old, 0) - 1
                if new is not None:
                    deltas[new] = deltas.get(new, 0) + 1
    return deltas


class NodeCounts:
    """Nodes owned per domain, kept up to date from every change applied to the state."""

    def __init__(self, tree: Node) -> None:
        self._counts: Counter[int] = Counter(count_owners(tree))

    def apply(self, changes: Iterable[LeafChange]) -> None:
        self._counts.update(owner_deltas(changes))

    def __getitem__(self, domid: int) -> int:
        return self._counts[domid]
