"""Reconcile (drift, adoption, removal), rollback with its dry-run plan, and history read from git."""

from __future__ import annotations

import subprocess

import pytest

import toolstack.ops
from drivers import DomainSpec
from drivers.models import DomainState
from store import Conflict
from tests.toolstack.conftest import unique
from toolstack import layout
from toolstack.models import Desired


def git(ts, *args):
    return subprocess.run(
        ["git", "-C", ts.store.gitdir, *args], capture_output=True, text=True, check=True
    ).stdout


def test_drift_is_recorded_in_a_commit_that_says_so_then_repaired(sim_ts):
    vm = sim_ts.create("web", memory="128M")
    sim_ts.start("web")
    sim_ts.driver.oob_kill(vm.uuid)  # stopped outside the toolstack
    plan = sim_ts.reconcile(dry_run=True)
    assert [(a.kind, a.name) for a in plan.actions] == [("start", "web")]
    assert plan.drift and "is shutoff, was running" in plan.drift[0]
    assert sim_ts.info(vm).state == DomainState.SHUTOFF  # a dry run changes nothing
    sim_ts.reconcile()
    assert sim_ts.info(vm).state == DomainState.RUNNING
    subjects = git(sim_ts, "log", "--format=%s", "-2", "main").splitlines()
    assert subjects[0] == "reconcile: start web"
    assert subjects[1] == "drift: web is shutoff, was running, desired running"
    body = git(sim_ts, "log", "--format=%b", "-1", "main~1")
    assert "changed outside the toolstack" in body and f"VM: {vm.uuid}" in body
    assert not sim_ts.reconcile(dry_run=True)  # converged


def test_a_vm_missing_from_the_hypervisor_is_defined_again(sim_ts):
    vm = sim_ts.create("lost", memory="128M")
    sim_ts.start("lost")
    sim_ts.driver.oob_kill(vm.uuid)
    sim_ts.driver.oob_undefine(vm.uuid)
    plan = sim_ts.reconcile()
    assert [a.kind for a in plan.actions] == ["define", "start"]
    assert sim_ts.driver.get_spec(vm.uuid) == vm.spec
    assert sim_ts.info(vm).state == DomainState.RUNNING


def test_unknown_domains_are_reported_or_adopted(sim_ts):
    stranger = DomainSpec(uuid="6f1b8c43-0000-4000-8000-000000000001", name="stranger", memory=64)
    sim_ts.driver.oob_create(stranger, running=True)
    plan = sim_ts.reconcile(dry_run=True)
    assert plan.unknown and "stranger" in plan.unknown[0] and not plan.actions
    sim_ts.reconcile(adopt=True)
    adopted = sim_ts.vm("stranger")
    assert adopted.desired == Desired.RUNNING and adopted.spec.memory == 64
    assert sim_ts.info(adopted).state == DomainState.RUNNING
    assert not sim_ts.reconcile(dry_run=True)


def test_rollback_dry_run_plans_and_the_real_one_restores_main_and_the_hypervisor(sim_ts):
    sim_ts.create("a", memory="128M")
    sim_ts.start("a")
    before = sim_ts.main.head
    sim_ts.set_resources("a", memory="256M")
    sim_ts.destroy("a")
    b = sim_ts.create("b", memory="64M")
    head = sim_ts.main.head
    plan = sim_ts.rollback(before, dry_run=True)
    # a goes back to 128M and running; b (created later, never started) is undefined.
    assert sorted((a.kind, a.name) for a in plan.actions) == [
        ("start", "a"),
        ("undefine", "b"),
        ("update", "a"),
    ]
    assert sim_ts.main.head == head  # the dry run wrote nothing
    sim_ts.rollback(before)
    assert [vm.name for vm in sim_ts.vms()] == ["a"]
    a = sim_ts.vm("a")
    assert a.spec.memory == 128 and a.desired == Desired.RUNNING
    assert sim_ts.driver.get_spec(a.uuid).memory == 128
    assert sim_ts.info(a).state == DomainState.RUNNING
    assert sim_ts.info(b) is None
    # History was not rewritten: the rollback is a forward commit.
    assert sim_ts.store.graph.is_ancestor(head, sim_ts.main.head)
    assert git(sim_ts, "log", "-2", "--format=%s", "main").splitlines()[1].startswith("rollback all VMs to ")


def test_rollback_of_one_vm_leaves_the_others(sim_ts):
    sim_ts.create("keep", memory="64M")
    sim_ts.create("roll", memory="64M")
    point = sim_ts.main.head
    sim_ts.set_resources("keep", vcpus=2)
    sim_ts.set_resources("roll", vcpus=3)
    sim_ts.rollback(point, vm="roll")
    assert sim_ts.vm("roll").spec.vcpus == 1
    assert sim_ts.vm("keep").spec.vcpus == 2
    assert sim_ts.driver.get_spec(sim_ts.vm("roll").uuid).vcpus == 1


def _while_rollback_plans(monkeypatch, meanwhile) -> None:
    """Run ``meanwhile`` after the rollback computed its tree and before it commits."""
    planned = toolstack.ops.rollback_tree

    def plan_then_race(*args, **kwargs):
        result = planned(*args, **kwargs)
        meanwhile()
        return result

    monkeypatch.setattr(toolstack.ops, "rollback_tree", plan_then_race)


def test_a_rollback_of_one_vm_keeps_a_change_to_another_made_while_it_ran(sim_ts, monkeypatch):
    sim_ts.create("keep", memory="64M")
    sim_ts.create("roll", memory="64M")
    point = sim_ts.main.head
    sim_ts.set_resources("roll", vcpus=3)
    _while_rollback_plans(monkeypatch, lambda: sim_ts.set_resources("keep", vcpus=4))
    sim_ts.rollback(point, vm="roll")
    assert sim_ts.vm("roll").spec.vcpus == 1
    assert sim_ts.vm("keep").spec.vcpus == 4  # not silently reverted by the rollback's stale tree


def test_a_rollback_conflicts_with_a_change_to_its_vm_made_while_it_ran(sim_ts, monkeypatch):
    sim_ts.create("roll", memory="64M")
    point = sim_ts.main.head
    sim_ts.set_resources("roll", vcpus=3)
    _while_rollback_plans(monkeypatch, lambda: sim_ts.set_resources("roll", memory="96M"))
    with pytest.raises(Conflict) as caught:
        sim_ts.rollback(point, vm="roll")
    assert any(c.path.startswith(layout.vm_dir(sim_ts.vm("roll").uuid)) for c in caught.value.conflicts)
    assert sim_ts.vm("roll").spec.memory == 96 and sim_ts.vm("roll").spec.vcpus == 3  # nothing rolled back


def test_log_reads_operations_from_git_history_newest_first(sim_ts):
    names = [unique() for _ in range(3)]
    for name in names:
        sim_ts.create(name, memory="64M")
    sim_ts.start(names[0])
    sim_ts.set_resources(names[1], memory="96M")
    uuid0 = sim_ts.vm(names[0]).uuid
    ops = sim_ts.log(names[0])
    assert [op.subject for op in ops] == [f"vm start {names[0]}", f"vm create {names[0]}: 64 MiB, 1 vCPU"]
    everything = sim_ts.log()
    assert everything[0].subject.startswith(f"vm set {names[1]}")
    assert everything[-1].subject.startswith("Initialize pool ")
    # The index agrees with git's own per-path log of main's first-parent history.
    expected = git(sim_ts, "log", "--first-parent", "--format=%H", "main", "--", layout.vm_dir(uuid0)).split()
    assert [op.commit for op in ops] == expected
    # The last change of a VM (its ETag in the API) is the newest of those commits, and no one else's.
    assert sim_ts.last_change(uuid0) == expected[0]
    assert sim_ts.last_change(sim_ts.vm(names[1]).uuid) == everything[0].commit
    assert sim_ts.last_change("no-such-vm") is None
    sim_ts.delete(names[0])
    assert sim_ts.log(uuid0)[0].subject == f"vm delete {names[0]}"
    assert sim_ts.last_change(uuid0) == sim_ts.log(uuid0)[0].commit


def test_concurrent_readers_of_the_vm_log_index_each_commit_once(sim_ts, monkeypatch):
    """Readers racing operations (the API reads an ETag after every operation) share one index, and index
    each commit of main once: a head read outside the index's mutex could be older than the one indexed
    meanwhile, look like a reset of main, and rebuild the index from scratch."""
    from concurrent.futures import ThreadPoolExecutor

    import toolstack.log_index

    indexed: list[str] = []
    original = toolstack.log_index.walk_back

    def counting(reader, head, stop):
        for commit in original(reader, head, stop):
            indexed.append(commit.commit)
            yield commit

    monkeypatch.setattr(toolstack.log_index, "walk_back", counting)

    def operate(n: int) -> None:
        vm = sim_ts.create(f"race{n}", memory="32M")
        assert sim_ts.last_change(vm.uuid) is not None
        sim_ts.start(vm.uuid)
        assert sim_ts.last_change(vm.uuid) is not None

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(operate, range(24)))
    chain = list(sim_ts.store.graph.first_parent_chain(sim_ts.main.head))
    assert sorted(indexed) == sorted(chain)  # every commit of main indexed exactly once
