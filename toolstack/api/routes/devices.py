"""Devices: attach a disk or a NIC, detach a device. Each one is a task."""

from __future__ import annotations

from fastapi import APIRouter, Response

from toolstack.api.deps import State
from toolstack.api.routes.common import OPERATION_RESPONSES, IfMatch, Wait, run_on_vm
from toolstack.api.schemas import DiskAttach, NicAttach, OperationResult
from toolstack.models import VM
from toolstack.tasks import TaskObserver

router = APIRouter(prefix="/vms/{vm}", tags=["devices"])


@router.post("/disks", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def attach_disk(
    api: State, response: Response, vm: str, body: DiskAttach, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Attach a disk image, persistently and (if the VM runs) live."""
    return await run_on_vm(
        api,
        response,
        vm,
        lambda uuid, observer: api.ts.attach_disk(
            uuid,
            body.source,
            target=body.target,
            device_id=body.id,
            readonly=body.readonly,
            observer=observer,
        ),
        wait,
        if_match,
    )


@router.post("/nics", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def attach_nic(
    api: State, response: Response, vm: str, body: NicAttach, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Attach a network interface to a network or a bridge, persistently and (if the VM runs) live."""
    return await run_on_vm(
        api,
        response,
        vm,
        lambda uuid, observer: api.ts.attach_nic(
            uuid, network=body.network, bridge=body.bridge, mac=body.mac, device_id=body.id, observer=observer
        ),
        wait,
        if_match,
    )


@router.delete("/devices/{device_id}", response_model=OperationResult, responses=OPERATION_RESPONSES)
async def detach_device(
    api: State, response: Response, vm: str, device_id: str, wait: Wait = None, if_match: IfMatch = None
) -> OperationResult:
    """Detach a disk or NIC by id, persistently and (if the VM runs) live."""

    def detach(uuid: str, observer: TaskObserver) -> VM:
        return api.ts.detach(uuid, device_id, observer=observer)

    return await run_on_vm(api, response, vm, detach, wait, if_match)
