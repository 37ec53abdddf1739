"""The VM lifecycle through toolstack.ops: every operation is one merge commit on main."""

from __future__ import annotations

import threading

import pytest

from drivers.models import DomainState
from store import JSON
from tests.toolstack.conftest import unique
from toolstack import layout
from toolstack.devices import disk_target
from toolstack.errors import InvalidInput, OperationInProgress, VMExists, VMNotFound
from toolstack.models import Desired, Task, TaskStatus


def last_operation(ts):
    head = ts.main.head
    return ts.store.graph.info(head)


def test_full_lifecycle_on_a_real_driver(ts):
    name = unique("web")
    vm = ts.create(name, memory="256M", vcpus=2, disks=["/srv/images/web.img"], nics=["default"])
    assert vm.desired == Desired.STOPPED
    assert ts.info(vm).state == DomainState.SHUTOFF
    assert ts.driver.get_spec(vm.uuid) == vm.spec  # the hypervisor holds exactly the stored config

    for verb, expected_state, desired in [
        ("start", DomainState.RUNNING, Desired.RUNNING),
        ("pause", DomainState.PAUSED, Desired.PAUSED),
        ("resume", DomainState.RUNNING, Desired.RUNNING),
        ("reboot", DomainState.RUNNING, Desired.RUNNING),
        ("destroy", DomainState.SHUTOFF, Desired.STOPPED),
        ("start", DomainState.RUNNING, Desired.RUNNING),
    ]:
        after = getattr(ts, verb)(name)
        assert after.desired == desired, verb
        assert ts.info(after).state == expected_state, verb
        info = last_operation(ts)
        subject, _, body = info.message.partition("\n")
        assert subject == f"vm {verb} {name}"
        assert f"\nVM: {vm.uuid}\n" in f"\n{body}\n", "the uuid is a trailer"
        assert len(info.parents) == 2, "each operation is a merge of its task branch"
        assert info.author == "Tester <tester@example.org>"
        observed = JSON.decode(ts.main.get(layout.observed_path(ts.host, vm.uuid)))
        assert observed["state"] == expected_state.value

    ts.delete(name)
    assert ts.info(vm) is None
    with pytest.raises(VMNotFound):
        ts.vm(name)
    assert ts.main.list(layout.VMS) == []
    assert ts.main.get(layout.name_path(name)) is None


def test_shutdown_stops_a_running_vm(ts):
    name = unique()
    ts.create(name, memory="128M")
    ts.start(name)
    vm = ts.shutdown(name, timeout=10, force=True)
    assert vm.desired == Desired.STOPPED
    assert not ts.info(vm).state.is_active


def test_resources_and_devices_change_the_stored_config(ts):
    name = unique()
    vm = ts.create(name, memory="256M", vcpus=1)
    vm = ts.set_resources(name, memory="512M", vcpus=2)
    assert (vm.spec.memory, vm.spec.vcpus) == (512, 2)
    assert ts.driver.get_spec(vm.uuid).memory == 512
    vm = ts.attach_disk(name, "/srv/images/data.img")
    assert [d.id for d in vm.spec.disks] == ["disk0"]
    assert ts.main.get(layout.device_path(vm.uuid, "disk0")) is not None
    vm = ts.attach_nic(name, network="default")
    assert ts.driver.get_spec(vm.uuid) == vm.spec
    vm = ts.detach(name, "disk0")
    assert vm.spec.disks == ()
    assert ts.driver.get_spec(vm.uuid) == vm.spec


def test_disk_targets_follow_linux_naming_past_vdz():
    assert [disk_target(i) for i in (0, 25, 26, 51, 52, 701, 702)] == [
        "vda", "vdz", "vdaa", "vdaz", "vdba", "vdzz", "vdaaa"
    ]  # fmt: skip


def test_attach_disk_takes_the_first_free_target_even_past_vdz(ts):
    name = unique("disks")
    ts.create(name, memory=64, disks=[f"/srv/d{i}.img" for i in range(27)])
    vm = ts.detach(name, "disk1")
    vm = ts.attach_disk(name, "/srv/again.img")
    assert {(d.id, d.target) for d in vm.spec.disks} >= {("disk1", "vdb"), ("disk26", "vdaa")}
    vm = ts.attach_disk(name, "/srv/more.img")
    assert vm.spec.device("disk27").target == "vdab"


def test_bad_input_is_refused_before_anything_is_written(ts):
    head = ts.main.head
    with pytest.raises(InvalidInput, match="memory"):
        ts.create(unique(), memory="12XB")
    with pytest.raises(InvalidInput, match="name"):
        ts.create("bad name!", memory="128M")
    with pytest.raises(VMNotFound):
        ts.start("no-such-vm")
    name = unique()
    ts.create(name, memory="128M")
    head = ts.main.head
    with pytest.raises(VMExists):
        ts.create(name, memory="128M")
    with pytest.raises(InvalidInput, match="vcpus"):
        ts.set_resources(name, vcpus=0)
    assert ts.main.head == head


def test_a_busy_vm_refuses_a_second_operation(sim_ts, mocker):
    name = unique()
    vm = sim_ts.create(name, memory="128M")
    entered, release = threading.Event(), threading.Event()
    real_start = sim_ts.driver.start

    def slow_start(uuid):
        entered.set()
        assert release.wait(10)
        return real_start(uuid)

    mocker.patch.object(sim_ts.driver, "start", side_effect=slow_start)
    worker = threading.Thread(target=sim_ts.start, args=(name,))
    worker.start()
    try:
        assert entered.wait(10)
        with pytest.raises(OperationInProgress) as err:
            sim_ts.pause(name)
        assert err.value.running_operation == "start"
        assert err.value.vm == name
    finally:
        release.set()
        worker.join()
    assert sim_ts.vm(vm.uuid).desired == Desired.RUNNING


def test_operations_on_different_vms_run_concurrently_and_merge(sim_ts):
    names = [unique() for _ in range(6)]
    for name in names:
        sim_ts.create(name, memory="64M")
    errors: list[BaseException] = []

    def cycle(name: str) -> None:
        try:
            sim_ts.start(name)
            sim_ts.pause(name)
            sim_ts.resume(name)
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=cycle, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(sim_ts.vm(n).desired == Desired.RUNNING for n in names)
    assert all(sim_ts.info(sim_ts.vm(n)).state == DomainState.RUNNING for n in names)


def test_two_concurrent_creates_of_one_name_do_not_both_succeed(tmp_path):
    from toolstack.ops import Toolstack

    repo, uri = str(tmp_path / "state.git"), f"sim://{tmp_path}/sim"
    results: list[object] = []
    barrier = threading.Barrier(2)

    def create() -> None:
        ts = Toolstack.open(repo, uri, author="racer")
        try:
            barrier.wait()
            results.append(ts.create("contested", memory="64M"))
        except VMExists as err:
            results.append(err)
        finally:
            ts.close()

    Toolstack.init(repo, uri).close()
    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, VMExists) for r in results) == 1
    with Toolstack.open(repo, uri) as ts:
        assert [vm.name for vm in ts.vms()] == ["contested"]
        assert len(ts.driver.list()) == 1


def test_create_with_start_is_one_task_and_one_operation_on_main(sim_ts):
    """As `xl create` does: the VM is defined and booted by one task, recorded by one commit on main."""
    name = unique()
    before = sim_ts.main.head
    vm = sim_ts.create(name, memory="64M", start=True)
    assert vm.desired == Desired.RUNNING
    assert sim_ts.driver.info(vm.uuid).state == DomainState.RUNNING
    first_parents = sim_ts.store.graph.parents(sim_ts.main.head)
    assert first_parents[0] == before  # a single operation landed on main
    assert [op.subject for op in sim_ts.log(name)] == [f"vm create {name}: 64 MiB, 1 vCPU"]
    tree = sim_ts.main.tree
    tasks = [Task.model_validate_json(layout.read_task_record(tree, t)) for t in layout.task_ids(tree)]
    mine = [(t.operation, t.status, t.detail) for t in tasks if t.vm == vm.uuid]
    assert mine == [("create", TaskStatus.SUCCEEDED, {"start": True})]
