"""Claims: the records (and refs) that hold a VM for its running task, and the failed tasks kept for audit.

A task claims its VM by recording the claim (:mod:`toolstack.claim_store`: the task and its intended state,
made durable as one small file created exclusively). The claim commit that record stands for, and the claim
ref ``refs/heads/vm-task/<uuid>`` that holds it, are written only when they are needed: by a failure
(:meth:`Claims.materialize`, then the failure is committed on it) or by recovery. A successful operation
writes no ref but main's. A claim ref without a record (made by an older release, or by hand) holds its task
on its own commits, as before; a new claim checks that there is none. A failed task's claim is kept as
``refs/heads/failed-tasks/<task>``. The task runner (:mod:`toolstack.tasks`) is the only writer of these refs
and records, through :class:`Claims`; everything else (reconcile's busy VMs, the task records, fsck, resync)
reads them through it too, so that their layout is known here alone.
"""

from __future__ import annotations

import contextlib
import logging

from store import Branch, BranchExists, Store, Tree
from toolstack import layout
from toolstack.claim_store import ClaimRecord, ClaimRecordStore
from toolstack.errors import ToolstackError
from toolstack.models import Task

log = logging.getLogger(__name__)

_CLAIMS = f"refs/heads/{layout.LOCK_PREFIX}/"
_FAILED = f"refs/heads/{layout.FAILED_PREFIX}/"


def claim_records(main: Tree, claim: Tree) -> list[tuple[str, bytes]]:
    """The task records (id, raw JSON) on a claim's tree that main's tree does not have (yet), newest first:
    a diff visits only the task shards that differ, not every task ever recorded."""
    changes = main.subtree(layout.TASKS).diff(claim.subtree(layout.TASKS))
    return sorted(
        ((change.path.rsplit("/", 1)[-1], change.new) for change in changes if change.new is not None),
        reverse=True,
    )


def claim_tree(base: Tree, record: ClaimRecord) -> Tree:
    """The tree of the claim commit ``record`` stands for: ``base`` with the running task and its intended
    files."""
    tree = layout.with_task_record(base, record.task.id, record.task.encode())
    for path, value in record.intended.items():
        tree = tree.remove(path) if value is None else tree.set(path, value)
    return tree


class Claims:
    """The claims and kept failed tasks of one state repository.

    Args:
        store: The state repository.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.records = ClaimRecordStore(store)

    @staticmethod
    def name(uuid: str) -> str:
        """The branch that claims VM ``uuid``."""
        return f"{layout.LOCK_PREFIX}/{uuid}"

    def branch(self, uuid: str) -> Branch:
        """The claim of VM ``uuid`` as a branch (its head is None when the VM is not claimed)."""
        return self.store.branch(self.name(uuid))

    def head(self, uuid: str) -> str | None:
        return self.branch(uuid).head

    def take(self, uuid: str, commit: str) -> None:
        """Claim VM ``uuid`` with ``commit``, in one compare-and-swap.

        Raises:
            BranchExists: the VM is claimed already.
        """
        self.store.fork(self.name(uuid), commit)

    def record(self, uuid: str, record: ClaimRecord) -> None:
        """Claim VM ``uuid`` with ``record``, made durable: the record is the claim. No claim ref is written
        (a lock file, a rename and an unlink per operation, and the same again to drop it): whatever reads
        the claims reads the records too, and recovery finds a claim by its record.

        Raises:
            BranchExists: the VM is claimed already (by a record, or by a claim ref of its own).
        """
        if not self.records.create(uuid, record):
            raise BranchExists(self.name(uuid))
        try:
            legacy = self.head(uuid)
        except BaseException:
            self.records.remove(uuid)  # never claimed: leave nothing for recovery to settle
            raise
        if legacy is not None:  # a claim ref without a record (an older release's, or made by hand)
            self.records.remove(uuid)
            raise BranchExists(self.name(uuid))

    def materialize(self, uuid: str) -> str | None:
        """Write the claim commit VM ``uuid``'s record stands for, durably, point the claim ref at it and drop
        the record; returns the claim's head (None: no claim). A claim without a record is left as it is."""
        record = self.records.read(uuid)
        if record is None:
            return self.head(uuid)
        tree = claim_tree(self.store.tree_at(record.base), record)
        commit = self.store.write_commit(tree, [record.base], record.message, record.author)
        ref = self.name(uuid)
        for _ in range(8):
            current = self.head(uuid)
            if current is not None and current != record.base:
                break  # materialized already (by a concurrent recovery): keep its commit
            if self.store.test_and_set(ref, current, commit):
                break
        else:
            # The record goes only once the claim ref holds what it stood for.
            raise ToolstackError(f"claim {ref} kept moving while its record was written out; try again")
        self.records.remove(uuid)
        return self.head(uuid)

    def release(self, uuid: str, sync: bool = True) -> None:
        """Drop the claim of VM ``uuid`` (its record and its ref); one that is gone already (recovery, or
        another process, settled it) is no error.

        Args:
            sync: Make the removal durable before returning.
        """
        self.records.remove(uuid, sync=sync)
        if self.head(uuid) is None:
            return  # only recorded (as a successful task's claim is): no ref to drop
        try:
            self.store.delete_branch(self.name(uuid), sync=sync)
        except ToolstackError:
            raise
        except Exception as err:
            log.debug("claim of %s already released: %s", uuid, err)

    def held(self) -> dict[str, str]:
        """Every claim: {VM uuid: the claim's head commit}; a claim only recorded is at its record's base
        (the main head it forks from, where its ref would be)."""
        refs = self.store.list_refs(_CLAIMS)
        held = {ref.rsplit("/", 1)[-1]: commit for ref, commit in refs.items()}
        for uuid in self.records.uuids():
            if uuid not in held:
                record = self.records.read(uuid)
                if record is not None:
                    held[uuid] = record.base
        return held

    def busy(self) -> set[str]:
        """The VMs an operation holds."""
        return set(self.claimed())

    def claimed(self) -> list[str]:
        """Every VM with a claim record or a claim ref (a claim is its record; a ref is written with the
        claim's commit, and a crash can leave one whose record is gone): what recovery looks at."""
        refs = self.store.list_refs(_CLAIMS)
        return sorted({ref.rsplit("/", 1)[-1] for ref in refs} | set(self.records.uuids()))

    def holder(self, uuid: str, main: Tree) -> Task | None:
        """The task holding VM ``uuid``: its claim record's, else the one on its claim ref's commits (None: no
        claim, or no task on it yet).

        Args:
            main: Main's tree, which the claim's records are told apart from.
        """
        record = self.records.read(uuid)
        if record is not None:
            return record.task
        head = self.head(uuid)
        if head is None:
            return None
        for _, raw in claim_records(main, self.store.tree_at(head)):
            task = Task.model_validate_json(raw)
            if task.vm == uuid:
                return task
        return None

    def keep_failed(self, uuid: str, task_id: str) -> None:
        """Keep VM ``uuid``'s claim as ``failed-tasks/<task_id>`` for audit (kept already: nothing to do)."""
        head = self.head(uuid)
        if head is not None:
            with contextlib.suppress(BranchExists):
                self.store.fork(f"{layout.FAILED_PREFIX}/{task_id}", head)

    def failed(self) -> dict[str, str]:
        """Every kept failed task: {task id: its branch's head commit}."""
        refs = self.store.list_refs(_FAILED)
        return {ref.rsplit("/", 1)[-1]: commit for ref, commit in refs.items()}

    def failed_head(self, task_id: str) -> str | None:
        """The head of failed task ``task_id``'s kept branch, or None if it has none."""
        return self.store.branch(f"{layout.FAILED_PREFIX}/{task_id}").head
