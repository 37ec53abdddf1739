"""Claims: the refs that hold a VM for its running task, and the failed tasks kept for audit.

A task claims its VM by creating ``refs/heads/vm-task/<uuid>`` (a claim) with one compare-and-swap; the
claim's commits record the task and its intended state. A failed task's claim is kept as
``refs/heads/failed-tasks/<task>``. The task runner (:mod:`toolstack.tasks`) is the only writer of these
refs, through :class:`Claims`; everything else (reconcile's busy VMs, the task records, fsck, resync) reads
them through it too, so that the ref layout is known here alone.
"""

from __future__ import annotations

import contextlib
import logging

from store import Branch, BranchExists, Store, Tree
from toolstack import layout
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


class Claims:
    """The claims and kept failed tasks of one state repository.

    Args:
        store: The state repository.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

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

    def release(self, uuid: str, sync: bool = True) -> None:
        """Drop the claim of VM ``uuid``; one that is gone already (recovery, or another process, settled it)
        is no error.

        Args:
            sync: Make the removal durable before returning.
        """
        try:
            self.store.delete_branch(self.name(uuid), sync=sync)
        except ToolstackError:
            raise
        except Exception as err:
            log.debug("claim of %s already released: %s", uuid, err)

    def held(self) -> dict[str, str]:
        """Every claim: {VM uuid: the claim's head commit}."""
        refs = self.store.list_refs(_CLAIMS)
        return {ref.rsplit("/", 1)[-1]: commit for ref, commit in refs.items()}

    def busy(self) -> set[str]:
        """The VMs an operation holds."""
        return set(self.held())

    def holder(self, uuid: str, main: Tree) -> Task | None:
        """The task recorded on VM ``uuid``'s claim (None: no claim, or no task on it yet).

        Args:
            main: Main's tree, which the claim's records are told apart from.
        """
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
