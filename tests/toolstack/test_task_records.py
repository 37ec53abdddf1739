"""Task records live in 256 shards (``tasks/<last two id characters>/<id>``), so that recording one rewrites a
small tree; the flat ``tasks/<id>`` records of repositories made before the shards are still read."""

from __future__ import annotations

from tests.toolstack.conftest import unique
from toolstack import layout
from toolstack.claims import Claims
from toolstack.models import Task, TaskStatus
from toolstack.task_records import get_task, list_tasks
from toolstack.tasks import TaskObserver


def test_an_operation_records_its_task_in_the_shard_named_by_the_ids_last_two_characters(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    (task,) = [t for t in list_tasks(sim_ts.context, limit=10)[0] if t.vm == vm.uuid]
    assert layout.task_path(task.id) == f"tasks/{task.id[-2:]}/{task.id}"
    assert sim_ts.main.get(layout.task_path(task.id)) is not None
    assert sim_ts.main.get(layout.legacy_task_path(task.id)) is None
    assert task.status == TaskStatus.SUCCEEDED


def test_flat_records_of_older_repositories_are_still_listed_and_read(sim_ts):
    old = Task(
        id="20240101T000000-0123abcd",
        operation="start",
        vm="00000000-0000-0000-0000-000000000001",
        vm_name="old",
        who="someone",
        started=1704067200.0,
        finished=1704067201.0,
        status=TaskStatus.SUCCEEDED,
        host="h",
        pid=1,
    )
    with sim_ts.main.transaction(message="a record in the old layout") as tx:
        tx.set(layout.legacy_task_path(old.id), old.encode())
    new_vm = sim_ts.create(unique(), memory=64)
    listed = list_tasks(sim_ts.context, limit=10)[0]
    assert [t.id for t in listed][-1] == old.id  # oldest last, next to the sharded ones
    assert any(t.vm == new_vm.uuid for t in listed)
    assert get_task(sim_ts.context, old.id) == old
    assert old.id in layout.task_ids(sim_ts.main.tree)


def test_rewriting_an_old_flat_record_moves_it_to_its_shard(sim_ts):
    tree = sim_ts.main.tree.set(layout.legacy_task_path("20240101T000000-0123abcd"), b"{}")
    moved = layout.with_task_record(tree, "20240101T000000-0123abcd", b'{"x": 1}')
    assert moved.get(layout.legacy_task_path("20240101T000000-0123abcd")) is None
    assert moved.get("tasks/cd/20240101T000000-0123abcd") == b'{"x": 1}'
    assert layout.read_task_record(moved, "20240101T000000-0123abcd") == b'{"x": 1}'


def test_an_observer_learns_the_task_when_the_vm_is_claimed_and_when_it_is_done(sim_ts):
    seen: list[tuple[str, Task]] = []

    class Recorder(TaskObserver):
        def claimed(self, task: Task) -> None:
            # Claimed: the VM is held and the hypervisor not yet called.
            assert task.vm in Claims(sim_ts.store).busy()
            seen.append(("claimed", task))

        def finished(self, task: Task) -> None:
            seen.append(("finished", task))

    vm = sim_ts.create(unique(), memory=64, observer=Recorder())
    assert [(event, t.vm, t.status) for event, t in seen] == [
        ("claimed", vm.uuid, TaskStatus.RUNNING),
        ("finished", vm.uuid, TaskStatus.SUCCEEDED),
    ]
    assert seen[0][1].id == seen[1][1].id


def test_observed_state_is_sharded_and_old_flat_records_are_read_then_moved(sim_ts):
    vm = sim_ts.create(unique(), memory=64)
    tree = sim_ts.main.tree
    assert (
        layout.observed_path(sim_ts.host, vm.uuid) == f"hosts/{sim_ts.host}/domains/{vm.uuid[:2]}/{vm.uuid}"
    )
    recorded = tree.get(layout.observed_path(sim_ts.host, vm.uuid))
    assert recorded is not None
    # A repository made before the shards holds the record at hosts/<host>/domains/<uuid>.
    with sim_ts.main.transaction(message="the old layout") as tx:
        tx.remove(layout.observed_path(sim_ts.host, vm.uuid))
        tx.set(layout.legacy_observed_path(sim_ts.host, vm.uuid), recorded)
    assert sim_ts.vm(vm.uuid).observed is not None
    assert vm.uuid in layout.observed_uuids(sim_ts.main.tree, sim_ts.host)
    started = sim_ts.start(vm.uuid)
    tree = sim_ts.main.tree
    assert tree.get(layout.legacy_observed_path(sim_ts.host, vm.uuid)) is None
    assert started.observed is not None and started.observed.state == "running"
