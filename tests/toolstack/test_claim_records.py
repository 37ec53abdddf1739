"""A claim is a durable record (``<gitdir>/toolstack/claims/<uuid>``), lighter than a commit: the claim ref is
made without an fsync, and the claim commit is written only by a failure or by recovery. Whatever a crash
leaves of the claim, recovery completes or rolls back the operation from its record."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.toolstack.conftest import unique
from tests.toolstack.test_recovery import assert_consistent, cli
from toolstack import layout
from toolstack.claim_store import CLAIMS_DIRECTORY, ClaimRecord
from toolstack.errors import OperationFailed, OperationInProgress
from toolstack.models import Task, TaskStatus
from toolstack.ops import Toolstack
from toolstack.task_records import get_task, list_tasks
from toolstack.tasks import TaskObserver

OPERATIONS = [
    ("vm", "create", "fresh", "--memory", "64M"),
    ("vm", "start", "a"),
    ("vm", "set", "a", "--memory", "96M"),
]


@pytest.mark.parametrize("point", ["claimed", "acted"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: " ".join(op[:2]))
def test_a_crash_that_loses_the_claim_ref_is_recovered_from_the_record(tmp_path, point, operation):
    # The claim ref is made without an fsync: a power loss may drop it while the record, made durable
    # first, stays. Modelled here by a kill, then deleting the ref as the lost write would have.
    assert cli(tmp_path, "init").returncode == 0
    assert cli(tmp_path, "vm", "create", "a", "--memory", "64M").returncode == 0
    crashed = cli(tmp_path, *operation, env={"TOOLSTACK_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL
    gitdir = tmp_path / "state.git"
    (claimed,) = [path.name for path in (gitdir / CLAIMS_DIRECTORY).iterdir()]
    ref = f"refs/heads/{layout.LOCK_PREFIX}/{claimed}"
    subprocess.run(["git", "-C", str(gitdir), "update-ref", "-d", ref], check=True)
    recovered = cli(tmp_path, "vm", "list")
    assert recovered.returncode == 0, recovered.stderr
    assert "recovered task" in recovered.stderr
    assert_consistent(tmp_path)
    assert list((gitdir / CLAIMS_DIRECTORY).iterdir()) == []
    with Toolstack.open(str(gitdir), f"sim://{tmp_path}/sim") as ts:
        tasks = [layout.read_task_record(ts.main.tree, t) for t in layout.task_ids(ts.main.tree)]
        assert all(b'"status": "succeeded"' in t or b'"status": "rolled-back"' in t for t in tasks)
        assert len(tasks) == 2  # the create of a and the interrupted operation, settled


def test_a_successful_operation_writes_no_claim_commit(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    before = sim_ts.main.head
    sim_ts.start(vm.uuid)
    merge = sim_ts.store.at(sim_ts.main.head)
    assert merge.parents[0] == before
    outcome = sim_ts.store.at(merge.parents[1])
    # The outcome sits straight on main's head of the claim's time: no commit of the running task.
    assert outcome.parents == (before,)
    assert outcome.info.message.strip().endswith(": done")
    assert sim_ts.store.list_refs(f"refs/heads/{layout.LOCK_PREFIX}/") == {}
    assert os.listdir(os.path.join(sim_ts.store.gitdir, CLAIMS_DIRECTORY)) == []


def test_while_an_operation_holds_its_vm_the_record_names_the_task_to_everyone(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    seen: list[Task] = []

    class Watch(TaskObserver):
        def precondition(self, task: Task) -> None:
            # Another operation on the VM is refused, naming this task; the task lists show it running.
            with pytest.raises(OperationInProgress) as busy:
                sim_ts.start(vm.uuid)
            assert busy.value.task == task.id
            running = get_task(sim_ts.context, task.id)
            assert running is not None and running.status is TaskStatus.RUNNING
            assert task.id in [t.id for t in list_tasks(sim_ts.context, limit=5)[0]]
            seen.append(task)

    sim_ts.start(vm.uuid, observer=Watch())
    assert len(seen) == 1
    done = get_task(sim_ts.context, seen[0].id)
    assert done is not None and done.status is TaskStatus.SUCCEEDED


def test_a_failed_operation_keeps_the_claim_commit_and_its_failure(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    sim_ts.driver.faults.fail_nth("start", 1)
    with pytest.raises(OperationFailed):
        sim_ts.start(vm.uuid)
    (failed,) = sim_ts.store.list_refs(f"refs/heads/{layout.FAILED_PREFIX}/").values()
    failure = sim_ts.store.at(failed)
    claim = sim_ts.store.at(failure.parents[0])
    assert claim.info.message.startswith("task ") and f"vm start {vm.name}" in claim.info.message
    assert claim.parents == (sim_ts.main.head,)
    task_id = failure.info.message.split()[1].rstrip(":")
    assert b'"status": "running"' in claim.get(layout.task_path(task_id))
    assert b'"status": "failed"' in failure.get(layout.task_path(task_id))


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"vms/[0-9a-f]{2}/[a-z0-9/-]{1,20}", fullmatch=True),
        st.one_of(st.none(), st.binary(max_size=64)),
        max_size=5,
    ),
    st.text(max_size=30),
    st.one_of(st.none(), st.text(max_size=20)),
)
def test_a_record_reads_back_as_written(intended, message, author):
    task = Task(
        id="20250101T120000-0123abcd",
        operation="start",
        vm="00000000-0000-0000-0000-000000000001",
        vm_name="web",
        who="someone",
        started=1.5,
        host="h",
        pid=42,
    )
    record = ClaimRecord(task, "0" * 40, intended, message, author)
    assert ClaimRecord.decode(record.encode()) == record
