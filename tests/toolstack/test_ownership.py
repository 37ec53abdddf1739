"""Ownership: every domain the toolstack defines carries its pool's id and the VM's uuid, and a pool never
starts, stops, redefines or undefines a domain it does not own."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import drivers
from drivers import DomainSpec
from drivers.models import DomainState
from tests.drivers.strategies import domain_specs
from tests.toolstack.test_cli import run
from toolstack.models import MANAGED_KEY, MANAGED_VALUE
from toolstack.ops import Toolstack
from toolstack.ownership import POOL_KEY, VM_KEY, ForeignDomain, Ownership, tagged, untagged

AUTHOR = "Owner <owner@example.org>"


@pytest.fixture(params=["sim", "libvirt-test"])
def hypervisor(request, tmp_path):
    """One hypervisor that two pools share: the simulator's directory, or libvirt's test:///default (one per
    process: domains of earlier tests are still there, and must be left alone too)."""
    uri = f"sim://{tmp_path}/shared.sim" if request.param == "sim" else "test:///default"
    created: list[str] = []
    # The test driver's domains live as long as one connection to it does: hold one for the whole test.
    with drivers.open(uri) as keeper:
        yield uri, created, keeper
        for uuid in created:
            try:
                keeper.destroy(uuid)
                keeper.undefine(uuid)
            except drivers.DriverError:
                pass


def name(prefix: str) -> str:
    return f"{prefix}-{uuidlib.uuid4().hex[:6]}"


def test_every_domain_carries_the_pool_id_and_the_vm_uuid(tmp_path, hypervisor):
    uri, created, driver = hypervisor
    with Toolstack.init(str(tmp_path / "a.git"), uri, name="a", author=AUTHOR) as ts:
        vm = ts.create(name("web"), memory="64M")
        created.append(vm.uuid)
        ts.start(vm.uuid)
        pool = ts.pool.id
        assert ts.driver.get_spec(vm.uuid) == vm.spec  # the tags are the hypervisor's business only
    metadata = driver.get_spec(vm.uuid).metadata
    assert metadata[MANAGED_KEY] == MANAGED_VALUE
    assert metadata[POOL_KEY] == pool
    assert metadata[VM_KEY] == vm.uuid


def test_two_pools_on_one_hypervisor_never_touch_each_others_domains(tmp_path, hypervisor):
    uri, created, _ = hypervisor
    with (
        Toolstack.init(str(tmp_path / "a.git"), uri, name="a", author=AUTHOR) as a,
        Toolstack.init(str(tmp_path / "b.git"), uri, name="b", author=AUTHOR) as b,
    ):
        mine = a.create(name("a"), memory="64M")
        theirs = b.create(name("b"), memory="64M")
        created += [mine.uuid, theirs.uuid]
        b.start(theirs.uuid)
        plan = a.reconcile()
        assert not any(action.uuid == theirs.uuid for action in plan.actions)
        assert any(theirs.uuid in line and "another pool's domain" in line for line in plan.foreign)
        # Not even --adopt takes another pool's domain.
        plan = a.reconcile(adopt=True)
        assert not any(action.uuid == theirs.uuid for action in plan.actions)
        assert b.driver.info(theirs.uuid).state == DomainState.RUNNING
        plan = b.reconcile()
        assert not any(action.uuid == mine.uuid for action in plan.actions)
        assert a.driver.info(mine.uuid).state == DomainState.SHUTOFF
        # The guard itself: pool a cannot stop or undefine b's domain, whatever code path asks.
        with pytest.raises(ForeignDomain, match="belongs to another pool"):
            a.driver.destroy(theirs.uuid)
        with pytest.raises(ForeignDomain):
            a.driver.undefine(theirs.uuid)
        with pytest.raises(ForeignDomain):
            a.driver.define(b.driver.get_spec(theirs.uuid))
        assert b.driver.info(theirs.uuid).state == DomainState.RUNNING
        assert (
            b.driver.owner(theirs.uuid) is Ownership.OURS and a.driver.owner(theirs.uuid) is Ownership.FOREIGN
        )


def test_an_unmanaged_domain_is_listed_and_adopted_only_when_asked(tmp_path, hypervisor):
    uri, created, driver = hypervisor
    spec = DomainSpec(uuid=str(uuidlib.uuid4()), name=name("virsh"), memory=64)
    created.append(str(spec.uuid))
    driver.define(spec)  # by virsh, xl or another tool
    driver.start(spec.uuid)
    with Toolstack.init(str(tmp_path / "a.git"), uri, name="a", author=AUTHOR) as ts:
        plan = ts.reconcile()
        assert any(str(spec.uuid) in line for line in plan.unknown)
        assert ts.driver.info(spec.uuid).state == DomainState.RUNNING
        with pytest.raises(ForeignDomain, match="not managed by the toolstack"):
            ts.driver.destroy(spec.uuid)
        plan = ts.reconcile(adopt=True)
        assert [(a.kind, a.uuid) for a in plan.actions if a.uuid == str(spec.uuid)] == [
            ("adopt", str(spec.uuid))
        ]
        assert ts.vm(spec.name).uuid == str(spec.uuid)
        assert ts.driver.owner(spec.uuid) is Ownership.OURS
        assert ts.driver.info(spec.uuid).state == DomainState.RUNNING


def test_a_domain_tagged_by_an_older_release_is_claimed_only_by_adopt(tmp_path, hypervisor):
    uri, created, driver = hypervisor
    legacy = DomainSpec(
        uuid=str(uuidlib.uuid4()), name=name("old"), memory=64, metadata={MANAGED_KEY: MANAGED_VALUE}
    )
    created.append(str(legacy.uuid))
    driver.define(legacy)
    with Toolstack.init(str(tmp_path / "a.git"), uri, name="a", author=AUTHOR) as ts:
        plan = ts.reconcile()
        assert not any(action.uuid == str(legacy.uuid) for action in plan.actions)
        assert any(str(legacy.uuid) in line and "release without pool ids" in line for line in plan.foreign)
        assert ts.driver.owner(legacy.uuid) is Ownership.LEGACY
        ts.reconcile(adopt=True)
        assert ts.driver.owner(legacy.uuid) is Ownership.OURS
        assert ts.vm(legacy.name).spec.memory == 64


def test_reconcile_in_a_pool_leaves_other_pools_domains_through_the_cli(tmp_path):
    a = ["--repo", str(tmp_path / "a.git"), "--driver", f"sim://{tmp_path}/shared.sim"]
    b = ["--repo", str(tmp_path / "b.git"), "--driver", f"sim://{tmp_path}/shared.sim"]
    run(tmp_path, *a, "init", "--name", "a")
    run(tmp_path, *b, "init", "--name", "b")
    run(tmp_path, *a, "vm", "create", "q1", "--memory", "64M", "--start")
    run(tmp_path, *b, "vm", "create", "q2", "--memory", "64M", "--start")
    for side, other in ((a, "q2"), (b, "q1")):
        out = run(tmp_path, *side, "reconcile").stdout
        assert "undefine" not in out and "stop" not in out
        assert f"foreign: {other} (" in out
    for side, mine in ((a, "q1"), (b, "q2")):
        shown = json.loads(run(tmp_path, *side, "--json", "vm", "show", mine).stdout)
        assert shown["state"] == "running"


@settings(max_examples=100, deadline=None)
@given(spec=domain_specs(), pool=st.uuids())
def test_a_spec_untagged_is_the_spec_that_was_tagged_and_a_valid_one(spec: DomainSpec, pool: uuidlib.UUID):
    # untagged() copies rather than validates again: dropping metadata entries must leave a valid spec,
    # equal to the one validation would give.
    # As main stores a VM's spec: marked as managed, without the pool's and the VM's tags.
    kept = {k: v for k, v in spec.metadata.items() if k not in (POOL_KEY, VM_KEY)}
    plain = spec.evolve(metadata={**kept, MANAGED_KEY: MANAGED_VALUE})
    back = untagged(tagged(plain, str(pool)))
    assert back == plain
    assert back == DomainSpec.model_validate(back.model_dump())
    assert back.model_dump_json() == DomainSpec.model_validate(back.model_dump()).model_dump_json()


def test_inspect_answers_whose_a_domain_is_and_its_spec_from_one_read(tmp_path):
    with Toolstack.init(str(tmp_path / "state.git"), f"sim://{tmp_path}/sim", author=AUTHOR) as ts:
        vm = ts.create("a", memory="128M")
        ts.driver.oob_create(DomainSpec(uuid=uuidlib.uuid4(), name="stranger", memory=64))
        stranger = next(d for d in ts.driver.list() if d.name == "stranger")
        assert ts.driver.inspect(vm.uuid) == (Ownership.OURS, ts.driver.get_spec(vm.uuid))
        assert ts.driver.inspect(stranger.uuid) == (Ownership.UNMANAGED, ts.driver.get_spec(stranger.uuid))
