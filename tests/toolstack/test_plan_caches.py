"""What a toolstack keeps between reads changes no answer: a plan and a listing made by a toolstack that has
read (and kept) the pool before it changed equal those made by a fresh toolstack that has kept nothing.

The caches behind them: the parsed VMs (:class:`toolstack.vmsource.ParsedVMs`, by the ids of each VM's
files), the simulator's parsed domains (by each file's bytes), and a plan reading each domain once. Each must
see every change: on main (an operation, a GitOps edit, a broken entry, an observed record) and on the
hypervisor (drift, a domain removed or added behind the toolstack's back).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
import toolstack.ops
from drivers import DomainSpec
from drivers.sim import SimDriver
from toolstack import layout
from toolstack.cli import main as cli
from toolstack.ops import Toolstack
from toolstack.status import listing
from toolstack.vmsource import ParsedVMs, VMSource

HOST = "h1"
CHANGES = st.sampled_from(
    [
        "kill",  # the domain stops behind the toolstack's back
        "balloon",  # its live memory changes behind its back
        "undefine",  # the domain is removed behind its back
        "foreign",  # a domain appears that the toolstack never defined
        "resize",  # an operation changes the VM on main
        "desired",  # a GitOps edit of the desired state
        "break",  # a GitOps edit that leaves the VM's config invalid
        "forget",  # the observed record of the VM is removed from main
        "delete",  # the VM is deleted
    ]
)


def open_pool(where: str) -> Toolstack:
    return Toolstack.open(f"{where}/state.git", f"sim://{where}/sim?durable=0", host=HOST, author="t")


def edit(ts: Toolstack, files: dict[str, bytes | None]) -> None:
    """A commit on main that no operation made (a GitOps edit)."""
    with ts.main.transaction(message="edit", author="t") as tx:
        for path, value in files.items():
            if value is None:
                tx.remove(path)
            else:
                tx.set(path, value)


def change(ts: Toolstack, behind: SimDriver, kind: str, name: str, index: int) -> None:
    """Make one change: on main through ``ts``, on the hypervisor through ``behind`` (another driver object
    on the same host, as another process: ``ts``'s driver learns of it only by reading)."""
    vm = ts.vm(name)
    domain = next((info for info in behind.list() if str(info.uuid) == vm.uuid), None)
    if kind in ("kill", "balloon", "undefine") and domain is None:
        return  # removed from the hypervisor already
    if kind == "kill":
        if domain.state.is_active:
            behind.oob_kill(vm.uuid)
    elif kind == "balloon":
        behind.oob_set_memory(vm.uuid, 96)
    elif kind == "undefine":
        # Stopped first: a running domain undefined stays as a transient one, which planning does not read
        # (get_spec refuses it, before and after these caches).
        if domain.state.is_active:
            behind.oob_kill(vm.uuid)
        behind.oob_undefine(vm.uuid)
    elif kind == "foreign":
        behind.oob_create(
            DomainSpec(uuid=f"00000000-0000-4000-8000-{index:012d}", name=f"x{index}", memory=64)
        )
    elif kind == "resize":
        ts.set_resources(name, memory=160 + index)
    elif kind == "desired":
        edit(ts, {layout.desired_path(vm.uuid): b"paused\n"})
    elif kind == "break":
        edit(ts, {layout.config_path(vm.uuid): b'{"name": "%s", "memory": -1}\n' % name.encode()})
    elif kind == "forget":
        edit(ts, {layout.observed_path(HOST, vm.uuid): None})
    elif kind == "delete":
        ts.delete(name)


def answers(ts: Toolstack) -> tuple[dict[str, object], list[tuple[object, ...]]]:
    plan = ts.reconcile(dry_run=True).to_dict()
    listed = [(s.uuid, s.name, s.state, s.memory, s.vcpus, s.drift, s.vm, str(s.error)) for s in listing(ts)]
    return plan, listed


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    running=st.lists(st.booleans(), min_size=1, max_size=4),
    changes=st.lists(st.tuples(CHANGES, st.integers(0, 3)), max_size=6),
)
def test_a_toolstack_that_kept_what_it_read_answers_as_a_fresh_one(
    tmp_path: Path, running: list[bool], changes: list[tuple[str, int]]
):
    where = tempfile.mkdtemp(dir=tmp_path)
    Toolstack.init(f"{where}/state.git", f"sim://{where}/sim?durable=0", host=HOST, author="t").close()
    with open_pool(where) as warm, drivers.open(f"sim://{where}/sim?durable=0") as behind:
        names = [f"vm{i}" for i in range(len(running))]
        for name, run in zip(names, running, strict=True):
            warm.create(name, memory="128M", disks=["/srv/a.img"], nics=["default"], start=run)
        answers(warm)  # read, and keep, the whole pool
        gone: set[str] = set()  # broken or deleted: no more changes to them
        for index, (kind, which) in enumerate(changes):
            name = names[which % len(names)]
            if name in gone:
                continue
            change(warm, behind, kind, name, index)
            if kind in ("break", "delete"):
                gone.add(name)
            # Read again between changes: what is kept must follow each one.
            answers(warm)
        kept = answers(warm)
    with open_pool(where) as fresh:
        assert answers(fresh) == kept


def test_a_vm_whose_files_changed_is_parsed_again_and_an_unchanged_one_is_not(sim_ts):
    sim_ts.create("a", memory="128M")
    sim_ts.create("b", memory="128M")
    kept = ParsedVMs()
    a, b = sim_ts.resolve("a"), sim_ts.resolve("b")
    first = {u: kept.read(VMSource(sim_ts.main.tree, sim_ts.host), u) for u in (a, b)}
    sim_ts.set_resources("a", memory=256)
    source = VMSource(sim_ts.main.tree, sim_ts.host)
    assert kept.read(source, a).spec.memory == 256
    assert kept.read(source, b) is first[b]


def test_a_vm_whose_observed_record_changed_is_parsed_again(sim_ts):
    vm = sim_ts.create("a", memory="128M")
    kept = ParsedVMs()
    before = kept.read(VMSource(sim_ts.main.tree, sim_ts.host), vm.uuid)
    sim_ts.start("a")  # records the running domain under hosts/<host>/domains/
    after = kept.read(VMSource(sim_ts.main.tree, sim_ts.host), vm.uuid)
    assert before.observed is None or before.observed.state != "running"
    assert after.observed is not None and after.observed.state == "running"


def test_deleted_vms_are_dropped_from_what_a_full_read_keeps(sim_ts):
    sim_ts.create("a", memory="128M")
    sim_ts.create("b", memory="128M")
    sim_ts.vms()
    assert len(sim_ts.context.vms) == 2
    sim_ts.delete("b")
    sim_ts.vms()
    assert len(sim_ts.context.vms) == 1


def test_reconcile_on_the_command_line_makes_its_plan_once(tmp_path, monkeypatch):
    where = str(tmp_path)
    with Toolstack.init(f"{where}/state.git", f"sim://{where}/sim?durable=0", host=HOST, author="t") as ts:
        vm = ts.create("a", memory="128M", start=True)
        ts.driver.oob_undefine(vm.uuid)
        ts.driver.oob_kill(vm.uuid)  # gone from the hypervisor: the plan defines and starts it
    made = []
    real = toolstack.ops.make_plan

    def counted(*args, **kwargs):
        plan = real(*args, **kwargs)
        made.append(plan)
        return plan

    monkeypatch.setattr(toolstack.ops, "make_plan", counted)
    argv = ["--repo", f"{where}/state.git", "--driver", f"sim://{where}/sim?durable=0", "--host", HOST]
    result = CliRunner().invoke(cli, [*argv, "reconcile"])
    assert result.exit_code == 0, result.output
    assert [(a.kind, a.name) for a in made[0].actions] == [("define", "a"), ("start", "a")]
    assert len(made) == 1
