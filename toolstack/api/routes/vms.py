"""VMs: list, get, create, update (memory, vCPUs, boot media, CPU, accelerator, graphics, autostart),
delete."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from toolstack.api.deps import TS, State
from toolstack.api.errors import error_responses
from toolstack.api.etags import etag, main_version, vm_version
from toolstack.api.jobs import TaskWatch
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
from toolstack.api.views import vm_detail, vm_out
from toolstack.devices import cdrom_disk
from toolstack.status import listing, lookup
from toolstack.tasks import TaskObserver
from toolstack.volumes import with_new_volumes

router = APIRouter(prefix="/vms", tags=["vms"])


@router.get("", response_model=list[VMOut], responses=error_responses())
def list_vms(ts: TS, response: Response) -> list[VMOut]:
    """Every VM, by name: the hypervisor's state now for the VMs this host runs, their host's last report
    (with its age) for the others; a VM whose entry does not validate is listed as broken, with the path
    and the error. The ETag is main's head (an events token)."""
    head = main_version(ts)
    response.headers["ETag"] = etag(head)
    now = time.time()
    info = ts.driver.host_info()
    return [vm_out(status, info, now) for status in listing(ts)]


@router.post(
    "",
    status_code=201,
    response_model=OperationResult,
    responses={**OPERATION_RESPONSES, **error_responses(409, 502, 503)},
)
async def create_vm(api: State, response: Response, body: VMCreate, wait: Wait = None) -> OperationResult:
    """Define a new VM (stopped, or started with ``start``): 201 with its task, or 202 while it runs."""
    ts = api.ts

    def create(watch: TaskWatch) -> Answer:
        cdrom = [] if body.cdrom is None else [cdrom_disk(body.cdrom)]
        disks, volumes = body.disk_args()
        vm, _ = with_new_volumes(
            ts.driver,
            volumes,
            lambda: ts.create(
                body.name,
                memory=body.memory,
                vcpus=body.vcpus,
                disks=[*disks, *cdrom],
                nics=body.nics,
                start=body.start,
                observer=watch,
                autostart=body.autostart,
                **body.spec_fields(),
            ),
        )
        return answer(ts, vm)

    outcome = await api.jobs.run(create, effective_wait(api, wait))
    result = respond(response, outcome, done_status=201)
    if result.vm is not None:
        response.headers["Location"] = f"/vms/{result.vm.uuid}"
    return result


@router.get("/{vm}", response_model=VMOut, responses=error_responses(404))
async def get_vm(api: State, vm: str, response: Response) -> VMOut:
    """One VM by name or uuid (a broken entry too: its error names the path). The ETag is the commit where
    it last changed."""
    ts = api.ts

    def read() -> tuple[VMOut, str]:
        status = lookup(ts, vm)
        return vm_detail(ts, status), etag(vm_version(ts, status.uuid))

    head = ts.main.head
    if head is not None and head == api.indexed_head and ts.driver.reads_never_wait:
        # Main has not moved since a read caught the VM log index up: this read is a few cached tree
        # lookups, the index's query and two driver queries (state, consoles), shorter than the two thread
        # hand-offs (and their waits for the interpreter lock) that a worker would cost; it answers twice as
        # many requests. Only for a driver whose reads never wait: a hung libvirtd must stall one worker, not
        # the event loop.
        found, tag = read()
    else:
        # Main moved: the index has commits to take in first, which may take long; not on the event loop.
        found, tag = await run_in_threadpool(read)
        api.indexed_head = head
    response.headers["ETag"] = tag
    return found


@router.patch("/{vm}", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def update_vm(
    api: State, response: Response, vm: str, body: VMUpdate, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Change memory and/or vCPUs (persistently, and live where the running VM allows), how the VM boots
    and runs (boot, CD-ROM, CPU, accelerator, graphics: persistently, so from its next boot) and autostart."""
    return await run_on_vm(
        api,
        response,
        vm,
        lambda uuid, observer: api.ts.set_resources(
            uuid, memory=body.memory, vcpus=body.vcpus, settings=body.settings(), observer=observer
        ),
        wait,
        if_match,
    )


@router.delete("/{vm}", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def delete_vm(
    api: State, response: Response, vm: str, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Power off, undefine, and remove the VM from the state (its history stays)."""

    def delete(uuid: str, observer: TaskObserver) -> None:
        api.ts.delete(uuid, observer=observer)

    return await run_on_vm(api, response, vm, delete, wait, if_match)
