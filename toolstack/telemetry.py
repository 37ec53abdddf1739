"""What the task runner tells the logs and the metrics about each operation it runs.

Around an operation: its task and VM bound to every record logged meanwhile (the driver's too), a line when
it starts and one when it ends with its outcome, and the operation counted and timed in
:mod:`toolstack.metrics`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from toolstack import logs, metrics
from toolstack.errors import OperationConflict, OperationFailed, OperationInProgress
from toolstack.models import Task

log = logging.getLogger("toolstack.tasks")


def outcome_of(error: BaseException | None) -> str:
    """The outcome label of an operation that raised ``error`` (None: it succeeded)."""
    if error is None:
        return "succeeded"
    if isinstance(error, OperationInProgress):
        return "busy"
    if isinstance(error, OperationConflict):
        return "conflict"
    if isinstance(error, OperationFailed):
        return "failed"
    return "interrupted"  # a bug or a signal: recovery settles the task


@contextlib.contextmanager
def operation(task: Task) -> Iterator[None]:
    """Log, count and time the operation of ``task`` run in this block, its task and VM bound to the logs."""
    with logs.bound(task=task.id, vm=task.vm_name or task.vm):
        log.info("task started: %s %s", task.operation, task.vm_name, extra={"operation": task.operation})
        started = time.monotonic()
        error: BaseException | None = None
        try:
            yield
        except BaseException as err:
            error = err
            raise
        finally:
            seconds = time.monotonic() - started
            outcome = outcome_of(error)
            metrics.OPERATIONS.inc(task.operation, outcome)
            metrics.OPERATION_SECONDS.observe(seconds, task.operation)
            if outcome == "succeeded":
                metrics.COMMITS.inc()
            elif outcome == "busy":
                metrics.BUSY_REFUSALS.inc()
            elif outcome == "conflict":
                metrics.MERGE_CONFLICTS.inc()
            log.log(
                logging.INFO if error is None else logging.WARNING,
                "task finished: %s %s %s",
                task.operation,
                task.vm_name,
                outcome,
                extra={"operation": task.operation, "outcome": outcome, "seconds": round(seconds, 6)},
            )
