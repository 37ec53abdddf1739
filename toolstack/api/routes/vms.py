"""VMs: list, get, create, update (memory and vCPUs), delete."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from toolstack.api.deps import TS, State
from toolstack.api.errors import error_responses
from toolstack.api.etags import etag, main_version
from toolstack.api.routes.common import (
    OPERATION_RESPONSES,
    Answer,
    IfMatch,
    Wait,
    answer,
    effective_wait,
    respond,
    run_on_vm,
)
from toolstack.api.schemas import OperationResult, VMCreate, VMOut, VMUpdate
from toolstack.api.views import vm_out

router = APIRouter(prefix="/vms", tags=["vms"])


@router.get("", response_model=list[VMOut], responses=error_responses())
def list_vms(ts: TS, response: Response) -> list[VMOut]:
    """Every VM, by name, with the hypervisor's state now. The ETag is main's head (an events token)."""
    head = main_version(ts)
    states = {str(info.uuid): info for info in ts.driver.list()}
    response.headers["ETag"] = etag(head)
    return [vm_out(vm, states.get(vm.uuid)) for vm in ts.vms()]


@router.post(
    "",
    status_code=201,
    response_model=OperationResult,
    responses={**OPERATION_RESPONSES, **error_responses(409, 502, 503)},
)
async def create_vm(api: State, response: Response, body: VMCreate, wait: Wait = None) -> OperationResult:
    """Define a new VM (stopped, or started with ``start``): 201 with its task, or 202 while it runs."""
    ts = api.ts

    def create() -> Answer:
        vm = ts.create(
            body.name,
            memory=body.memory,
            vcpus=body.vcpus,
            disks=body.disks,
            nics=body.nics,
            start=body.start,
            **body.spec_fields(),
        )
        return answer(ts, vm)

    outcome = await api.jobs.run(create, effective_wait(api, wait))
    result = respond(response, outcome, done_status=201)
    if result.vm is not None:
        response.headers["Location"] = f"/vms/{result.vm.uuid}"
    return result


@router.get("/{vm}", response_model=VMOut, responses=error_responses(404))
async def get_vm(ts: TS, vm: str, response: Response) -> VMOut:
    """One VM by name or uuid. The ETag is the commit where it last changed."""

    # One hand-off to a worker thread for the reads (a sync route would also validate its answer in one).
    found = await run_in_threadpool(lambda: answer(ts, ts.vm(vm)))
    assert found.vm is not None and found.etag is not None
    response.headers["ETag"] = found.etag
    return found.vm


@router.patch("/{vm}", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def update_vm(
    api: State, response: Response, vm: str, body: VMUpdate, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Change memory and/or vCPUs: persistently, and live where the running VM allows."""
    return await run_on_vm(
        api,
        response,
        vm,
        lambda uuid: api.ts.set_resources(uuid, memory=body.memory, vcpus=body.vcpus),
        wait,
        if_match,
    )


@router.delete("/{vm}", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def delete_vm(
    api: State, response: Response, vm: str, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Power off, undefine, and remove the VM from the state (its history stays)."""

    def delete(uuid: str) -> None:
        api.ts.delete(uuid)

    return await run_on_vm(api, response, vm, delete, wait, if_match)
