"""Operations as tasks: a branch per task, merged into main on success (xapi's distributed-database design).

An operation on a VM:
  1. claims the VM: a durable claim record (:mod:`toolstack.claim_store`) holds the task (status running,
     who, pid), main's head and the intended state. A second operation on the VM finds the claim and fails
     with OperationInProgress.
  2. calls the driver;
  3. commits the observed state and the task's outcome, with the intended state, on main's head as it was;
  4. merges that commit into main (always a merge commit by the operator, whose subject says what changed,
     "vm set web1: memory 1024→2048 MiB", with ``VM:`` and ``Task:`` trailers: :mod:`toolstack.messages`),
     then drops the claim.
The claim commit the record stands for (the task running, on main's head), and its branch
``refs/heads/vm-task/<uuid>``, are written only if the task fails, or by recovery: a successful operation
makes one durable commit, not two, and moves no ref but main.
If the driver fails (or the operation's own check does: :class:`~toolstack.errors.TaskAborted`), the partial
change is compensated, main is left as it was, and the task branch is kept as
``refs/heads/failed-tasks/<task>`` for audit. A process killed mid-operation leaves its claim behind;
:meth:`TaskRunner.recover` (run by :meth:`toolstack.ops.Toolstack.open`) compares it with the hypervisor and
completes or rolls it back. The claim refs themselves are :mod:`toolstack.claims`'s.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers import DriverError
from drivers.errors import DomainNotFound
from drivers.models import DomainInfo
from store import Branch, BranchExists, Conflict, Tree, UnknownCommit
from store.locks import pid_alive
from toolstack import layout, messages, telemetry
from toolstack.claim_store import ClaimRecord
from toolstack.claims import Claims, claim_tree
from toolstack.context import Context
from toolstack.errors import (
    OperationConflict,
    OperationFailed,
    OperationInProgress,
    TaskAborted,
    ToolstackError,
)
from toolstack.inventory import Inventory
from toolstack.models import Observed, Task, TaskStatus, observed_of, read_vm

log = logging.getLogger(__name__)


@dataclass
class Operation:
    """What a task does.

    Attributes:
        name: "create", "start", ... (the verb in commit messages).
        uuid: The VM.
        vm_name: Its name, for messages.
        intended: Files to write (bytes) or remove (None) on main if the operation succeeds.
        act: The driver calls.
        compensate: Undoes ``act`` after a failure (it may find the change half done or not done).
        detail: Extra fields for the task record.
    """

    name: str
    uuid: str
    vm_name: str
    intended: dict[str, bytes | None]
    act: Callable[[], None]
    compensate: Callable[[], None]
    detail: dict[str, object] = field(default_factory=dict)
    # The VM is placed on another host: only the desired state changes; that host's agent applies it.
    # None: decided from the VM's placement (vms/<xx>/<uuid>/host, as the operation leaves it).
    remote: bool | None = None


class TaskObserver:
    """Follows the task of one operation, handed to it explicitly (``ts.start(ref, observer=watch)``): the
    operation returns when it is done, and a caller that must hand its task out sooner (the HTTP API
    answers 202 with the running task) learns it here, the moment the VM is claimed.

    The runner calls :meth:`claimed` once the operation holds its VM, then :meth:`precondition` (still
    under the claim, before the hypervisor is called), and :meth:`finished` once it succeeded. Each does
    nothing unless overridden.
    """

    def claimed(self, task: Task) -> None:
        """The operation holds its VM and is about to call the hypervisor."""

    def precondition(self, task: Task) -> None:
        """Checked under the claim, before the hypervisor is called, when no other task can change the VM:
        raising :class:`~toolstack.errors.TaskAborted` (e.g. :class:`~toolstack.errors.StaleVersion`, the
        API's If-Match check) fails the operation cleanly: nothing done, the task kept as failed."""

    def finished(self, task: Task) -> None:
        """The operation succeeded (its outcome is on main)."""


class OperationService:
    """What the operation services (:mod:`toolstack.lifecycle`, :mod:`toolstack.devices`) are built on: each
    of their methods builds an :class:`Operation` and runs it as a task, returning the task.

    Args:
        ctx: The toolstack's context.
        runner: Runs each operation as a task.
        inventory: Finds the VMs operated on.
    """

    def __init__(self, ctx: Context, runner: TaskRunner, inventory: Inventory) -> None:
        self.ctx = ctx
        self.runner = runner
        self.inventory = inventory
        self.driver = ctx.driver  # the one every act and undo calls


# Tasks running in this process, by id: a claim with this process's pid is live only if it is listed here.
_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_MUTEX = threading.Lock()


def crash_point(name: str) -> None:
    """Die here, as if killed, when $TOOLSTACK_CRASH_AT names this point (crash-recovery tests use it to
    stop a CLI between any two steps of an operation)."""
    if os.environ.get("TOOLSTACK_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def new_task_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuidlib.uuid4().hex[:8]


class TaskRunner:
    """Runs operations as tasks on the context's store, against its driver, for its host.

    Args:
        ctx: The toolstack's context.
        converge: Brings one VM's domain in line with main (after rolling back an interrupted task: see
            :func:`toolstack.reconcile.converge_vm`).
    """

    def __init__(self, ctx: Context, converge: Callable[[str], object] | None = None) -> None:
        self.ctx = ctx
        self.converge = converge
        self.claims = Claims(ctx.store)

    @property
    def host(self) -> str:
        return self.ctx.host

    @property
    def author(self) -> str | None:
        """The operator the task commits are recorded under (the context's: setting it sets that)."""
        return self.ctx.author

    @author.setter
    def author(self, author: str | None) -> None:
        self.ctx.author = author

    @property
    def main(self) -> Branch:
        return self.ctx.main

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, op: Operation, observer: TaskObserver | None = None) -> Task:
        """Run ``op`` as a task: claim its VM, act, record the outcome, merge it into main.

        Args:
            observer: Told the task once the VM is claimed and once it is done; its precondition is checked
                before the hypervisor is called.

        Returns:
            The task, succeeded.

        Raises:
            OperationInProgress: another task holds the VM.
            OperationFailed: the driver failed, or the observer's precondition refused the task
                (:class:`~toolstack.errors.TaskAborted`); the change was undone and the task kept as failed.
            OperationConflict: the outcome does not merge into main (a concurrent change).
        """
        task = Task(
            id=new_task_id(),
            operation=op.name,
            vm=op.uuid,
            vm_name=op.vm_name,
            who=self.author or "",
            started=time.time(),
            host=self.host,
            pid=os.getpid(),
            detail=op.detail,
        )
        with _IN_FLIGHT_MUTEX:
            _IN_FLIGHT.add(task.id)
        try:
            with telemetry.operation(task):
                return self._run(op, task, observer)
        finally:
            with _IN_FLIGHT_MUTEX:
                _IN_FLIGHT.discard(task.id)

    def _placed_elsewhere(self, op: Operation) -> bool:
        placement = op.intended.get(layout.host_path(op.uuid))
        if layout.host_path(op.uuid) not in op.intended:
            placement = self.main.get(layout.host_path(op.uuid))
        return placement is not None and placement.decode().strip() != self.host

    def _run(self, op: Operation, task: Task, observer: TaskObserver | None) -> Task:
        if op.remote is None:
            op.remote = self._placed_elsewhere(op)
        claim = self._claim(op, task)
        crash_point("claimed")
        try:
            if observer is not None:
                observer.claimed(task)
                observer.precondition(task)
            if not op.remote:
                op.act()
        except (DriverError, TaskAborted) as err:
            compensation_error = self._compensate(op)
            self._fail(op.uuid, task, f"{type(err).__name__}: {err}")
            raise OperationFailed(op.vm_name, op.name, task.id, err, compensation_error) from err
        except BaseException as err:
            # Anything else (a bug, KeyboardInterrupt): leave the claim for recovery to judge.
            log.error("task %s interrupted by %r; recovery will settle it", task.id, err)
            raise
        crash_point("acted")
        done = self._succeed(task, op, claim.base, claim_tree(self.ctx.store.tree_at(claim.base), claim))
        if observer is not None:
            observer.finished(done)
        return done

    def _claim(self, op: Operation, task: Task) -> ClaimRecord:
        """Claim the VM; returns the claim's record (its base: the main head the claim forked from)."""
        for _ in range(3):
            base = self.main.head
            assert base is not None  # a toolstack's main holds its pool record at least
            message = messages.claim_message(task.id, op.name, op.vm_name, op.uuid)
            record = ClaimRecord(task, base, dict(op.intended), message, self.author)
            try:
                self.claims.record(op.uuid, record)
                return record
            except BranchExists:
                holder = self.claims.holder(op.uuid, self.main.tree)
                if holder is not None and self._alive(holder):
                    raise OperationInProgress(op.vm_name, op.name, holder.id, holder.operation) from None
                self.recover_one(op.uuid)  # a dead process's claim: settle it, then try again
        raise OperationInProgress(op.vm_name, op.name, "unknown", "unknown")

    def _observe(self, uuid: str) -> Observed | None:
        try:
            info = self.ctx.driver.info(uuid)
        except DriverError:
            return None
        return observed_of(info.state, info.domid, info.memory, info.vcpus)

    def _succeed(
        self, task: Task, op: Operation, claimed_from: str | None, claimed: Tree | None = None
    ) -> Task:
        """Record the task's success on its claim and merge it into main.

        Args:
            claimed_from: The main head the claim forked from: the merge base of the claim and main, however
                many commits the claim has.
            claimed: The tree of the claim that was only recorded (its commit never written): the outcome
                is committed on ``claimed_from`` with it. None: the claim's commits are written (recovery
                materialized them), and the outcome is committed on the claim's head.
        """
        observed = None if op.remote else self._observe(op.uuid)
        done = task.model_copy(update={"status": TaskStatus.SUCCEEDED, "finished": time.time()})
        # The outcome is committed and merged straight into main by one transaction (group-committed with
        # concurrent operations on other VMs); the claim ref itself need not move: recovery finds the task's
        # outcome on main (or the claim's commit in main's history) and just drops the claim.
        if claimed is None:
            head = self.claims.head(op.uuid)
            assert head is not None
            parents: list[str] | None = [head]
            claimed = self.ctx.store.tree_at(head)
        else:
            parents = None  # on claimed_from
        tree = layout.with_task_record(claimed, task.id, done.encode())
        if not op.remote:
            tree = layout.with_observed(
                tree, self.host, op.uuid, None if observed is None else observed.encode()
            )
        crash_point("recorded")
        merge_message = messages.operation_message(
            op.name, op.vm_name, op.uuid, task.id, self.ctx.store.tree_at(claimed_from), tree
        )
        try:
            with self.main.transaction(
                message=f"task {task.id}: done",
                author=self.author,
                base=claimed_from,
                parents=parents,
                no_ff=True,
                merge_message=merge_message,
            ) as tx:
                tx.tree = tree
        except Conflict as err:
            compensation_error = self._compensate(op)
            self._fail(op.uuid, task, f"conflict: {err}")
            if compensation_error is not None:
                log.error("undoing %s of %s failed: %s", op.name, op.vm_name, compensation_error)
            raise OperationConflict(
                f"vm {op.name} {op.vm_name}", err.conflicts, vm=op.vm_name, operation=op.name
            ) from err
        crash_point("merged")
        # Not made durable: if a crash brings the claim back, recovery finds its commit merged into main and
        # just drops it again.
        self.claims.release(op.uuid, sync=False)
        return done

    def _compensate(self, op: Operation) -> BaseException | None:
        if op.remote:
            return None
        try:
            op.compensate()
        except Exception as err:  # reported with the original failure; reconcile repairs the hypervisor
            log.error("compensating %s of %s failed: %s", op.name, op.vm_name, err)
            return err
        return None

    def _fail(self, uuid: str, task: Task, error: str) -> None:
        failed = task.model_copy(
            update={"status": TaskStatus.FAILED, "error": error, "finished": time.time()}
        )
        # The failure is committed on the claim commit, kept for audit: write it first if only recorded.
        self.claims.materialize(uuid)
        with self.claims.branch(uuid).transaction(
            message=f"task {task.id}: failed", author=self.author
        ) as tx:
            tx.tree = layout.with_task_record(tx.tree, task.id, failed.encode())
        crash_point("failure-recorded")
        self._keep_failed(uuid, task)

    def _keep_failed(self, uuid: str, task: Task) -> None:
        """Keep a failed task's claim branch as ``failed-tasks/<task>`` for audit, then drop the claim."""
        self.claims.keep_failed(uuid, task.id)
        crash_point("failure-kept")
        self.claims.release(uuid)
        crash_point("released")

    # -- recovery --------------------------------------------------------------------------------------------
    def _alive(self, task: Task) -> bool:
        if task.host != self.host:
            return True  # another host's task: only that host can judge it
        if task.pid == os.getpid():
            return task.id in _IN_FLIGHT
        return pid_alive(task.pid)

    def recover(self) -> list[Task]:
        """Settle every claim left by a dead process on this host; returns the settled tasks."""
        settled = []
        for uuid in self.claims.claimed():
            task = self.recover_one(uuid)
            if task is not None:
                settled.append(task)
        return settled

    def recover_one(self, uuid: str) -> Task | None:
        """Settle VM ``uuid``'s claim if the process that holds it is dead; returns the settled task (None:
        no claim, or its holder still runs)."""
        record = self.claims.records.read(uuid)
        if record is not None:
            if self._alive(record.task):
                return None
            if layout.read_task_record(self.main.tree, record.task.id) is not None:
                self.claims.release(uuid)  # its outcome is on main: the claim is all that is left
                return record.task
            # Write the claim commit the record stands for, then settle it as any claim.
            self.claims.materialize(uuid)
        branch = self.claims.branch(uuid)
        head = branch.head
        if head is None:
            return None
        task = self.claims.holder(uuid, self.main.tree)
        if task is not None and self._alive(task):
            return None
        main_head = self.main.head
        try:
            merged = main_head is not None and self.ctx.store.graph.is_ancestor(head, main_head)
        except UnknownCommit:
            merged = False
        if task is None or merged:
            self.claims.release(
                uuid
            )  # nothing recorded yet, or already merged: the claim is all that is left
            return task
        if task.status is TaskStatus.FAILED:
            # It failed, was compensated and recorded its failure, and died before it dropped its claim:
            # finish that, leaving main as a failed operation does. Whatever the hypervisor shows now,
            # reconcile repairs it, as after any failed compensation.
            log.warning(
                "recovery: task %s (%s %s) had failed; keeping its record",
                task.id,
                task.operation,
                task.vm_name,
            )
            self._keep_failed(uuid, task)
            return task
        if self._claim_achieved(branch.tree, uuid):
            log.warning(
                "recovery: task %s (%s %s) completed by the hypervisor; recording it",
                task.id,
                task.operation,
                task.vm_name,
            )
            op = Operation(task.operation, uuid, task.vm_name, {}, act=lambda: None, compensate=lambda: None)
            return self._succeed(task, op, self._fork_point(head, main_head))
        log.warning(
            "recovery: task %s (%s %s) did not complete; rolling it back",
            task.id,
            task.operation,
            task.vm_name,
        )
        rolled = task.model_copy(
            update={
                "status": TaskStatus.ROLLED_BACK,
                "finished": time.time(),
                "error": "interrupted before it completed; rolled back",
            }
        )
        message = messages.recovery_message(task.id, task.operation, task.vm_name, uuid)
        with self.main.transaction(message=message, author=self.author) as tx:
            tx.tree = layout.with_task_record(tx.tree, task.id, rolled.encode())
        self._fail(uuid, task, rolled.error or "rolled back")
        if self.converge is not None:
            self.converge(uuid)
        return rolled

    def _fork_point(self, claim_head: str, main_head: str | None) -> str | None:
        """The main head a claim forked from (its merge base with main), for a claim of any length."""
        if main_head is None:
            return None
        bases = self.ctx.store.graph.merge_bases(claim_head, main_head)
        return bases[0] if bases else None

    def _claim_achieved(self, claimed: Tree, uuid: str) -> bool:
        """Whether the hypervisor already shows what the claim intended (config and run state)."""
        try:
            info: DomainInfo | None = self.ctx.driver.info(uuid)
        except DomainNotFound:
            info = None
        if claimed.kind(layout.vm_dir(uuid)) is None:
            return info is None  # the task deleted the VM
        if info is None:
            return False
        try:
            intended = read_vm(claimed, uuid)
        except ToolstackError:
            return False
        return intended.desired.matches(info.state) and self.ctx.driver.get_spec(uuid) == intended.spec
