"""History: the operations on main (all, or one VM's), paged; a commit with its diff; the branches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from toolstack.api.deps import TS
from toolstack.api.errors import error_responses
from toolstack.api.etags import etag
from toolstack.api.revisions import Revision
from toolstack.api.schemas import BranchOut, CommitOut, HistoryPage
from toolstack.api.views import commit_out, history_entry
from toolstack.history import show
from toolstack.ops import Toolstack

router = APIRouter(tags=["history"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _page(ts: Toolstack, ref: str | None, limit: int, offset: int) -> HistoryPage:
    # One entry more than asked tells whether another page follows.
    ops = ts.log(ref, limit=limit + 1, offset=offset)
    more = len(ops) > limit
    items = [history_entry(op) for op in ops[:limit]]
    return HistoryPage(items=items, offset=offset, limit=limit, next_offset=offset + limit if more else None)


@router.get("/history", response_model=HistoryPage, responses=error_responses())
def history(ts: TS, limit: Limit = 50, offset: Offset = 0) -> HistoryPage:
    """Every operation on main, newest first (main's first-parent history)."""
    return _page(ts, None, limit, offset)


@router.get("/vms/{vm}/history", response_model=HistoryPage, responses=error_responses(404))
def vm_history(ts: TS, vm: str, limit: Limit = 50, offset: Offset = 0) -> HistoryPage:
    """The operations that changed one VM, newest first (a deleted VM by its uuid)."""
    return _page(ts, vm, limit, offset)


@router.get("/commits/{rev:path}", response_model=CommitOut, responses=error_responses(404))
def commit(ts: TS, rev: Annotated[Revision, Path()], response: Response) -> CommitOut:
    """A commit (any revision: an id, an abbreviation, main~3...) with what it changed, as unified diffs."""
    view = show(ts.context, rev)
    response.headers["ETag"] = etag(view.info.id)
    return commit_out(view)


@router.get("/branches", response_model=list[BranchOut], responses=error_responses())
def branches(ts: TS) -> list[BranchOut]:
    """Every branch: main, the running tasks' claims (vm-task/<uuid>), failed tasks (failed-tasks/<id>)..."""
    store = ts.store
    return [BranchOut(name=name, head=store.branch(name).head) for name in store.branches()]
