"""Tasks: every operation is one; list them and follow one to its end."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from toolstack.api.deps import TS
from toolstack.api.errors import NotFoundError, error_responses
from toolstack.api.schemas import TaskPage
from toolstack.models import Task, TaskStatus
from toolstack.task_records import get_task, list_tasks

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.get("", response_model=TaskPage, responses=error_responses())
def tasks(
    ts: TS,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    vm: Annotated[str | None, Query(description="Only this VM's tasks (name or uuid).")] = None,
    status: TaskStatus | None = None,
) -> TaskPage:
    """Tasks newest first: running (on their VM's claim), finished (on main) and failed (kept on branches)."""
    page, more = list_tasks(ts.context, limit, offset, vm=vm, status=status)
    return TaskPage(items=page, offset=offset, limit=limit, next_offset=offset + len(page) if more else None)


@router.get("/{task_id}", response_model=Task, responses=error_responses(404))
def task(ts: TS, task_id: str) -> Task:
    """One task, with its status (running, succeeded, failed, rolled-back) and error."""
    found = get_task(ts.context, task_id)
    if found is None:
        raise NotFoundError(f"no task {task_id!r}")
    return found
