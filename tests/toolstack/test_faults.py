"""Fault injection at every driver step of every operation: main is unchanged, the hypervisor is as before,
and the failed task's branch is kept for audit."""

from __future__ import annotations

import pytest

from drivers.models import Disk
from drivers.sim.faults import OPERATIONS
from toolstack import layout
from toolstack.errors import OperationFailed
from toolstack.ops import Toolstack

# Every driver call that changes the hypervisor (the simulator can fail any of them).
MUTATING = sorted(OPERATIONS - {"info", "list", "get_spec"})
NAME = "victim"


def _create(ts):
    ts.create(NAME, memory="256M", vcpus=1, max_vcpus=4, max_memory="1G", disks=["/srv/v.img"])


def _running(ts):
    _create(ts)
    ts.start(NAME)


def _paused(ts):
    _running(ts)
    ts.pause(NAME)


SCENARIOS = {
    "create": (lambda ts: None, lambda ts: _create(ts)),
    "create and start": (lambda ts: None, lambda ts: ts.create(NAME, memory="256M", start=True)),
    "start": (_create, lambda ts: ts.start(NAME)),
    "shutdown": (_running, lambda ts: ts.shutdown(NAME, timeout=5, force=True)),
    "reboot": (_running, lambda ts: ts.reboot(NAME)),
    "pause": (_running, lambda ts: ts.pause(NAME)),
    "resume": (_paused, lambda ts: ts.resume(NAME)),
    "destroy": (_running, lambda ts: ts.destroy(NAME)),
    "delete": (_running, lambda ts: ts.delete(NAME)),
    "set": (_running, lambda ts: ts.set_resources(NAME, memory="512M", vcpus=2)),
    "attach": (_running, lambda ts: ts.attach(NAME, Disk(id="data", source="/srv/d.img", target="vdb"))),
    "detach": (_running, lambda ts: ts.detach(NAME, "disk0")),
}


def hypervisor_state(ts):
    return {
        str(info.uuid): (info.state.value, ts.driver.get_spec(info.uuid).model_dump(mode="json"))
        for info in ts.driver.list()
    }


def steps_of(tmp_path, scenario):
    """The driver calls an operation makes when nothing fails: (operation, nth call)."""
    setup, run = SCENARIOS[scenario]
    with Toolstack.init(str(tmp_path / "probe.git"), "sim://", author="probe") as ts:
        setup(ts)
        before = dict(ts.driver.faults.calls)
        run(ts)
        after = dict(ts.driver.faults.calls)
    return [(op, n) for op in MUTATING for n in range(1, after.get(op, 0) - before.get(op, 0) + 1)]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_failure_at_any_driver_step_leaves_main_and_the_hypervisor_as_they_were(tmp_path, scenario):
    steps = steps_of(tmp_path, scenario)
    assert steps, f"{scenario} makes no driver call?"
    setup, run = SCENARIOS[scenario]
    for index, (operation, nth) in enumerate(steps):
        for phase in ("before", "after"):
            repo = tmp_path / f"{index}-{phase}.git"
            with Toolstack.init(str(repo), "sim://", author="tester") as ts:
                setup(ts)
                head = ts.main.head
                hypervisor = hypervisor_state(ts)
                failed_before = [b for b in ts.store.branches() if b.startswith("failed-tasks/")]
                ts.driver.faults.fail_nth(operation, nth, phase=phase)
                with pytest.raises(OperationFailed) as err:
                    run(ts)
                where = f"{scenario}: {operation} #{nth} failing {phase}"
                assert err.value.compensation_error is None, where
                assert ts.main.head == head, where
                assert hypervisor_state(ts) == hypervisor, where
                failed = [b for b in ts.store.branches() if b.startswith("failed-tasks/")]
                assert len(failed) == len(failed_before) + 1, where
                assert not [b for b in ts.store.branches() if b.startswith("vm-task/")], where
                record = ts.store.branch(failed[-1]).get(layout.task_path(err.value.task))
                assert b'"status": "failed"' in record, where
