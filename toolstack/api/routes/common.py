"""What the operation routes share: the ``wait`` and If-Match parameters, and answering with a task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Header, Query, Response

from toolstack.api.deps import ApiState
from toolstack.api.errors import error_responses
from toolstack.api.etags import IF_MATCH_PATTERN, VMVersionGuard, etag, vm_version
from toolstack.api.jobs import Outcome, TaskWatch
from toolstack.api.schemas import OperationResult, VMOut
from toolstack.api.views import vm_detail
from toolstack.models import VM
from toolstack.ops import Toolstack
from toolstack.status import status_of
from toolstack.tasks import TaskObserver

Wait = Annotated[
    float | None,
    Query(
        ge=0,
        le=60,
        description="Seconds to wait for the outcome (default 10): after that the answer is 202 with the "
        "running task, to follow at /tasks/{id}.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        pattern=IF_MATCH_PATTERN,
        description="The VM's ETag as last read: the write is refused with 412 if the VM changed since. `*` "
        "or a comma-separated list of entity tags (bare commit ids are taken too); an empty or malformed "
        "value is refused with 400.",
    ),
]

OPERATION_RESPONSES = {
    202: {"model": OperationResult, "description": "Still running: follow the task (Location: /tasks/{id})"},
    **error_responses(404, 409, 412, 502, 503),
}


class VMOperation(Protocol):
    """An operation on one VM as a route runs it: a toolstack method (or a call of one) that takes the VM's
    uuid and the observer that follows its task."""

    def __call__(self, uuid: str, *, observer: TaskObserver) -> VM | None: ...


@dataclass(frozen=True)
class Answer:
    """What a finished operation answers with, read in its worker thread (where reads may block)."""

    vm: VMOut | None
    etag: str | None


def answer(ts: Toolstack, vm: VM | None) -> Answer:
    """The VM as the API shows it, with its ETag (no VM after a delete). It reads the hypervisor and the
    VM log index, so it runs in a worker thread."""
    if vm is None:
        return Answer(None, None)
    return Answer(vm_detail(ts, status_of(ts, vm.uuid)), etag(vm_version(ts, vm.uuid)))


async def run_on_vm(
    api: ApiState,
    response: Response,
    ref: str,
    operation: VMOperation,
    wait: float | None,
    if_match: str | None,
) -> OperationResult:
    """Run ``operation(uuid, observer=watch)`` on VM ``ref`` (404 if unknown), after checking If-Match (412
    if stale).

    The If-Match check is made before the operation starts and again, as the operation's precondition, once
    it holds the VM (see :class:`VMVersionGuard`), so that a write cannot land on a version the client has
    not seen. Everything that may block (the lookup, the checks, the operation, the answer) runs in the
    operation's worker.
    """
    guards: list[VMVersionGuard] = []

    def job(watch: TaskWatch) -> Answer:
        vm = api.ts.vm(ref)
        if if_match is not None:
            guard = VMVersionGuard(api.ts, vm.uuid, if_match, vm.name)
            guard.check_before()
            guards.append(guard)
        return answer(api.ts, operation(vm.uuid, observer=watch))

    def recheck_under_claim() -> None:
        for guard in guards:
            guard()

    outcome = await api.jobs.run(job, effective_wait(api, wait), recheck_under_claim)
    return respond(response, outcome)


def effective_wait(api: ApiState, wait: float | None) -> float:
    return api.settings.default_wait if wait is None else min(wait, api.settings.max_wait)


def respond(response: Response, outcome: Outcome[Answer], done_status: int = 200) -> OperationResult:
    """200 (or ``done_status``) with the task and the VM after it, or 202 with the running task."""
    task = outcome.task
    assert task is not None, "every toolstack operation runs as a task"
    if not outcome.done:
        response.status_code = 202
        response.headers["Location"] = f"/tasks/{task.id}"
        return OperationResult(task=task, vm=None)
    response.status_code = done_status
    assert outcome.result is not None
    if outcome.result.etag is not None:
        response.headers["ETag"] = outcome.result.etag
    return OperationResult(task=task, vm=outcome.result.vm)
