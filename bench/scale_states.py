"""The two states bench/scale_bench.py measures (issue 18), built reproducibly and cached.

* ``pool_of_vms``: a pool (made by ``toolstack init``'s own :func:`toolstack.pool.init_pool`) whose main
  holds N valid VMs in the real layout, with their observed state and one task record each, and a
  simulator directory (``sim:///DIR``) where each VM's domain is defined, tagged as the pool's own, and
  running, paused or shut off as main wants it: ``reconcile`` has nothing to do. Its VMs come in one
  commit on the root (``vm list`` and ``reconcile`` read main's tree, not how it came to be).
* ``history``: a pool with N operations on M VMs, shaped like the toolstack's own: each operation is a
  claim commit on main's head (the task record, running, and the intended files), a "done" commit on it
  (the task succeeded, the observed state) and a merge commit on main ("vm start vm-0042 (<uuid>)"). Main's
  first-parent chain has one commit per operation; the repository holds three commits per operation.

Both are written with the store's own bulk path (trees built by :class:`store.Tree`, objects written by
``backend.write_objects`` as the store's packs), not ``git fast-import``: the repository then has the
store's on-disk format (undeltified, small objects stored), which is what the size and read figures are
about. The simulator's domains are written by its own :class:`drivers.sim.store.DirectoryStore`, in one
transaction. Everything but the pool's id and its root commit's time comes from a seeded RNG.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

from drivers import DomainSpec
from drivers.models import Disk, DomainState, Nic
from drivers.sim.store import DirectoryStore, SimDomain
from store import Store, Tree
from store.objects import COMMIT, ObjectId, encode_commit, object_id
from toolstack import layout
from toolstack.models import Desired, Observed, Task, TaskStatus, managed, vm_files
from toolstack.ownership import tagged
from toolstack.pool import init_pool

HOST = "scale-host"  # the host every command runs as (--host): observed state is recorded under it
AUTHOR = "bench <bench@scale.invalid>"
EPOCH = 1_767_225_600  # 2026-01-01: commits and records get fixed times, so that rebuilds are alike
FORMAT = 1  # part of the cache key: bump it when what the builders write changes
FLUSH_OBJECTS = 20_000  # objects per pack written by the bulk path (the store rolls packs up in tiers)
STATE_FOR = {Desired.RUNNING: DomainState.RUNNING, Desired.PAUSED: DomainState.PAUSED}


class BuildTimeout(RuntimeError):
    """A build ran past its deadline (the issue asks for states built in minutes)."""


def seeded_uuid(rng: random.Random) -> str:
    """A version-4 uuid from the seeded RNG (``uuid4()`` would differ at each build)."""
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


def vm_spec(rng: random.Random, uuid: str, name: str) -> DomainSpec:
    """A VM as ``vm create NAME --memory M --vcpus V --disk PATH --nic default`` makes it."""
    mac = "52:54:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
    return managed(
        DomainSpec(
            uuid=uuid,
            name=name,
            memory=rng.choice((256, 512, 1024, 2048)),
            vcpus=rng.choice((1, 1, 2, 4)),
            disks=(Disk(id="disk0", source=f"/var/lib/images/{name}.qcow2", format="qcow2", target="vda"),),
            nics=(Nic(id="nic0", mac=mac, network="default"),),
        )
    )


def task_record(task_id: str, operation: str, spec: DomainSpec, at: float, done: bool) -> bytes:
    """A ``tasks/<xx>/<id>`` record as :class:`toolstack.tasks.TaskRunner` writes it: running, or done."""
    return Task(
        id=task_id,
        operation=operation,
        vm=str(spec.uuid),
        vm_name=spec.name,
        who=AUTHOR,
        status=TaskStatus.SUCCEEDED if done else TaskStatus.RUNNING,
        started=at,
        finished=at + 0.05 if done else None,
        host=HOST,
        pid=4242,
    ).encode()


def task_id(rng: random.Random, at: float) -> str:
    """An id as :func:`toolstack.tasks.new_task_id` makes them (time, then random hex), seeded."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + "-" + f"{rng.getrandbits(32):08x}"


def observed(state: DomainState, domid: int | None, spec: DomainSpec, at: float) -> bytes:
    """A ``hosts/<host>/domains/<xx>/<uuid>`` record, seen at a fixed time."""
    return Observed(state=state.value, domid=domid, memory=spec.memory, vcpus=spec.vcpus, seen_at=at).encode()


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise BuildTimeout(f"building {what} ran past its deadline")


# -- the pool of N VMs ---------------------------------------------------------------------------------------
def build_pool_of_vms(repo: str, sim: str, vms: int, seed: int, deadline: float) -> None:
    """A pool at ``repo`` whose main holds ``vms`` VMs, and the simulator at ``sim`` running them."""
    rng = random.Random(seed)
    pool = init_pool(repo, "scale", AUTHOR)
    host = DirectoryStore(Path(sim), durable=False)  # fsyncs would only slow the build down
    files: dict[str, bytes] = {}
    try:
        with host.transaction() as tx:
            for n in range(vms):
                if n % 500 == 0:
                    _check_deadline(deadline, f"{vms} VMs")
                spec = vm_spec(rng, seeded_uuid(rng), f"vm-{n:05d}")
                desired = rng.choices((Desired.RUNNING, Desired.STOPPED, Desired.PAUSED), (80, 15, 5))[0]
                onhost = tagged(spec, pool.id)  # what OwnedDriver.define hands the hypervisor
                at = EPOCH + n
                if desired == Desired.STOPPED:
                    domain = SimDomain(uuid=spec.uuid, config=onhost)
                else:
                    state = STATE_FOR[desired]
                    domain = SimDomain(
                        uuid=spec.uuid, config=onhost, live=onhost, state=state, domid=tx.next_domid()
                    )
                tx.put(domain)
                files.update(vm_files(spec, desired))
                files[layout.observed_path(HOST, str(spec.uuid))] = observed(
                    domain.state, domain.domid, spec, at
                )
                tid = task_id(rng, at)
                files[layout.task_path(tid)] = task_record(tid, "create", spec, at, done=True)
    finally:
        host.close()
    # One commit with every VM: the history of how they came is not what vm list and reconcile read.
    with Store.open(repo, durable=False) as store:
        main = store.branch(layout.MAIN)
        with main.transaction(message=f"bench: {vms} VMs created and started", author=AUTHOR) as tx:
            tree = tx.tree
            for path, value in files.items():
                tree = tree.set(path, value)
            tx.tree = tree


# -- the history of N operations -----------------------------------------------------------------------------
class _Writer:
    """Commits written through the store's bulk path: trees and commits, batched into packs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[tuple[ObjectId, int, bytes]] = []

    def commit(self, tree: Tree, parents: list[str], message: str, at: int) -> str:
        self.pending.extend(tree.new_objects())
        tree.mark_stored()
        raw = encode_commit(tree.oid, parents, AUTHOR, AUTHOR, message, timestamp=at)
        oid = object_id(COMMIT, raw)
        self.pending.append((oid, COMMIT, raw))
        if len(self.pending) >= FLUSH_OBJECTS:
            self.flush()
        return oid.decode()

    def flush(self) -> None:
        if self.pending:
            self.store.backend.write_objects(self.pending)
            self.pending = []


def _operation(rng: random.Random, spec: DomainSpec, desired: Desired) -> tuple[str, DomainSpec, Desired]:
    """A random operation on an existing VM: (verb, the spec after it, the desired state after it)."""
    verb = rng.choices(("toggle", "set", "reboot", "device"), (40, 30, 20, 10))[0]
    if verb == "toggle":
        return (
            ("shutdown", spec, Desired.STOPPED)
            if desired != Desired.STOPPED
            else ("start", spec, Desired.RUNNING)
        )
    if verb == "set":
        return "set", spec.evolve(memory=rng.choice((256, 512, 768, 1024, 1536, 2048))), desired
    if verb == "reboot" and desired == Desired.RUNNING:
        return "reboot", spec, desired  # changes no file of the VM: not in its log, nor in git log -- PATH
    if any(d.id == "disk1" for d in spec.disks):
        return "detach", spec.without_device("disk1"), desired
    disk = Disk(id="disk1", source=f"/var/lib/images/{spec.name}-data.raw", target="vdb")
    return "attach", spec.with_device(disk), desired


def build_history(repo: str, operations: int, vms: int, seed: int, deadline: float) -> None:
    """A pool at ``repo`` with ``operations`` task-style operations on ``vms`` VMs: creates (with a start)
    among the first operations, then starts, shutdowns, reboots, ``vm set`` and disk attach/detach."""
    rng = random.Random(seed)
    init_pool(repo, "scale-history", AUTHOR)
    with Store.open(repo, durable=False) as store:
        writer = _Writer(store)
        head = store.branch(layout.MAIN).head
        assert head is not None
        tree = store.tree_at(head)
        specs: list[DomainSpec] = []
        desired: list[Desired] = []
        domids: dict[int, int] = {}
        for i in range(operations):
            if i % 1000 == 0:
                _check_deadline(deadline, f"{operations} operations")
            at = EPOCH + 30 * i
            # VMs are created early on, among the first operations, and all of them however few there are.
            if len(specs) < vms and (not specs or rng.random() < 0.5 or operations - i <= vms - len(specs)):
                n = len(specs)
                specs.append(vm_spec(rng, seeded_uuid(rng), f"vm-{n:04d}"))
                desired.append(Desired.RUNNING)
                verb, spec, want = "create", specs[n], Desired.RUNNING
                intended: dict[str, bytes | None] = dict(vm_files(spec, want))
            else:
                n = rng.randrange(len(specs))
                verb, spec, want = _operation(rng, specs[n], desired[n])
                intended = {layout.desired_path(str(spec.uuid)): f"{want.value}\n".encode()}
                if spec is not specs[n]:  # vm set, disk attach/detach: the files that differ
                    old, new = vm_files(specs[n], want), vm_files(spec, want)
                    intended = {p: v for p, v in new.items() if old.get(p) != v}
                    intended.update({p: None for p in old.keys() - new.keys()})
            specs[n], desired[n] = spec, want
            uuid, name = str(spec.uuid), spec.name
            tid = task_id(rng, at)
            # 1. the claim: main's tree, the task (running) and the intended files
            claim = layout.with_task_record(tree, tid, task_record(tid, verb, spec, at, done=False))
            for path, value in intended.items():
                claim = claim.remove(path) if value is None else claim.set(path, value)
            claim_id = writer.commit(claim, [head], f"task {tid}: vm {verb} {name} ({uuid})", at)
            # 2. its outcome: the task succeeded, the state observed
            if want == Desired.STOPPED:
                domids.pop(n, None)
                state, domid = DomainState.SHUTOFF, None
            else:
                state, domid = STATE_FOR[want], domids.setdefault(n, 1 + i)  # a new domid at each boot
            done = layout.with_task_record(claim, tid, task_record(tid, verb, spec, at, done=True))
            done = layout.with_observed(done, HOST, uuid, observed(state, domid, spec, at))
            done_id = writer.commit(done, [claim_id], f"task {tid}: done", at)
            # 3. the merge into main, named after the operation
            head = writer.commit(done, [head, done_id], f"vm {verb} {name} ({uuid})", at)
            tree = done
        writer.flush()
        store.set_branch(layout.MAIN, head)


# -- the cache -----------------------------------------------------------------------------------------------
def cached(
    cache: str, key: str, build: Callable[[str], None], log: Callable[[str], None]
) -> tuple[str, float]:
    """The directory of a built state, building it first when the cache lacks it.

    A state counts as built once its ``built.json`` is there (written last), so a build cut short is
    started again from scratch.

    Returns:
        The directory and how long the build took (when it was built, possibly by an earlier run).
    """
    where = os.path.join(cache, key)
    marker = os.path.join(where, "built.json")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            took = float(json.load(f)["seconds"])
        log(f"{key}: cached in {where} (built in {took:.1f} s)")
        return where, took
    shutil.rmtree(where, ignore_errors=True)
    os.makedirs(where)
    log(f"{key}: building in {where} ...")
    started = time.perf_counter()
    build(where)
    took = time.perf_counter() - started
    with open(marker + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"seconds": took, "built_at": time.time(), "format": FORMAT}, f)
    os.replace(marker + ".tmp", marker)
    log(f"{key}: built in {took:.1f} s")
    return where, took


def invalidate(where: str) -> None:
    """Make the next run build the state again (a measured command changed it)."""
    with_marker = os.path.join(where, "built.json")
    if os.path.exists(with_marker):
        os.unlink(with_marker)
