"""Transactions: snapshot, function, compare-and-swap of the branch ref, with bounded retries.

A transaction reads a snapshot of the branch head and writes into an immutable tree. On success its tree is
committed on the starting head. Committing goes through the branch's :class:`Committer`, which implements
group commit: the transactions that finish while one batch is being made durable form the next batch; the
whole batch is merged onto the head in order, written as one pack with one fsync, and published with one
compare-and-swap. If another process moved the branch meanwhile, the batch is merged again onto the new head,
up to ``retries`` times.

What a transaction read is validated by its :class:`Strategy` (Irmin's ``with_tree ~strategy``). The default,
``TEST_AND_SET``, is optimistic concurrency control per path: when the branch moved since the snapshot, every
path the transaction read through its API must read the same on the new head, or the transaction fails with
:class:`~store.errors.ReadConflict` instead of silently merging an update computed from a stale value.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from store.codec import Codec
from store.errors import Conflict, ConflictEntry, ReadConflict, StoreError, TooManyRetries
from store.group import GroupCommit, Waiter
from store.merge import SET_SCHEMA, Schema, merge_trees
from store.objects import COMMIT, ObjectId, encode_commit, normalise_identity, object_id
from store.paths import Key, Path, join, parse
from store.tree import Leaf, Tree

if TYPE_CHECKING:
    from store.store import Store

DEFAULT_RETRIES = 13
OPTIMISTIC_ATTEMPTS = 2


class Strategy(enum.Enum):
    """How a transaction is published when the branch moved since its snapshot (after Irmin's
    ``Store.with_tree ~strategy:[`Set | `Test_and_set | `Merge]``).

    Attributes:
        TEST_AND_SET: The default. Every path the transaction *read* (``get``, ``exists``, ``list``, ``walk``,
            ``subtree``) must read the same on the new head, or it fails with ReadConflict; then its writes
            are 3-way merged by the schema. Unlike Irmin's, the test is per path read, not of a whole tree:
            transactions that read and write disjoint paths (different VMs) still merge. A value whose merge
            rule says reads commute (``counter``, ``queue``: see :func:`store.merge.merge_function`) is not
            tested, since its merge replays both changes.
        MERGE: Reads are not validated; writes are 3-way merged. A read-modify-write under an idempotent rule
            (the default rule takes "the same change on both sides" once) can then lose updates: use it
            only for blind writes or values whose merge rule is operation-based.
        SET: Reads are not validated and the transaction's own value wins at every path both sides changed
            (the schema is not consulted). Last writer wins.
    """

    TEST_AND_SET = "test_and_set"
    MERGE = "merge"
    SET = "set"


class Read(enum.Enum):
    """What a read depends on, and so what validating it compares between the snapshot and the head."""

    VALUE = "value"  # get: the value (or directory) at the path, by id
    KIND = "kind"  # exists: whether a value, a directory or nothing is there
    LISTING = "listing"  # list: the child names of the directory, not their contents
    TREE = "tree"  # walk, subtree: everything at or under the path, by id


def _fingerprint(tree: Tree, key: Key, read: Read) -> object:
    """What ``read`` of ``key`` depends on in ``tree`` (equal fingerprints: the read would not change)."""
    node = tree._find(key)
    if node is None:
        return None
    if read is Read.KIND:
        return isinstance(node, Tree)
    if read is Read.LISTING:
        return node._entries().keys() if isinstance(node, Tree) else None
    return (isinstance(node, Tree), node.oid)


def _stale_reads(
    reads: Iterable[tuple[Key, Read]], snapshot: Tree, head: Tree, mine: Tree, schema: Schema
) -> list[ConflictEntry]:
    """The reads of ``snapshot`` that read differently on ``head``, as conflict entries (ours: the head's
    value, theirs: the transaction's)."""
    stale = []
    for key, read in sorted(reads, key=lambda r: (r[0], r[1].value)):  # report in a stable order
        before = _fingerprint(snapshot, key, read)
        after = _fingerprint(head, key, read)
        # dict key views compare as sets: a listing is equal whatever the order of insertion.
        if before == after or (read is Read.VALUE and schema.reads_commute(key)):
            continue
        stale.append(
            ConflictEntry(
                join(key) if key else "/",
                f"read ({read.value}) changed since the transaction's snapshot",
                _value(snapshot, key),
                _value(head, key),
                _value(mine, key),
            )
        )
    return stale


def _value(tree: Tree, key: Key) -> bytes | None:
    node = tree._find(key)
    return node.value if isinstance(node, Leaf) else None


@dataclass(eq=False)
class _Pending(Waiter):
    """A transaction waiting to be published."""

    base: str | None
    tree: Tree
    message: str
    author: str
    retries: int
    keep_ref: str | None
    no_ff: bool
    schema: Schema
    reads: frozenset[tuple[Key, Read]] = frozenset()
    parents: list[str] | None = None
    merge_message: str | None = None
    own_commit: str = ""
    own_raw: bytes = b""
    result: str | None = None

    def __post_init__(self) -> None:
        Waiter.__init__(self)


class Committer:
    """Publishes transactions on one branch with group commit (see :mod:`store.group`): the transactions
    that finish while one batch is being published form the next, merged onto the head in order."""

    def __init__(self, store: Store, ref: str) -> None:
        self._store = store
        self._ref = ref
        self._group: GroupCommit[_Pending] = GroupCommit(self._publish)

    def submit(self, pending: _Pending) -> str:
        """Publish one transaction; returns the new head, or raises Conflict / TooManyRetries."""
        self._prepare(pending)
        self._group.submit(pending)
        assert pending.result is not None
        return pending.result

    def _prepare(self, pending: _Pending) -> None:
        # Hash the transaction's own commit outside the batch, in the caller's thread.
        if pending.parents is not None:
            parents = list(pending.parents)
        else:
            parents = [pending.base] if pending.base else []
        raw = encode_commit(pending.tree.oid, parents, pending.author, pending.author, pending.message)
        pending.own_raw = raw
        pending.own_commit = object_id(COMMIT, raw).decode("ascii")

    def _publish(self, batch: list[_Pending]) -> None:
        store = self._store
        backend = store.backend
        objects: list[tuple[ObjectId, int, bytes]] = []
        for pending in batch:
            objects.extend(pending.tree.new_objects())
            # Written below before anything refers to them (or the whole batch fails and is discarded):
            # marking them now keeps the merges of this batch from collecting them again.
            pending.tree.mark_stored()
            objects.append((pending.own_commit.encode("ascii"), COMMIT, pending.own_raw))
        written = False
        attempts = max(p.retries for p in batch) + 1
        try:
            for attempt in range(attempts):
                # Optimistic first; a batch that keeps losing the race to other processes then holds the
                # ref's lease while it merges, so that it cannot starve.
                with backend.locked(self._ref) if attempt >= OPTIMISTIC_ATTEMPTS else nullcontext():
                    head = backend.read_ref(self._ref)
                    chain, outcomes, merge_objects, trees = self._chain(head, batch)
                    if not written or merge_objects:
                        backend.write_objects(objects + merge_objects if not written else merge_objects)
                        written = True
                    if chain == head or backend.compare_and_swap(self._ref, head, chain):
                        self._finish(batch, outcomes, trees)
                        return
            for pending in batch:
                pending.finish(TooManyRetries(self._ref, attempts))
        except BaseException as err:
            for pending in batch:
                if not pending.finished:
                    if isinstance(err, StoreError):
                        pending.finish(err)
                    else:
                        failure = StoreError(f"commit failed: {err!r}")
                        failure.__cause__ = err
                        pending.finish(failure)
            if not isinstance(err, Exception):
                raise

    def _chain(
        self, head: str | None, batch: list[_Pending]
    ) -> tuple[str | None, dict[int, Any], list[tuple[ObjectId, int, bytes]], dict[str, Tree]]:
        """Fold the batch onto ``head``: fast-forward where possible, merge otherwise."""
        store = self._store
        chain = head
        chain_tree = store.tree_at(head) if head is not None else Tree.empty(store.backend)
        outcomes: dict[int, Any] = {}
        objects: list[tuple[ObjectId, int, bytes]] = []
        trees: dict[str, Tree] = {}
        for index, pending in enumerate(batch):
            if chain == pending.base and not pending.no_ff:
                chain, chain_tree = pending.own_commit, pending.tree
                outcomes[index] = chain
                trees[chain] = chain_tree
                continue
            if chain == pending.base:
                merged = pending.tree
                conflicts: list[ConflictEntry] = []
            else:
                base_tree = store.tree_at(pending.base)
                if pending.reads:
                    stale = _stale_reads(pending.reads, base_tree, chain_tree, pending.tree, pending.schema)
                    if stale:
                        outcomes[index] = ReadConflict(stale, branch=self._ref.removeprefix("refs/heads/"))
                        continue
                merged, conflicts = merge_trees(
                    store.backend, base_tree, chain_tree, pending.tree, pending.schema
                )
            if conflicts:
                outcomes[index] = Conflict(conflicts, branch=self._ref.removeprefix("refs/heads/"))
                continue
            parents = [chain, pending.own_commit] if chain else [pending.own_commit]
            if pending.merge_message is not None:
                text = pending.merge_message
            else:
                text = "Merge: " + (pending.message.splitlines()[0] if pending.message else "transaction")
            raw = encode_commit(merged.oid, parents, pending.author, pending.author, text)
            merge_id = object_id(COMMIT, raw)
            objects.extend(merged.new_objects())
            merged.mark_stored()
            objects.append((merge_id, COMMIT, raw))
            chain, chain_tree = merge_id.decode("ascii"), merged
            outcomes[index] = chain
            trees[chain] = chain_tree
        return chain, outcomes, objects, trees

    def _finish(self, batch: list[_Pending], outcomes: dict[int, Any], trees: dict[str, Tree]) -> None:
        store = self._store
        for commit_id, tree in trees.items():
            tree.mark_stored()
            store.remember_tree(commit_id, tree)
        for index, pending in enumerate(batch):
            outcome = outcomes[index]
            if pending.keep_ref:
                try:
                    current = store.backend.read_ref(pending.keep_ref)
                    store.backend.compare_and_swap(pending.keep_ref, current, pending.own_commit)
                except StoreError:
                    pass  # the audit ref is a convenience; the transaction itself succeeded or failed
            if isinstance(outcome, BaseException):
                pending.finish(outcome)
            else:
                pending.result = outcome
                pending.finish()
        store.notify(self._ref)


class Transaction:
    """A unit of work on a branch: reads see a snapshot of the starting head plus the transaction's own
    writes.

    Use it as ``with branch.transaction(message=..., author=...) as tx:``. Leaving the block with an
    exception writes nothing; leaving it with no effective change makes no commit. Otherwise the commit is
    published (fast-forward, or merged if the branch moved) and ``tx.commit_id`` holds the new head.

    Reads through ``get``, ``exists``, ``list``, ``walk`` and ``subtree`` are recorded and, under the default
    :class:`Strategy` ``TEST_AND_SET``, validated at commit: if the branch moved and one of them would now
    read differently, the commit raises :class:`~store.errors.ReadConflict` (a ``with`` block cannot be run
    again: :meth:`store.branch.Branch.atomically` re-runs a function instead). ``list`` depends on the names
    in the directory only; ``walk``/``subtree`` on everything under the path; ``exists`` on what kind of
    entry is there. The ``tree`` attribute is the raw tree: reading it is not recorded (assigning it is how
    a transaction replaces the whole tree).

    Attributes:
        base: The commit the transaction started from (None on an empty branch).
        commit_id: The branch head after the transaction (set when the block exits).
        own_commit: The transaction's own commit on ``base`` (differs from commit_id after a merge).
    """

    def __init__(
        self,
        store: Store,
        branch: str,
        *,
        message: str,
        author: str | None = None,
        retries: int = DEFAULT_RETRIES,
        keep_branch: str | bool | None = None,
        no_ff: bool = False,
        schema: Schema | None = None,
        base: str | None = None,
        parents: list[str] | None = None,
        merge_message: str | None = None,
        strategy: Strategy = Strategy.TEST_AND_SET,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self._store = store
        self.branch = branch
        self.message = message
        self.author = normalise_identity(author)
        self.retries = retries
        self.no_ff = no_ff
        self.strategy = Strategy(strategy)
        self.schema = SET_SCHEMA if self.strategy is Strategy.SET else (schema or store.schema)
        # None: reads are not validated, so not recorded either.
        self._reads: set[tuple[Key, Read]] | None = set() if self.strategy is Strategy.TEST_AND_SET else None
        self.base = base if base is not None else store.backend.read_ref(store.ref_name(branch))
        self.parents = parents
        self.merge_message = merge_message
        self._start_tree = store.tree_at(self.base) if self.base else Tree.empty(store.backend)
        self.tree = self._start_tree
        self.commit_id: str | None = None
        self.own_commit: str | None = None
        self.started = time.time()
        if keep_branch is True:
            keep_branch = f"tx/{branch}/{int(self.started * 1000)}-{id(self) & 0xFFFFFF:06x}"
        self.keep_branch: str | None = keep_branch or None
        self._finished = False

    # -- reads and writes ----------------------------------------------------------------------------------
    def get(self, path: Path, default: bytes | None = None, codec: Codec | None = None) -> Any:
        """The value at ``path`` (decoded with ``codec`` if given), or ``default``; a recorded read."""
        self._record(path, Read.VALUE)
        value = self.tree.get(path)
        if value is None:
            return default
        return codec.decode(value) if codec else value

    def set(self, path: Path, value: Any, codec: Codec | None = None) -> None:
        self._check_open()
        self.tree = self.tree.set(path, codec.encode(value) if codec else value)

    def remove(self, path: Path) -> None:
        self._check_open()
        self.tree = self.tree.remove(path)

    def list(self, path: Path = "") -> list[str]:
        """Child names of the directory at ``path``; a recorded read of the names, not their contents."""
        self._record(path, Read.LISTING)
        return self.tree.list(path)

    def exists(self, path: Path) -> bool:
        """Whether anything is at ``path``; a recorded read of what kind of entry is there."""
        self._record(path, Read.KIND)
        return path in self.tree

    def walk(self, path: Path = "") -> Iterator[tuple[str, bytes]]:
        """Every (path, value) at or under ``path``; a recorded read of all of it."""
        self._record(path, Read.TREE)
        return self.tree.walk(path)

    def subtree(self, path: Path) -> Tree:
        """The directory at ``path`` as a tree (see :meth:`Tree.subtree`); a recorded read of all of it."""
        self._record(path, Read.TREE)
        return self.tree.subtree(path)

    @property
    def reads(self) -> list[tuple[str, str]]:
        """The recorded reads as sorted (path, kind of read) pairs ("/" for the root); empty unless the
        strategy validates reads."""
        return sorted((join(key) if key else "/", read.value) for key, read in self._reads or ())

    def _record(self, path: Path, read: Read) -> None:
        if self._reads is not None:
            self._reads.add((parse(path, allow_root=True), read))

    def _check_open(self) -> None:
        if self._finished:
            raise StoreError("transaction already finished")

    # -- lifecycle -----------------------------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        self.commit()

    def abort(self) -> None:
        """Discard the transaction: nothing is written (as when a ``with`` block is left by an exception)."""
        self._finished = True

    def commit(self) -> str | None:
        """Publish the transaction (called by the ``with`` block); returns the new head."""
        self._check_open()
        self._finished = True
        if self.tree.oid == self._start_tree.oid:
            self.commit_id = self.base
            return self.commit_id
        keep_ref = f"refs/heads/{self.keep_branch}" if self.keep_branch else None
        pending = _Pending(
            base=self.base,
            tree=self.tree,
            message=self.message,
            author=self.author,
            retries=self.retries,
            keep_ref=keep_ref,
            no_ff=self.no_ff,
            schema=self.schema,
            reads=frozenset(self._reads or ()),
            parents=self.parents,
            merge_message=self.merge_message,
        )
        try:
            self.commit_id = self._store.committer(self.branch).submit(pending)
        finally:
            self.own_commit = pending.own_commit
        return self.commit_id
