"""The VM log index (toolstack/log_index.py): it follows main as operations land, and whatever happened to
main (operations, merges, pulls from and pushes by another clone, gc) it holds what a rebuild from scratch
holds, and what git's own first-parent log of each VM's directory lists."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import Store, scan
from store.scan import RawTree, ScanReader
from store.squash import squash
from toolstack import layout, sync
from toolstack.errors import ToolstackError
from toolstack.log_index import VMLogIndex, index_path, vm_changes
from toolstack.ops import Toolstack
from toolstack.pool import clone_pool

UUIDS = [f"{n:02x}{n:06x}-0000-4000-8000-{n:012x}" for n in (0x10, 0x11, 0x20, 0xAB)]


# -- which VMs a commit changed ------------------------------------------------------------------------------
vm_files = st.dictionaries(
    st.sampled_from(UUIDS),
    st.tuples(
        st.booleans(),
        st.dictionaries(
            st.sampled_from(["config", "desired", "devices/d1"]), st.binary(max_size=3), min_size=1
        ),
    ),
    max_size=4,
)


def stored_vms(store: Store, vms: dict[str, tuple[bool, dict[str, bytes]]], extra: dict[str, bytes]) -> str:
    """A commit whose vms/ holds ``vms`` (uuid: (in its shard?, files)) and ``extra`` files."""
    branch = store.branch("scratch")
    with branch.transaction(message="vms") as tx:
        for path in tx.tree.list():
            tx.remove(path)
        for uuid, (sharded, files) in vms.items():
            where = layout.vm_dir(uuid) if sharded else f"{layout.VMS}/{uuid}"
            for name, value in files.items():
                tx.set(f"{where}/{name}", value)
        for path, value in extra.items():
            tx.set(path, value)
        tx.set(layout.POOL, b"{}")  # never an empty tree (a commit with no change is not made)
    assert branch.head is not None
    return branch.head


def raw_vms(store: Store, commit: str) -> RawTree:
    oid = store.tree_at(commit).id_at(layout.VMS)
    return RawTree(store.objects.get_raw(oid)[1]) if oid else RawTree(b"")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vm_files, vm_files, st.dictionaries(st.sampled_from(["vms/10/config", "vms/note"]), st.binary(max_size=2))
)
def test_the_vms_a_commit_changed_are_those_layout_finds_in_either_layout(old, new, extra):
    """Raw comparison by ids gives layout.changed_vm_uuids's answer: shards that differ, VMs in them, VMs
    of the flat layout, and not a VM that only moved into its shard."""
    store = Store.memory()
    before, after = stored_vms(store, old, extra), stored_vms(store, new, {})
    old_vms, new_vms = store.tree_at(before).subtree(layout.VMS), store.tree_at(after).subtree(layout.VMS)
    expected = layout.changed_vm_uuids(old_vms, new_vms)
    with ScanReader(store.objects) as reader:
        assert vm_changes(reader, raw_vms(store, before), raw_vms(store, after)) == expected


# -- the index follows main ----------------------------------------------------------------------------------
def indexed_head(store: Store) -> str | None:
    """What the index file says it indexed, read by another connection (as another process would)."""
    with sqlite3.connect(index_path(store) or "") as db:
        row = db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
    return row[0] if row else None


def test_an_operation_brings_an_existing_index_up_to_date_with_its_merge(sim_ts):
    sim_ts.create("web", memory="32M")
    sim_ts.log()  # the index exists from here on
    sim_ts.start("web")
    sim_ts.set_resources("web", vcpus=2)
    assert indexed_head(sim_ts.store) == sim_ts.main.head  # no query needed


def test_an_operation_brings_the_index_up_to_date_without_opening_every_pack(sim_ts, monkeypatch):
    """Its merge is in the store's memory: ~6 system calls a pack, per operation, were spent for nothing."""
    sim_ts.create("web", memory="32M")
    sim_ts.log()
    opened: list[str] = []
    monkeypatch.setattr(scan, "_Pack", lambda base: opened.append(base))
    sim_ts.start("web")
    assert indexed_head(sim_ts.store) == sim_ts.main.head
    assert opened == []


def test_an_operation_does_not_build_a_missing_index(sim_ts):
    """Building the index is a query's work (seconds at 100,000 commits), never an operation's."""
    sim_ts.create("web", memory="32M")
    assert not os.path.exists(index_path(sim_ts.store) or "")


def test_an_operation_does_not_wait_for_another_process_writing_the_index(sim_ts):
    sim_ts.create("web", memory="32M")
    sim_ts.log()
    other = sqlite3.connect(index_path(sim_ts.store) or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process rebuilding it
    try:
        sim_ts.start("web")  # returns at once: the index is left behind
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [entry.subject.split(":")[0] for entry in sim_ts.log("web")] == ["vm start web", "vm create web"]


# -- the property: incremental = rebuilt = git -------------------------------------------------------------
def git_log(repo: str, *args: str) -> list[str]:
    done = subprocess.run(
        ["git", "-C", repo, "log", "--first-parent", "--format=%H", "main", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


def check_index(ts: Toolstack, scratch: str) -> None:
    """The toolstack's own index, brought up to date incrementally, equals one built from scratch, and each
    VM's log is git's first-parent log of its directory and of the commits whose VM trailer names it."""
    entries = ts.log()
    rebuilt_index = VMLogIndex(ts.store, path=os.path.join(scratch, "rebuilt.sqlite"))
    try:
        assert entries == rebuilt_index.log()
    finally:
        rebuilt_index.close()
        os.unlink(os.path.join(scratch, "rebuilt.sqlite"))
    repo = ts.store.path or ""
    assert [entry.commit for entry in entries] == git_log(repo)
    for uuid in {vm for entry in entries for vm in entry.vms}:
        # README: its directory's first-parent log, and the commits whose VM trailer names it.
        mine = set(git_log(repo, "--", layout.vm_dir(uuid))) | set(git_log(repo, f"--grep=^VM: {uuid}$"))
        expected = [commit for commit in git_log(repo) if commit in mine]
        assert [entry.commit for entry in ts.log_index.log(uuid)] == expected


steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["create", "set", "start", "delete"]),
            st.sampled_from(["a", "b"]),
            st.integers(0, 3),
        ),
        st.tuples(st.sampled_from(["query", "pull", "push", "gc"]), st.sampled_from(["a", "b"]), st.just(0)),
    ),
    min_size=4,
    max_size=14,
)


class Pool:
    """Host a's repository, and host b's clone of it, each with its toolstack on its own simulator."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.a = Toolstack.init(self.repo("a"), self.driver("a"), host="a", author="a <a@example.org>")
        self.b = self.clone()

    def repo(self, host: str) -> str:
        return os.path.join(self.where, f"{host}.git")

    def driver(self, host: str) -> str:
        return f"sim://{self.where}/{host}.sim"

    def clone(self) -> Toolstack:
        clone_pool(self.repo("a"), self.repo("b"))
        return Toolstack.open(self.repo("b"), self.driver("b"), host="b", author="b <b@example.org>")

    def reclone(self) -> None:
        """b joins again after a's gc (as `toolstack pull --resync` would leave it)."""
        self.b.close()
        subprocess.run(["rm", "-rf", self.repo("b")], check=True)
        self.b = self.clone()

    def close(self) -> None:
        self.a.close()
        self.b.close()


def run_step(pool: Pool, kind: str, host: str, n: int) -> None:
    ts = pool.a if host == "a" else pool.b
    name = f"{host}{n}"
    try:
        if kind == "create":
            ts.create(name, memory="32M")
        elif kind == "set":
            ts.set_resources(name, vcpus=1 + len(ts.log()) % 3)
        elif kind == "start":
            ts.start(name)
        elif kind == "delete":
            ts.delete(name)
        elif kind == "query":
            ts.log()
        elif kind == "pull":  # b merges a's main into its own (b's main the first parent)
            sync.pull(pool.b, reconcile=False)
        elif kind == "push":  # b merges a's main and pushes: a's main moves behind a's toolstack
            sync.pull(pool.b, reconcile=False, push=True)
        elif kind == "gc":
            chain = git_log(pool.repo("a"))
            if len(chain) >= 3:
                # Without git's repack: its pack's bitmap, removed by the store's next roll-up, can vanish
                # under a fetch's dulwich listing (a race of the store's, not the index's).
                squash(pool.a.store, chain[1], repack=False)
                pool.reclone()
    except ToolstackError:
        pass  # a VM not there (yet), already running...: the step changes nothing


def test_main_fast_forwarded_to_another_clones_merge_is_indexed_along_its_new_first_parents(tmp_path):
    """b merges a's main into its own and pushes: a's main fast-forwards to a merge whose first parent is
    b's history, so a's last indexed head is an ancestor of main but not on its first-parent chain. The
    index drops what left the chain and adds what joined it (it used to walk down to the root, indexing
    the whole chain again on top of the old one)."""
    pool = Pool(str(tmp_path))
    try:
        pool.a.log()
        run_step(pool, "create", "b", 0)
        run_step(pool, "push", "b", 0)
        run_step(pool, "create", "a", 1)
        assert pool.a.log()[0].subject.startswith("vm create a1")
        run_step(pool, "create", "b", 2)
        run_step(pool, "push", "b", 0)  # a's main: b's merge of a's, with b's history first
        entries = pool.a.log()
        assert [entry.commit for entry in entries] == git_log(pool.repo("a"))
        assert [entry.subject.split(":")[0].split(" (")[0] for entry in entries] == [
            "Merge origin/main into main",
            "vm create b2",
            "vm create b0",
            "Initialize pool a",
        ]
    finally:
        pool.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_incremental_index_equals_a_rebuild_after_operations_merges_pulls_and_gc(script):
    with tempfile.TemporaryDirectory(prefix="log-index-") as where:
        pool = Pool(where)
        try:
            pool.a.log()
            pool.b.log()  # both indexes exist: operations keep them up to date, as commits land
            for kind, host, n in script:
                run_step(pool, kind, host, n)
            for ts in (pool.a, pool.b):
                check_index(ts, where)
        finally:
            pool.close()


# -- `toolstack log`: read without the toolstack, and the same as with it ----------------------------------
def cli(where: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    from tests.toolstack.conftest import ROOT

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "toolstack.cli",
            "--repo",
            f"{where}/state.git",
            "--author",
            "t <t@e.org>",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT, "TOOLSTACK_DRIVER": f"sim://{where}/sim", **(env or {})},
    )


def commits(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["commit"] for line in result.stdout.splitlines()]


def test_a_log_names_a_vm_as_every_command_does(tmp_path):
    """By name or uuid (read from the index), by uuid prefix or as a deleted VM's uuid (the toolstack's)."""
    where = str(tmp_path)
    assert cli(where, "init").returncode == 0
    created = json.loads(cli(where, "--json", "vm", "create", "web", "--memory", "64M").stdout)
    assert cli(where, "vm", "start", "web").returncode == 0
    uuid = created["uuid"]
    expected = git_log(f"{where}/state.git", "--", layout.vm_dir(uuid))
    assert len(expected) == 2
    for ref in ("web", uuid, uuid[:8]):
        assert commits(cli(where, "--json", "log", ref)) == expected
    assert commits(cli(where, "--json", "log", "-n", "1", "web")) == expected[:1]
    assert commits(cli(where, "--json", "log")) == git_log(f"{where}/state.git")
    assert cli(where, "vm", "delete", "web").returncode == 0
    assert commits(cli(where, "--json", "log", uuid))[1:] == expected
    missing = cli(where, "log", "nobody")
    assert missing.returncode != 0 and "nobody" in missing.stderr


def test_a_log_after_a_killed_operation_recovers_it_first_as_every_command_does(tmp_path):
    where = str(tmp_path)
    assert cli(where, "init").returncode == 0
    assert cli(where, "vm", "create", "a", "--memory", "64M").returncode == 0
    crashed = cli(where, "vm", "start", "a", env={"TOOLSTACK_CRASH_AT": "recorded"})
    assert crashed.returncode == -signal.SIGKILL
    logged = cli(where, "log", "a")
    assert logged.returncode == 0 and "recovered task" in logged.stderr
    assert "vm start a" in logged.stdout


def test_a_log_with_a_driver_uri_no_driver_serves_fails_as_every_command_does(tmp_path):
    where = str(tmp_path)
    assert cli(where, "init").returncode == 0
    refused = cli(where, "--driver", "bogus://", "log")
    assert refused.returncode == 1 and "no driver for URI 'bogus://'" in refused.stderr
