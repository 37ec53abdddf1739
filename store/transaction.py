"""Transactions: snapshot, function, compare-and-swap of the branch ref, with bounded retries.

A transaction reads a snapshot of the branch head and writes into an immutable tree. On success its tree is
committed on the starting head, and that commit is published as an :class:`~store.publish.Update` on the
branch's publisher, with group commit: the transactions that finish while one batch is being made durable
form the next batch; the whole batch is merged onto the head in order, written as one pack with one fsync,
and published with one compare-and-swap. If another process moved the branch meanwhile, the batch is merged
again onto the new head, up to ``retries`` times. How a transaction commits is its
:class:`TransactionOptions`.

What a transaction read is validated by its :class:`Strategy` (Irmin's ``with_tree ~strategy``). The default,
``TEST_AND_SET``, is optimistic concurrency control per path: when the branch moved since the snapshot, every
path the transaction read through its API must read the same on the new head, or the transaction fails with
:class:`~store.errors.ReadConflict` instead of silently merging an update computed from a stale value.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from store.codec import Codec
from store.errors import Conflict, ConflictEntry, ReadConflict, StoreError
from store.leaf import Leaf
from store.merge import SET_SCHEMA, Schema, merge_trees
from store.objects import COMMIT, encode_commit, normalise_identity, object_id
from store.paths import Key, Path, join, parse
from store.publish import DEFAULT_RETRIES, Folded, RawObject, Update, commit_objects
from store.repository import Repository, ref_name
from store.tree import Tree


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


@dataclass(slots=True)
class TransactionOptions:
    """How a transaction commits: the options of :meth:`store.branch.Branch.transaction` (and of
    :meth:`~store.branch.Branch.atomically`), in one place.

    Attributes:
        message: The commit message.
        author: "Name <email>" or a plain name; defaults to git's own choice of identity.
        retries: How many times to merge again if the branch keeps moving (then TooManyRetries).
        keep_branch: Keep the transaction's own commit on ``refs/heads/<keep_branch>`` (True picks
            "tx/<branch>/<time>-<n>"), so that ``git log --graph`` shows the fork and the merge.
        no_ff: Always make a merge commit, even when nothing intervened.
        schema: Merge rules for this transaction (default: the store's).
        base: Start from this commit instead of the head (it must be in the branch's history); the
            transaction is then merged with whatever the branch has gained since.
        parents: Parents of the transaction's own commit (default: ``[base]``), e.g. to land the tip of
            a task branch that forked from ``base``.
        merge_message: Message of the merge commit, if one is made (default: "Merge: <message>").
        strategy: How reads are validated and writes merged if the branch moved (see :class:`Strategy`).

    Raises:
        ValueError: ``retries`` is negative, or ``strategy`` names no strategy.

    Not frozen, though nothing changes it once a transaction began: one is made per transaction, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) cost a third of a one-leaf transaction's
    overhead over the old keyword arguments.
    """

    message: str
    author: str | None = None
    retries: int = DEFAULT_RETRIES
    keep_branch: str | bool | None = None
    no_ff: bool = False
    schema: Schema | None = None
    base: str | None = None
    parents: list[str] | None = None
    merge_message: str | None = None
    strategy: Strategy = Strategy.TEST_AND_SET

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.strategy.__class__ is not Strategy:  # a name ("merge") is accepted too
            self.strategy = Strategy(self.strategy)


class _Commit(Update):
    """A finished transaction waiting to be published: its own commit on its base, fast-forwarded or merged
    onto the head when its batch is published."""

    def __init__(self, tx: Transaction, reads: frozenset[tuple[Key, Read]]) -> None:
        super().__init__(tx.options.retries)
        self._tx = tx
        self._tree = tx.tree  # the transaction is finished: this is what it committed
        self._reads = reads
        self.own_commit = ""
        self._own_raw = b""

    def prepare(self) -> None:
        # Hash the transaction's own commit outside the batch, in the caller's thread.
        tx = self._tx
        parents = list(tx.options.parents) if tx.options.parents is not None else [tx.base] if tx.base else []
        self._own_raw = encode_commit(self._tree.oid, parents, tx.author, tx.author, tx.options.message)
        self.own_commit = object_id(COMMIT, self._own_raw).decode("ascii")

    def objects(self) -> list[RawObject]:
        tree = self._tree
        objects = tree.new_objects()
        tree.mark_stored()
        return [*objects, (self.own_commit.encode("ascii"), COMMIT, self._own_raw)]

    def fold(self, head: str | None, head_tree: Tree) -> Folded | None:
        tx, mine = self._tx, self._tree
        if head == tx.base and not tx.options.no_ff:
            return self.own_commit, mine, []
        branch = tx.ref.removeprefix("refs/heads/")
        if head == tx.base:
            merged, conflicts = mine, []
        else:
            base_tree = tx.repo.tree_at(tx.base)
            if self._reads:
                stale = _stale_reads(self._reads, base_tree, head_tree, mine, tx.schema)
                if stale:
                    raise ReadConflict(stale, branch=branch)
            merged, conflicts = merge_trees(tx.repo.objects, base_tree, head_tree, mine, tx.schema)
        if conflicts:
            raise Conflict(conflicts, branch=branch)
        message = tx.options.merge_message
        if message is None:
            subject = tx.options.message.splitlines()[0] if tx.options.message else "transaction"
            message = f"Merge: {subject}"
        parents = [head, self.own_commit] if head else [self.own_commit]
        commit_id, objects = commit_objects(merged, parents, tx.author, message)
        merged.mark_stored()  # written with this attempt (or the whole batch fails)
        return commit_id, merged, objects

    def landed(self) -> None:
        keep = self._tx.keep_branch
        if keep:
            # The audit ref is a convenience; the transaction itself succeeded or failed.
            with contextlib.suppress(StoreError):
                self._tx.repo.set_ref(f"refs/heads/{keep}", self.own_commit)


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

    def __init__(self, repo: Repository, branch: str, options: TransactionOptions, schema: Schema) -> None:
        """Start a transaction on ``branch`` (use :meth:`store.branch.Branch.transaction`).

        Args:
            repo: The repository.
            branch: The branch's name.
            options: How it commits.
            schema: The store's merge rules (used unless ``options.schema`` is given).
        """
        self.repo = repo
        self.branch = branch
        self.ref = ref_name(branch)
        self.options = options
        self.author = normalise_identity(options.author)
        strategy = options.strategy
        self.schema = SET_SCHEMA if strategy is Strategy.SET else (options.schema or schema)
        # None: reads are not validated, so not recorded either.
        self._reads: set[tuple[Key, Read]] | None = set() if strategy is Strategy.TEST_AND_SET else None
        self.base = options.base if options.base is not None else repo.read_ref(self.ref)
        self._start_tree = repo.tree_at(self.base)
        self.tree = self._start_tree
        self.commit_id: str | None = None
        self.own_commit: str | None = None
        self.started = time.time()
        keep_branch = options.keep_branch
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
        update = _Commit(self, frozenset(self._reads or ()))
        try:
            self.commit_id = self.repo.submit(self.ref, update)
        finally:
            self.own_commit = update.own_commit
        return self.commit_id
