"""A successful operation's claim is its record alone: no claim ref is written (a lock file, a rename and an
unlink to make it, as many to drop it), yet every reader of the claims sees the VM held, and a claim ref
left by an older release (or made by hand) still holds its VM."""

from __future__ import annotations

import time

import pytest

from tests.toolstack.conftest import unique
from toolstack import layout
from toolstack.claim_store import ClaimRecord
from toolstack.claims import Claims
from toolstack.cli.history import _claimed
from toolstack.errors import OperationInProgress
from toolstack.models import VM, Task
from toolstack.tasks import TaskObserver, new_task_id


def running_start(vm: VM, host: str) -> Task:
    """A start of ``vm`` running on ``host``, by another process (pid 1)."""
    return Task(
        id=new_task_id(),
        operation="start",
        vm=vm.uuid,
        vm_name=vm.name,
        who="other",
        started=time.time(),
        host=host,
        pid=1,
    )


def test_while_an_operation_runs_its_vm_is_held_by_its_record_and_no_claim_ref_exists(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    base = sim_ts.main.head
    seen: list[tuple[dict[str, str], dict[str, str], set[str]]] = []

    class Watch(TaskObserver):
        def claimed(self, task: Task) -> None:
            claims = Claims(sim_ts.store)
            seen.append(
                (sim_ts.store.list_refs(f"refs/heads/{layout.LOCK_PREFIX}/"), claims.held(), claims.busy())
            )

    sim_ts.start(vm.uuid, observer=Watch())
    ((refs, held, busy),) = seen
    assert refs == {}
    assert held == {vm.uuid: base}  # where its ref would be: the main head it forked from
    assert busy == {vm.uuid}
    assert Claims(sim_ts.store).held() == {}


def test_a_claim_ref_of_an_older_release_still_holds_its_vm(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    # A claim as an older release left it: a ref whose commit records the running task, and no record.
    task = running_start(vm, "another-host")  # that host's to judge: alive as far as this one knows
    claims = Claims(sim_ts.store)
    claims.records.create(vm.uuid, ClaimRecord(task, sim_ts.main.head or "", {}, "task: start", None))
    claims.materialize(vm.uuid)
    assert claims.records.read(vm.uuid) is None and claims.head(vm.uuid) is not None

    with pytest.raises(OperationInProgress) as busy:
        sim_ts.start(vm.uuid)
    assert busy.value.task == task.id
    assert claims.records.read(vm.uuid) is None  # the refused claim left no record behind


def test_the_cold_log_leaves_a_repository_with_a_claim_record_to_the_toolstack_which_settles_it(sim_ts):
    """``toolstack log`` reads the index without opening the toolstack only while nothing is claimed."""
    vm = sim_ts.create(unique(), memory=64)
    assert not _claimed(sim_ts.store)
    task = running_start(vm, "h")
    Claims(sim_ts.store).records.create(vm.uuid, ClaimRecord(task, sim_ts.main.head or "", {}, "m", None))
    assert _claimed(sim_ts.store)
