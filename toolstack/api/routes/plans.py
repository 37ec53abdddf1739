"""Rollback and reconcile, each with a dry-run plan."""

from __future__ import annotations

import time

from fastapi import APIRouter

from toolstack import metrics
from toolstack.api.deps import TS
from toolstack.api.errors import error_responses
from toolstack.api.etags import main_version, require_version, vm_version
from toolstack.api.routes.common import IfMatch
from toolstack.api.schemas import PlanOut, ReconcileRequest, RollbackOut, RollbackRequest
from toolstack.api.views import plan_out
from toolstack.errors import VMNotFound

router = APIRouter(tags=["plans"])


@router.post("/rollback", response_model=RollbackOut, responses=error_responses(404, 409, 412, 502, 503))
def rollback(ts: TS, body: RollbackRequest, if_match: IfMatch = None) -> RollbackOut:
    """Restore the VM state of a commit (all VMs, or one) in a forward commit, then reconcile the hypervisor.

    With ``dry_run`` it only computes the plan. If-Match is checked against the VM's ETag (with ``vm``) or
    main's head (without): a rollback computed on a state the client has not seen is refused with 412. A
    rollback that would stop or undefine domains needs ``confirm: true``; without it: 409
    ``confirmation_required`` with the plan, and nothing is written.
    """
    target = ts.store.resolve(body.commit)
    if if_match is not None:
        if body.vm is None:
            require_version(if_match, main_version(ts), "main")
        else:
            try:
                uuid = ts.vm(body.vm).uuid
            except VMNotFound:
                uuid = None  # a deleted VM brought back: its version is main's
            version = vm_version(ts, uuid) if uuid is not None else main_version(ts)
            require_version(if_match, version, f"VM {body.vm}")
    plan = ts.rollback(target, vm=body.vm, dry_run=body.dry_run, confirm=body.confirm)
    return RollbackOut(**plan_out(plan, body.dry_run).model_dump(), target=target, head=ts.main.head)


@router.post("/reconcile", response_model=PlanOut, responses=error_responses(409, 502, 503))
def reconcile(ts: TS, body: ReconcileRequest | None = None) -> PlanOut:
    """Make the hypervisor match main, recording drift first; with ``dry_run``, only the plan.

    A plan that would stop or undefine domains needs ``confirm: true``; without it: 409
    ``confirmation_required`` with the plan, and nothing is changed.
    """
    request = body or ReconcileRequest()
    started = time.monotonic()
    plan = ts.reconcile(dry_run=request.dry_run, adopt=request.adopt, confirm=request.confirm)
    if not request.dry_run:  # a dry run records nothing: its drift is found again by the real one
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        metrics.DRIFT_FOUND.inc(amount=len(plan.drift))
    return plan_out(plan, request.dry_run)
