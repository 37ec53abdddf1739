"""Lifecycle actions on a VM: start, shutdown, reboot (``apply``: from its next-boot definition), pause,
resume, destroy. Each one is a task."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response

from toolstack.api.deps import State
from toolstack.api.routes.common import OPERATION_RESPONSES, IfMatch, VMOperation, Wait, run_on_vm
from toolstack.api.schemas import OperationResult, ShutdownRequest
from toolstack.api.schemas_pending import RebootRequest
from toolstack.ops import Toolstack

router = APIRouter(prefix="/vms/{vm}", tags=["lifecycle"])

_SIMPLE_ACTIONS: dict[str, tuple[str, Callable[[Toolstack], VMOperation]]] = {
    "start": ("Boot the VM.", lambda ts: ts.start),
    "pause": ("Pause the running VM.", lambda ts: ts.pause),
    "resume": ("Resume the paused VM.", lambda ts: ts.resume),
    "destroy": ("Power the VM off at once.", lambda ts: ts.destroy),
}


def _add_action(verb: str, summary: str, method: Callable[[Toolstack], VMOperation]) -> None:
    async def action(
        api: State, response: Response, vm: str, wait: Wait = None, if_match: IfMatch = None
    ) -> OperationResult:
        return await run_on_vm(api, response, vm, method(api.ts), wait, if_match)

    action.__doc__ = f"{summary} 200 with the task and the VM, or 202 with the running task."
    router.add_api_route(
        f"/{verb}",
        action,
        methods=["POST"],
        response_model=OperationResult,
        responses=OPERATION_RESPONSES,
        name=f"{verb}_vm",
        operation_id=f"{verb}_vm",
        summary=summary.rstrip("."),
    )


for _verb, (_summary, _method) in _SIMPLE_ACTIONS.items():
    _add_action(_verb, _summary, _method)


@router.post(
    "/shutdown", response_model=OperationResult, responses=OPERATION_RESPONSES, operation_id="shutdown_vm"
)
async def shutdown_vm(
    api: State,
    response: Response,
    vm: str,
    body: ShutdownRequest | None = None,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> OperationResult:
    """Ask the guest to power off; with ``force``, destroy it if it has not within ``timeout`` seconds."""
    request = body or ShutdownRequest()
    return await run_on_vm(
        api,
        response,
        vm,
        lambda uuid, observer: api.ts.shutdown(
            uuid, timeout=request.timeout, force=request.force, observer=observer
        ),
        wait,
        if_match,
    )


@router.post(
    "/reboot", response_model=OperationResult, responses=OPERATION_RESPONSES, operation_id="reboot_vm"
)
async def reboot_vm(
    api: State,
    response: Response,
    vm: str,
    body: RebootRequest | None = None,
    wait: Wait = None,
    if_match: IfMatch = None,
) -> OperationResult:
    """Ask the guest to reboot (it keeps its running configuration); with ``apply``, power the domain off and
    start it from its persistent definition, so that its pending changes take effect."""
    request = body or RebootRequest()
    return await run_on_vm(
        api,
        response,
        vm,
        lambda uuid, observer: api.ts.reboot(
            uuid, apply=request.apply, timeout=request.timeout, force=request.force, observer=observer
        ),
        wait,
        if_match,
    )
