"""Reading task records: finished ones on main's ``tasks/<xx>/<id>`` (``tasks/<id>`` in older repositories),
failed ones on ``failed-tasks/<id>``, running ones on the VMs' claims (:mod:`toolstack.claims`), as
``toolstack task list`` shows them."""

from __future__ import annotations

import re
from itertools import groupby

from toolstack import layout
from toolstack.claims import Claims
from toolstack.context import Context
from toolstack.models import Task, TaskStatus

# Task ids begin with their start time to the second ("20250101T120000-<hex>").
_SECOND = len("20250101T120000")
_TASK_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")


def _read(raw: bytes | None) -> Task | None:
    return None if raw is None else Task.model_validate_json(raw)


def _side_tasks(ctx: Context) -> dict[str, Task]:
    """Tasks recorded off main: failed ones, and running ones on claims."""
    found: dict[str, Task] = {}
    store = ctx.store
    claims = Claims(store)
    for task_id, commit in claims.failed().items():
        task = _read(layout.read_task_record(store.tree_at(commit), task_id))
        if task is not None:
            found[task.id] = task
    for uuid, commit in claims.held().items():
        record = claims.records.read(uuid)
        if record is not None:  # the claim is only recorded: its ref is at main's head of the time
            found.setdefault(record.task.id, record.task)
            continue
        tree = store.tree_at(commit)
        for path in store.changed_paths(commit):
            if layout.is_task_path(path):
                task = _read(tree.get(path))
                if task is not None and task.id not in found:
                    found[task.id] = task
    return found


def get_task(ctx: Context, task_id: str) -> Task | None:
    """One task by id; a failed task's own branch wins over main's record (which never says 'failed')."""
    if not _TASK_ID.fullmatch(task_id):
        return None  # not an id the toolstack makes (and never a path to read)
    failed = Claims(ctx.store).failed_head(task_id)
    if failed is not None:
        task = _read(layout.read_task_record(ctx.store.tree_at(failed), task_id))
        if task is not None:
            return task
    task = _read(layout.read_task_record(ctx.main.tree, task_id))
    if task is not None:
        return task
    return _side_tasks(ctx).get(task_id)


def list_tasks(
    ctx: Context,
    limit: int,
    offset: int = 0,
    vm: str | None = None,
    status: TaskStatus | None = None,
) -> tuple[list[Task], bool]:
    """Tasks newest first, filtered by VM uuid or name and status; returns (page, whether more follow).

    Task ids start with their start time, so main's tasks are read newest first and only as far as the page
    needs (unless a filter is given).
    """
    side = _side_tasks(ctx)
    main = ctx.main.tree
    ids = {*layout.task_ids(main), *side}
    page: list[Task] = []
    skipped = 0
    for _, group in groupby(sorted(ids, reverse=True), key=lambda task_id: task_id[:_SECOND]):
        # Ids order tasks to the second; within one second, their start times do.
        loaded = [side.get(task_id) or _read(layout.read_task_record(main, task_id)) for task_id in group]
        for task in sorted((t for t in loaded if t is not None), key=lambda t: t.started, reverse=True):
            if vm is not None and vm not in (task.vm, task.vm_name):
                continue
            if status is not None and task.status != status:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(page) == limit:
                return page, True
            page.append(task)
    return page, False
