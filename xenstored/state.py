"""The authoritative xenstore state: the latest tree, in memory, and the queue of changes to commit.

Every change (a request outside a transaction, a transaction's merge, or changes found in the repository
from another writer) is applied here, in one order, under one lock. Applying it also updates the per-domain
node counts and fires watches, so that readers and watchers see a change as soon as it is made; the
:class:`~xenstored.journal.GitJournal` then commits the queued changes to the branch.

Each queued change is a :class:`JournalEntry` holding the tree it produced. A transaction forks at the
latest entry, which is then marked as a boundary: the journal ends a commit there, so that the transaction's
own commit can name the exact state it started from as its parent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from xenstored import nodes
from xenstored.errors import ReadOnly
from xenstored.nodes import LeafChange, Mutation, Node
from xenstored.perms import DEFAULT_PERMISSIONS, Caller
from xenstored.quotas import NodeCounts, Quotas
from xenstored.watches import WatchRegistry

# As oxenstored's initial store: /@introduceDomain and /@releaseDomain are ordinary empty nodes owned by dom0
# (n0), so that reading "@introduceDomain" (which names "/@introduceDomain") gives "" there, as here.
INITIAL_NODES = (
    "@introduceDomain",
    "@releaseDomain",
    "local",
    "local/domain",
    "local/domain/0",
    "tool",
    "tool/xenstored",
)


@dataclass(eq=False, slots=True)
class BranchTip:
    """A transaction's side of a merge: what its own commit holds.

    Attributes:
        fork: The entry the transaction forked at (its commit's parent is the commit ending there).
        tree: The transaction's tree when it ended.
        author: Who ran it ("dom3").
        lines: Its commit message: a subject line, then one line per operation.
    """

    fork: JournalEntry
    tree: Node
    author: str
    lines: tuple[str, ...]


@dataclass(eq=False, slots=True)
class JournalEntry:
    """One change waiting to be committed (or the last one committed).

    Attributes:
        seq: Its place in the order of changes (1, 2, ...; 0 for the state the daemon started from).
        author: Who made it ("dom3").
        lines: What it did: a subject line, then details.
        tree: The state right after it.
        tip: For a transaction's merge, the transaction's branch.
        boundary: A transaction forked here: a commit must end here.
        commit_id: The commit ending here, once the journal has written it.
        queued: When it was queued (``time.monotonic()``).
    """

    seq: int
    author: str
    lines: tuple[str, ...]
    tree: Node
    tip: BranchTip | None = None
    boundary: bool = False
    commit_id: str | None = None
    queued: float = 0.0


class State:
    """The latest tree and everything that must change with it.

    Args:
        tree: The tree at the branch head when the daemon starts.
        quotas: The quotas in force.
        head: The branch head the tree comes from (None on an empty branch).
    """

    def __init__(self, tree: Node, quotas: Quotas, head: str | None = None) -> None:
        self.lock = threading.RLock()
        self.tree = tree
        self.quotas = quotas
        self.watches = WatchRegistry(quotas)
        self.counts = NodeCounts(tree)
        self._pending: list[JournalEntry] = []
        self._seq = 0
        self.last_change = time.monotonic()
        self._last = JournalEntry(0, "", (), tree, boundary=True, commit_id=head)
        self._wake: Callable[[], None] = lambda: None
        self.refusing: str | None = None  # why changes are refused (the journal cannot commit), if they are
        if tree.perms is None:
            self._initialise()

    def _initialise(self) -> None:
        dom0 = Caller(0)

        def layout(tree: Node) -> Mutation:
            mutation = nodes.write(tree, (), tree.value or b"", dom0)
            mutation.then(nodes.set_permissions(mutation.tree, (), DEFAULT_PERMISSIONS))
            for path in INITIAL_NODES:
                mutation.then(nodes.mkdir(mutation.tree, tuple(path.split("/")), dom0))
            return mutation

        subject = (
            "initialise the store layout: / /@introduceDomain /@releaseDomain /local/domain/0 /tool/xenstored"
        )
        self.mutate(dom0, [subject], layout)

    def on_change(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (from any thread) whenever a change is queued for commit."""
        self._wake = wake

    def refuse_changes(self, reason: str | None) -> None:
        """Refuse every change with EROFS while ``reason`` holds (None: accept them again)."""
        with self.lock:
            self.refusing = reason

    def check_writable(self) -> None:
        """Raises ReadOnly while changes are refused."""
        reason = self.refusing
        if reason is not None:
            raise ReadOnly(f"the journal cannot commit, changes are refused: {reason}")

    @property
    def last_seq(self) -> int:
        return self._seq

    def fork(self) -> tuple[JournalEntry, Node]:
        """The latest entry and tree, for a transaction to start from (the entry becomes a boundary)."""
        with self.lock:
            self._last.boundary = True
            return self._last, self.tree

    def mutate(
        self,
        caller: Caller,
        lines: list[str],
        change: Callable[[Node], Mutation],
        tip: Callable[[], BranchTip] | None = None,
    ) -> int | None:
        """Compute a change on the latest tree and apply it, atomically.

        Args:
            caller: The author.
            lines: The commit message: a subject line, then details.
            change: Builds the mutation from the latest tree; may raise a RequestError to refuse.
            tip: For a transaction's merge, its branch (the change is then committed as a merge).

        Raises:
            ReadOnly: The journal cannot commit: nothing is acknowledged that would not be saved.

        Returns:
            The change's sequence number, or None if it changed nothing.
        """
        with self.lock:
            self.check_writable()
            mutation = change(self.tree)
            if not mutation.changes:
                if mutation.touched:  # nothing to commit, but a write is a write to its watchers
                    self.watches.fire((), self.tree, mutation.touched)
                return None
            self._publish(mutation)
            if tip is not None:
                self._last.boundary = True  # the merge's first parent is the state just before it
            self._seq += 1
            self.last_change = now = time.monotonic()
            entry = JournalEntry(
                self._seq, f"dom{caller.domid}", tuple(lines), self.tree, tip() if tip else None, queued=now
            )
            self._pending.append(entry)
            self._last = entry
            self._wake()
            return self._seq

    def incorporate(self, changes: list[LeafChange], head: str) -> list[LeafChange]:
        """Apply changes found in the repository at commit ``head`` (another writer), except where this
        daemon changed the same blob since. Nothing is queued for commit: they are committed already; the
        trees of queued entries are rebased onto them.

        Returns:
            The changes applied (the journal rebases the entries it holds with them).
        """
        with self.lock:
            applicable = [c for c in changes if nodes.blob(self.tree, c.key) == c.old]
            mutation = nodes.apply(self.tree, applicable)
            self._publish(mutation)
            rebase(self._pending, mutation.changes)
            if not self._pending and self._last.commit_id is not None:
                self._last = JournalEntry(self._seq, "", (), self.tree, boundary=True, commit_id=head)
            return mutation.changes

    def take_pending(self, limit: int | None = None) -> list[JournalEntry]:
        """The oldest changes queued (all of them, or at most ``limit``), for the journal."""
        with self.lock:
            if limit is None or len(self._pending) <= limit:
                pending, self._pending = self._pending, []
            else:
                pending, self._pending = self._pending[:limit], self._pending[limit:]
            return pending

    def oldest_pending(self) -> float | None:
        """When the oldest change not taken by the journal was queued (None: there is none)."""
        with self.lock:
            return self._pending[0].queued if self._pending else None

    def requeue(self, entries: list[JournalEntry]) -> None:
        """Put back entries whose commit failed, ahead of newer ones."""
        with self.lock:
            self._pending[:0] = entries

    def _publish(self, mutation: Mutation) -> None:
        self.tree = mutation.tree
        self.counts.apply(mutation.changes)
        self.watches.fire(mutation.changes, mutation.tree, mutation.touched)


def rebase(entries: list[JournalEntry], changes: list[LeafChange]) -> None:
    """Apply another writer's changes to the trees of entries not committed yet."""
    if not changes:
        return
    for entry in entries:
        entry.tree = nodes.apply(entry.tree, changes).tree
        if entry.tip is not None:
            entry.tip.tree = nodes.apply(entry.tip.tree, changes).tree
