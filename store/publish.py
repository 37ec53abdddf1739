"""Group commit of the changes to one ref that must land on whatever its head is when they are published.

Every ref move goes through :meth:`store.repository.Repository.publish` (write objects, then
compare-and-swap). Transactions and merges cannot name the head they replace in advance: each is an
:class:`Update`, queued on the ref's :class:`Publisher`. The updates that arrive while one batch is being
published form the next (:mod:`store.group`); the batch is folded onto the head in order (each update
fast-forwards or merges), its objects are written as one pack with one fsync, and the result is published
with one compare-and-swap. If another process moved the ref meanwhile, the batch is folded again onto the
new head, up to the largest ``retries`` of its updates.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import nullcontext
from typing import TYPE_CHECKING

from store.errors import Conflict, StoreError, TooManyRetries
from store.group import GroupCommit, Waiter
from store.objects import COMMIT, ObjectId, encode_commit, object_id
from store.tree import Tree

if TYPE_CHECKING:
    from store.repository import Repository

DEFAULT_RETRIES = 13
# Attempts a batch makes without the ref's lease; then it holds the lease while it folds, so that a batch
# that keeps losing the race to other processes cannot starve.
OPTIMISTIC_ATTEMPTS = 2

RawObject = tuple[ObjectId, int, bytes]  # (hex id, type number, raw bytes), as backends write them
Folded = tuple[str, Tree, list[RawObject]]  # (new head, its tree, the objects written for it)


def commit_objects(
    tree: Tree, parents: list[str], identity: str, message: str
) -> tuple[str, list[RawObject]]:
    """A commit of ``tree`` on ``parents`` by ``identity`` (author and committer), and the objects to write
    for it: the tree's new ones, then the commit. Nothing is written or marked stored here."""
    raw = encode_commit(tree.oid, parents, identity, identity, message)
    oid = object_id(COMMIT, raw)
    return oid.decode("ascii"), [*tree.new_objects(), (oid, COMMIT, raw)]


class Update(Waiter):
    """One change waiting to be published on a ref: what it makes of whatever head it is folded onto.

    Args:
        retries: How many times its batch may be folded again when the ref keeps moving.

    Attributes:
        result: The ref's value once this update landed.
    """

    def __init__(self, retries: int) -> None:
        super().__init__()
        self.retries = retries
        self.result: str | None = None

    def prepare(self) -> None:
        """Work done in the caller's thread before the update is queued (hashing, say), not by the leader."""

    def objects(self) -> list[RawObject]:
        """The objects this update needs on any head, written with its batch's first attempt."""
        return []

    @abstractmethod
    def fold(self, head: str | None, head_tree: Tree) -> Folded | None:
        """What this update makes of ``head`` (whose tree is ``head_tree``); None leaves ``head`` as it is.

        Raises:
            Conflict: it cannot land on ``head``. Only this update fails; the rest of its batch goes on.
        """

    def landed(self) -> None:
        """Called once the batch holding this update is published, whatever this update's outcome."""


class Publisher:
    """Publishes the :class:`Update` s of one ref with group commit.

    Args:
        repo: The repository.
        ref: The ref ("refs/heads/main").
    """

    def __init__(self, repo: Repository, ref: str) -> None:
        self._repo = repo
        self._ref = ref
        self._group: GroupCommit[Update] = GroupCommit(self._publish)

    def submit(self, update: Update) -> str | None:
        """Publish one update; returns the ref's value after it, or raises its Conflict, TooManyRetries or
        StoreError."""
        update.prepare()
        self._group.submit(update)
        return update.result

    def _publish(self, batch: list[Update]) -> None:
        repo = self._repo
        # Written with the first attempt (or the whole batch fails and is discarded); the updates mark them
        # stored at once, which keeps the merges of this batch from collecting them again.
        objects = [o for update in batch for o in update.objects()]
        attempts = max(update.retries for update in batch) + 1
        try:
            for attempt in range(attempts):
                with repo.locked(self._ref) if attempt >= OPTIMISTIC_ATTEMPTS else nullcontext():
                    head = repo.read_ref(self._ref)
                    chain, outcomes, folded, trees = self._fold(head, batch)
                    if chain == head:
                        # Nothing moves (every update conflicted, or was merged already): the ref is left
                        # alone, but the updates' own commits are kept (an audit ref may name them).
                        repo.write(objects + folded)
                    elif not repo.publish(self._ref, head, chain, objects + folded):
                        objects = []  # written: a later attempt writes only its own merges
                        continue
                    self._finish(batch, outcomes, trees)
                    return
            for update in batch:
                update.finish(TooManyRetries(self._ref, attempts))
        except BaseException as err:
            for update in batch:
                if not update.finished:
                    if isinstance(err, StoreError):
                        update.finish(err)
                    else:
                        failure = StoreError(f"commit failed: {err!r}")
                        failure.__cause__ = err
                        update.finish(failure)
            if not isinstance(err, Exception):
                raise

    def _fold(
        self, head: str | None, batch: list[Update]
    ) -> tuple[str | None, list[str | Conflict | None], list[RawObject], dict[str, Tree]]:
        """Fold the batch onto ``head``: (the new head, each update's outcome, the objects the folds made,
        the tree of each commit they made)."""
        chain = head
        chain_tree = self._repo.tree_at(head)
        outcomes: list[str | Conflict | None] = []
        objects: list[RawObject] = []
        trees: dict[str, Tree] = {}
        for update in batch:
            try:
                step = update.fold(chain, chain_tree)
            except Conflict as conflict:
                outcomes.append(conflict)
                continue
            if step is not None:
                chain, chain_tree, made = step
                objects.extend(made)
                trees[chain] = chain_tree
            outcomes.append(chain)
        return chain, outcomes, objects, trees

    def _finish(
        self, batch: list[Update], outcomes: list[str | Conflict | None], trees: dict[str, Tree]
    ) -> None:
        for commit_id, tree in trees.items():
            tree.mark_stored()
            self._repo.remember_tree(commit_id, tree)
        for update, outcome in zip(batch, outcomes, strict=True):
            update.landed()
            if isinstance(outcome, Conflict):
                update.finish(outcome)
            else:
                update.result = outcome
                update.finish()
