"""Transactions: a branch of the state, merged back node by node.

TRANSACTION_START forks the current state: the transaction gets the immutable tree of that moment (an O(1)
fork, sharing every node) and the journal entry it forked at, whose commit becomes its branch's parent.
Each node it reads is recorded with how it looked to the reader. TRANSACTION_END with T merges the branch
back with a per-node three-way merge (:func:`~xenstored.nodes.merge`):

- base = the fork point, ours = the state now, theirs = the transaction's tree;
- if a node the transaction read (READ, DIRECTORY, GET_PERMS) differs between base and ours, the merge is
  refused with EAGAIN, as C xenstored does; a removed subtree counts as read in full;
- otherwise every node takes the side that changed it: writes to disjoint nodes never conflict, identical
  writes merge to themselves, and a node only written (never read) on both sides goes to the last writer,
  the transaction.

The check and the merge run under the state's lock, against the latest state, so that no commit can slip
in between them. The journal then writes the branch (the transaction's own commit on its fork point) and the
merge commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xenstored import nodes
from xenstored.nodes import Mutation, Node, Writer
from xenstored.paths import Key
from xenstored.perms import Caller
from xenstored.quotas import owner_deltas
from xenstored.state import BranchTip, JournalEntry

ReadKind = Literal["node", "subtree"]


@dataclass(eq=False)
class Transaction:
    """One open transaction of a connection.

    Attributes:
        id: The transaction id sent to the client (unique in the daemon, never 0).
        caller: Who opened it (the author of its commit).
        fork: The journal entry of the state at TRANSACTION_START.
        base: The state at TRANSACTION_START.
        tree: The transaction's own view: base plus its writes.
        reads: Nodes read, and whether the whole subtree matters.
        log: A line per operation, for the commit message.
        touched: Nodes written, whether or not that changed them: their watches fire at the merge.
        owned_delta: Nodes its caller gains through it (for an unprivileged caller's node quota).
        writer: Its right to change in place the nodes it built (see :class:`~.nodes.Writer`).
    """

    id: int
    caller: Caller
    fork: JournalEntry
    base: Node
    tree: Node = field(init=False)
    reads: dict[Key, ReadKind] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    touched: list[Key] = field(default_factory=list)
    owned_delta: int = 0
    writer: Writer = field(default_factory=Writer)

    def __post_init__(self) -> None:
        self.tree = self.base

    def read(self, key: Key, kind: ReadKind = "node") -> None:
        if self.reads.get(key) != "subtree":
            self.reads[key] = kind

    def record(self, mutation: Mutation, description: str) -> None:
        """Take a mutation computed on ``self.tree`` as the transaction's new view."""
        self.tree = mutation.tree
        self.touched.extend(mutation.touched)
        if not self.caller.privileged:
            self.owned_delta += owner_deltas(mutation.changes).get(self.caller.domid, 0)
        self.log.append(description)

    @property
    def changed(self) -> bool:
        return self.tree is not self.base

    def stale_reads(self, current: Node) -> list[Key]:
        """Nodes read by the transaction that changed between its fork point and ``current``."""
        if current is self.base:
            return []
        stale = []
        for key, kind in self.reads.items():
            if kind == "subtree":
                same = nodes.same_subtree(nodes.lookup(self.base, key), nodes.lookup(current, key))
            else:
                same = nodes.fingerprint(self.base, key) == nodes.fingerprint(current, key)
            if not same:
                stale.append(key)
        return stale

    def merge_into(self, current: Node) -> Mutation:
        """The transaction's branch merged into ``current`` (after :meth:`stale_reads`)."""
        mutation = nodes.merge(self.base, current, self.tree)
        mutation.touched.extend(self.touched)
        return mutation

    def tip(self) -> BranchTip:
        """The transaction's branch, for the journal to write."""
        return BranchTip(self.fork, self.tree, f"dom{self.caller.domid}", tuple(self.summary()))

    def summary(self) -> list[str]:
        """The commit message lines: a subject, then one line per operation."""
        more = len(self.log) - 1
        subject = f"transaction {self.id}: {self.log[0]}" if self.log else f"transaction {self.id}"
        if more > 0:
            subject += f" (and {more} more)"
        return [subject, *self.log] if more > 0 else [subject]
