"""A VM's files at a revision, read-only: what the web page compares to show a rollback's before and after.

``GET /commits/{rev}`` gives what one commit changed; a rollback restores a VM's files as they were at an
older commit, across any number of commits in between, so the page needs the files themselves at both ends.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from toolstack import layout
from toolstack.api.deps import TS
from toolstack.api.errors import error_responses
from toolstack.api.revisions import Revision
from toolstack.api.views import MAX_VALUE_CHARS
from toolstack.ops import Toolstack

router = APIRouter(tags=["history"])

_UUID = re.compile(layout.UUID_PATTERN)


class VMFiles(BaseModel):
    """A VM's files (configuration, devices, desired state, placement) at one commit."""

    uuid: str
    commit: str = Field(description="The commit read (the revision asked for, resolved).")
    files: dict[str, str] = Field(
        description="Path under vms/<xx>/<uuid>/ (config, desired, devices/disk0...) to its content, as "
        "text; empty if the VM did not exist at that commit."
    )


def _read(ts: Toolstack, vm: str, rev: str) -> VMFiles:
    # A full uuid is taken as is, so that a deleted VM's files can be read at a commit where it existed.
    uuid = vm if _UUID.fullmatch(vm) else ts.resolve(vm, ts.main.tree)
    commit = ts.store.resolve(rev)
    root = layout.vm_dir(uuid)
    files = {
        path[len(root) + 1 :]: value.decode("utf-8", "replace")[:MAX_VALUE_CHARS]
        for path, value in ts.store.tree_at(commit).walk(root)
    }
    return VMFiles(uuid=uuid, commit=commit, files=files)


@router.get("/vms/{vm}/files", response_model=VMFiles, responses=error_responses(404))
async def vm_files(
    ts: TS, vm: str, rev: Annotated[Revision, Query(description="Any revision (default: main).")] = "main"
) -> VMFiles:
    """One VM's files (by name, uuid or uuid prefix; a deleted VM by its full uuid) at a revision."""
    return await run_in_threadpool(_read, ts, vm, rev)
