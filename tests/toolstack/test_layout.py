"""The sharded layout (vms/<xx>/<uuid>/, names/<xx>/<name>) and the move of repositories made before it."""

from __future__ import annotations

import subprocess
import uuid as uuidlib

from hypothesis import given, settings
from hypothesis import strategies as st

import drivers
from drivers.models import DomainSpec
from store import Store, Tree
from toolstack import layout
from toolstack.events import events_since
from toolstack.models import Desired, managed, vm_files
from toolstack.ops import SHARDING_MESSAGE, Toolstack
from toolstack.ownership import Ownership
from toolstack.pool import init_pool


def flat(path: str) -> str:
    """Where a path of today's layout was in repositories made before the shards."""
    parts = path.split("/")
    if parts[0] in (layout.VMS, layout.NAMES) and len(parts) >= 3:
        return "/".join([parts[0], *parts[2:]])
    return path


def old_repository(tmp_path, name: str = "web1") -> tuple[str, str, str, str]:
    """A state repository as the toolstack wrote it before the shards: a VM created, then its memory set.

    Returns (repo, driver uri, uuid, the commit that created the VM)."""
    repo, uri = str(tmp_path / "state.git"), f"sim://{tmp_path}/sim"
    spec = managed(DomainSpec(uuid=str(uuidlib.uuid4()), name=name, memory=256))
    uuid = str(spec.uuid)
    store = Store.open(repo, create=True)
    main = store.branch("main")
    with main.transaction(message="Initialize the toolstack state repository", author="old") as tx:
        tx.set("README", b"state\n")
    with main.transaction(message=f"vm create {name} ({uuid})", author="old") as tx:
        for path, value in vm_files(spec, Desired.STOPPED).items():
            tx.set(flat(path), value)
    created = main.head
    assert created is not None
    bigger = spec.model_copy(update={"memory": 512})
    with main.transaction(message=f"vm set {name} ({uuid})", author="old") as tx:
        tx.set(flat(layout.config_path(uuid)), vm_files(bigger, Desired.STOPPED)[layout.config_path(uuid)])
    store.close()
    init_pool(repo)  # what an operator upgrading from a release before pool records runs once
    with drivers.open(uri) as driver:
        driver.define(bigger)
    return repo, uri, uuid, created


def test_paths_are_sharded_by_uuid_and_by_the_hash_of_the_name():
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert layout.vm_dir(uuid) == f"vms/0f/{uuid}"
    assert layout.config_path(uuid) == f"vms/0f/{uuid}/config"
    # The shard the README's shell recipe computes: printf %s NAME | sha1sum | cut -c1-2
    for name in ("web1", "db-01", "x"):
        digest = subprocess.run(
            ["sh", "-c", 'printf %s "$1" | sha1sum | cut -c1-2', "sh", name], capture_output=True, text=True
        ).stdout.strip()
        assert layout.name_path(name) == f"names/{digest}/{name}"


def test_new_vms_are_written_in_shards(sim_ts):
    vm = sim_ts.create("sharded", memory="64M")
    tree = sim_ts.main.tree
    assert tree.list(layout.VMS) == [vm.uuid[:2]]
    assert tree.get(layout.name_path("sharded")) == f"{vm.uuid}\n".encode()
    assert not layout.needs_sharding(tree)


def test_a_repository_made_before_the_shards_is_moved_into_them_by_one_commit(tmp_path):
    repo, uri, uuid, created = old_repository(tmp_path)
    with Toolstack.open(repo, uri, author="admin") as ts:
        assert not layout.needs_sharding(ts.main.tree)
        assert ts.vm("web1").uuid == uuid and ts.vm("web1").spec.memory == 512
        moved = ts.store.graph.info(ts.main.head)
        assert moved.message.splitlines()[0] == SHARDING_MESSAGE
        # The commit only moves files: what it removes is what it adds, at the sharded paths.
        parent = ts.store.tree_at(moved.parents[0])
        changes = parent.diff(ts.main.tree)
        removed = {c.path: c.old for c in changes if c.new is None}
        added = {flat(c.path): c.new for c in changes if c.old is None}
        assert removed == added and len(removed) == 3
        # History from before the move is still the VM's history; the move is no operation on it.
        assert [op.subject for op in ts.log("web1")] == [f"vm set web1 ({uuid})", f"vm create web1 ({uuid})"]
        assert [(e.kind, e.name) for e in events_since(ts.store, created)] == [("config-changed", "web1")]
        # The domain the older release defined carries no pool id: the pool claims it explicitly.
        assert ts.driver.owner(uuid) is Ownership.LEGACY
        ts.reconcile(adopt=True)
        assert ts.driver.owner(uuid) is Ownership.OURS
        # A rollback to a commit from before the move restores the VM in today's layout.
        ts.rollback(created, vm="web1")
        assert ts.vm("web1").spec.memory == 256
        assert ts.driver.get_spec(uuid).memory == 256
        assert not layout.needs_sharding(ts.main.tree)
        ts.start("web1")
        head = ts.main.head
    with Toolstack.open(repo, uri, author="admin") as ts:
        assert ts.main.head == head  # already sharded: opening writes nothing


uuids = st.uuids().map(str)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
leaves = st.sampled_from(["config", "desired", "host", "devices/disk0", "devices/nic0"])


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(uuids, st.dictionaries(leaves, st.binary(max_size=8), min_size=1), max_size=8),
    st.dictionaries(names, uuids, max_size=8),
    st.randoms(use_true_random=False),
)
def test_sharding_moves_every_vm_and_name_unchanged_and_only_once(vms, name_map, rng):
    store = Store.memory()
    old = Tree.empty(store.backend).set("README", b"x")
    for uuid, files in vms.items():
        for leaf, value in files.items():
            old = old.set(f"vms/{uuid}/{leaf}", value)
    for name, holder in name_map.items():
        old = old.set(f"names/{name}", holder.encode())
    new = layout.shard(old)
    assert not layout.needs_sharding(new)
    assert layout.shard(new) == new
    assert new.get("README") == b"x"
    assert layout.vm_uuids(new) == sorted(vms) == layout.vm_uuids(old)
    for uuid in vms:
        assert new.id_at(layout.vm_dir(uuid)) == old.id_at(f"vms/{uuid}")
        assert new.kind(f"vms/{uuid}") is None
    assert sorted(layout.name_records(new)) == sorted((n, layout.name_path(n)) for n in name_map)
    held = {name: new.get(path) for name, path in layout.name_records(new)}
    assert held == {name: holder.encode() for name, holder in name_map.items()}
    # Moving is no change of any VM; changing one VM (in either layout) is a change of that VM only.
    assert layout.changed_vm_uuids(old.subtree("vms"), new.subtree("vms")) == set()
    if vms:
        victim = rng.choice(sorted(vms))
        edited = new.set(layout.config_path(victim), b"edited")
        assert layout.changed_vm_uuids(old.subtree("vms"), edited.subtree("vms")) == {victim}
        assert layout.changed_vm_uuids(new.subtree("vms"), edited.subtree("vms")) == {victim}
        assert layout.changed_vm_uuids(edited.subtree("vms"), new.subtree("vms")) == {victim}


def test_files_written_at_the_flat_path_of_a_sharded_vm_overlay_its_shard():
    store = Store.memory()
    uuid = str(uuidlib.uuid4())
    tree = (
        Tree.empty(store.backend)
        .set(layout.config_path(uuid), b"old config")
        .set(layout.desired_path(uuid), b"running\n")
        .set(f"vms/{uuid}/config", b"new config")
    )
    assert layout.needs_sharding(tree)
    moved = layout.shard(tree)
    assert moved.get(layout.config_path(uuid)) == b"new config"
    assert moved.get(layout.desired_path(uuid)) == b"running\n"
    assert moved.kind(f"vms/{uuid}") is None and not layout.needs_sharding(moved)
