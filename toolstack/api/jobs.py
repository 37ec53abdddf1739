"""Running toolstack operations for HTTP requests: wait a while for the outcome, else hand back the task.

The toolstack's operations are synchronous: they return when they are done. To give a client a task it can
follow sooner, the API runs each operation in a worker thread and hands it a :class:`TaskWatch` (the
operation's ``observer``), which learns the task the moment the operation has claimed the VM, right before
the hypervisor is called, and checks the request's guard (its If-Match) there. The request then waits up to
``wait`` seconds: finished in time, it answers with the outcome; not, it answers 202 with the running task,
which ``GET /tasks/{id}`` follows to its end.

The request waits on the event loop, not in a thread of its own: a request costs one hand-off to a worker
and one back, however long its operation runs, and waiting requests hold no thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from toolstack.models import Task
from toolstack.tasks import TaskObserver

log = logging.getLogger(__name__)
T = TypeVar("T")
CLAIM_POLL_SECONDS = 0.01  # how often a request past its wait looks for its operation's task


class TaskWatch(TaskObserver):
    """What one submitted operation has reached: its task once it holds the VM, then its outcome. Handed to
    the operation as its ``observer``.

    Attributes:
        guard: The operation's precondition, checked under the claim before the hypervisor is called (e.g.
            an If-Match re-check); raising :class:`~toolstack.errors.TaskAborted` there fails the operation
            cleanly.
    """

    def __init__(self, guard: Callable[[], None] | None = None) -> None:
        self.guard = guard
        self.task: Task | None = None
        self.finished_task: Task | None = None

    def claimed(self, task: Task) -> None:
        self.task = task

    def precondition(self, task: Task) -> None:
        if self.guard is not None:
            self.guard()

    def finished(self, task: Task) -> None:
        self.finished_task = task


@dataclass
class Outcome(Generic[T]):
    """An operation's result if it finished within the wait, else its running task."""

    done: bool
    result: T | None
    task: Task | None


def _report_unanswered(watch: TaskWatch, done: asyncio.Future[Any]) -> None:
    """The end of an operation whose request answered (202) or went away before it: a failure is the task's
    (kept as failed, for ``GET /tasks/{id}``) and is logged here once. Retrieving it also keeps asyncio from
    logging it at garbage collection as "Future exception was never retrieved"."""
    if done.cancelled():
        return
    error = done.exception()
    if error is not None:
        task = watch.task.id if watch.task is not None else "(not started)"
        log.warning("task %s failed after its request was answered: %s", task, error)


class OperationJobs:
    """A pool of worker threads for operations (so that a request can stop waiting without stopping it)."""

    def __init__(self, workers: int = 32) -> None:
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._mutex = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use, and again after close(): an app may be started and stopped more than once.
        with self._mutex:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="toolstack-op")
            return self._pool

    def close(self) -> None:
        """Wait for the running operations to finish (so that none is left holding a VM), then stop."""
        with self._mutex:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    async def run(
        self, operation: Callable[[TaskWatch], T], wait: float, guard: Callable[[], None] | None = None
    ) -> Outcome[T]:
        """Run ``operation(watch)``, which hands ``watch`` to the toolstack operation it runs as its
        ``observer``; return its outcome if it ends within ``wait`` seconds, else its running task.

        Args:
            guard: The operation's precondition (see :class:`TaskWatch`).

        Errors the operation raises within the wait (not found, busy, failed...) are raised here.
        """
        watch = TaskWatch(guard)
        # In the request's context: the operation commits as the request's user and logs under its name.
        future: Future[T] = self._executor().submit(contextvars.copy_context().run, operation, watch)
        waiting = asyncio.wrap_future(future)
        try:
            await asyncio.wait({waiting}, timeout=wait)  # never cancels the operation
            # Past the wait: answer as soon as the task is known (the claim comes first, and quickly).
            while not (waiting.done() or watch.task is not None):
                await asyncio.wait({waiting}, timeout=CLAIM_POLL_SECONDS)
        except BaseException:
            # The request is gone (its client disconnected): the operation runs on without it.
            waiting.add_done_callback(partial(_report_unanswered, watch))
            raise
        if waiting.done():
            result = waiting.result()  # raises the operation's error
            return Outcome(True, result, watch.finished_task or watch.task)
        waiting.add_done_callback(partial(_report_unanswered, watch))
        return Outcome(False, None, watch.task)
