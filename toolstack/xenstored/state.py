"""The authoritative xenstore state: the latest tree, in memory, and the queue of changes to commit.

Every change (a request outside a transaction, a transaction's merge, or changes found in the repository
from another writer) is applied here, in one order, under one lock. Applying it also updates the per-domain
node counts and fires watches, so that readers and watchers see a change as soon as it is made; the
:class:`~toolstack.xenstored.journal.GitJournal` then commits the queued changes to the branch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from store import Tree
from toolstack.xenstored import nodes
from toolstack.xenstored.nodes import LeafChange, Mutation
from toolstack.xenstored.perms import DEFAULT_PERMISSIONS, Caller
from toolstack.xenstored.quotas import NodeCounts, Quotas
from toolstack.xenstored.watches import WatchRegistry

INITIAL_NODES = ("local", "local/domain", "local/domain/0", "tool", "tool/xenstored")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One change waiting to be committed.

    Attributes:
        seq: Its place in the order of changes (1, 2, ...).
        author: Who made it ("dom3").
        lines: What it did: a subject line, then details.
    """

    seq: int
    author: str
    lines: tuple[str, ...]


class State:
    """The latest tree and everything that must change with it.

    Args:
        tree: The tree at the branch head when the daemon starts.
        quotas: The quotas in force.
    """

    def __init__(self, tree: Tree, quotas: Quotas) -> None:
        self.lock = threading.RLock()
        self.tree = tree
        self.quotas = quotas
        self.watches = WatchRegistry(quotas)
        self.counts = NodeCounts(tree)
        self._pending: list[JournalEntry] = []
        self._seq = 0
        self._wake: Callable[[], None] = lambda: None
        if tree.get(nodes.PERMS) is None:
            self._initialise()

    def _initialise(self) -> None:
        dom0 = Caller(0)

        def layout(tree: Tree) -> Mutation:
            mutation = nodes.set_permissions(tree, (), DEFAULT_PERMISSIONS)
            mutation.then(nodes.write(mutation.tree, (), tree.get(nodes.VALUE) or b"", dom0))
            for path in INITIAL_NODES:
                mutation.then(nodes.mkdir(mutation.tree, tuple(path.split("/")), dom0))
            return mutation

        self.mutate(dom0, ["initialise the store layout: / /local/domain/0 /tool/xenstored"], layout)

    def on_change(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (from any thread) whenever a change is queued for commit."""
        self._wake = wake

    @property
    def last_seq(self) -> int:
        return self._seq

    def mutate(self, caller: Caller, lines: list[str], change: Callable[[Tree], Mutation]) -> int | None:
        """Compute a change on the latest tree and apply it, atomically.

        Args:
            caller: The author.
            lines: The commit message: a subject line, then details.
            change: Builds the mutation from the latest tree; may raise a RequestError to refuse.

        Returns:
            The change's sequence number, or None if it changed nothing.
        """
        with self.lock:
            mutation = change(self.tree)
            return self._apply(mutation, f"dom{caller.domid}", lines)

    def incorporate(self, changes: list[LeafChange], description: str) -> int:
        """Apply changes found in the repository (another writer), except where this daemon changed the same
        blob since; returns how many applied. Nothing is queued for commit: they are committed already."""
        with self.lock:
            applicable = [c for c in changes if self.tree.get(c.key) == c.old]
            mutation = nodes.apply(self.tree, applicable)
            self._publish(mutation)
            return len(mutation.changes)

    def take_pending(self) -> tuple[Tree, list[JournalEntry]]:
        """The latest tree and the changes queued since the last call (for the journal)."""
        with self.lock:
            pending, self._pending = self._pending, []
            return self.tree, pending

    def requeue(self, entries: list[JournalEntry]) -> None:
        """Put back entries whose commit failed, ahead of newer ones."""
        with self.lock:
            self._pending[:0] = entries

    def _apply(self, mutation: Mutation, author: str, lines: list[str]) -> int | None:
        if not mutation.changes:
            return None
        self._publish(mutation)
        self._seq += 1
        self._pending.append(JournalEntry(self._seq, author, tuple(lines)))
        self._wake()
        return self._seq

    def _publish(self, mutation: Mutation) -> None:
        self.tree = mutation.tree
        self.counts.apply(mutation.changes)
        self.watches.fire(mutation.changes, mutation.tree)
