"""Roll-ups compress: versions of a tree become deltas of one another, and read back exactly.

Packs of ``DELTA_TIER`` or more objects are written by git's delta search (store/rollup.py); the hot-path
reader (store/packs.py) resolves their offset delta chains itself. Every object must read back identical
through the store, dulwich and the git CLI, whoever wrote it and whenever it was rolled up.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from dulwich.repo import Repo
from hypothesis import given, settings
from hypothesis import strategies as st

import store.disk_objects
import store.packs
from store import Store
from store.objects import BLOB, object_id
from store.packs import PackSet
from store.rollup import DELTA_TIER, pack_has_deltas

# Roll-ups are the disk backend's (packs, threads, git pack-objects): nothing Python in a browser has.
pytestmark = pytest.mark.native

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
WORKER = os.path.join(os.path.dirname(__file__), "_worker.py")


def packs_in(gitdir: str) -> list[str]:
    pack_dir = os.path.join(gitdir, "objects", "pack")
    return sorted(name[: -len(".pack")] for name in os.listdir(pack_dir) if name.endswith(".pack"))


def shard_tree_history(main, commits: int, shards: int = 8, seed: int = 1) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Commits that each add one record to one of a few growing directories, as task records do; returns
    every path written with its value."""
    rng = random.Random(seed)
    written: dict[str, bytes] = {}
    for n in range(commits):
        path = f"tasks/{rng.randrange(shards):02x}/task-{n:05d}"
        value = b'{"operation": "start", "n": %d, "status": "done"}\n' % n
        with main.transaction(message=f"op {n}") as tx:
            tx.set(path, value)
            tx.set("vms/state", b"running %d" % n)
        written[path] = value
    return written


def every_object(gitdir: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", gitdir, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def read_by_git(gitdir: str, oids: list[str]) -> dict[str, bytes]:
    """Each object's raw bytes as `git cat-file --batch` prints them."""
    out = subprocess.run(
        ["git", "-C", gitdir, "cat-file", "--batch"],
        input="\n".join(oids).encode() + b"\n",
        capture_output=True,
        check=True,
    ).stdout
    found: dict[str, bytes] = {}
    position = 0
    while position < len(out):
        header_end = out.index(b"\n", position)
        oid, _, size = out[position:header_end].decode().split()
        start = header_end + 1
        found[oid] = out[start : start + int(size)]
        position = start + int(size) + 1
    return found


def test_a_roll_up_into_the_delta_tier_stores_deltas_that_read_back_exactly_everywhere(tmp_path, run_git):
    with Store.open(tmp_path / "repo") as s:
        main = s.branch()
        written = shard_tree_history(main, 120)
        assert s.backend.wait_for_maintenance()
        objects = s.backend.objects
        assert objects._roll_up([name for name, _ in objects._list_packs()])  # all of them: > 256 objects
        (pack,) = packs_in(s.gitdir)
        assert pack_has_deltas(os.path.join(objects.pack_dir, pack))
        run_git(s.gitdir, "fsck", "--full")
        oids = every_object(s.gitdir)
        assert len(oids) >= 16**DELTA_TIER
        by_git = read_by_git(s.gitdir, oids)
        dulwich = Repo(s.gitdir)
        fresh = PackSet(objects.pack_dir)  # another process's reader: nothing cached, files mapped
        fresh.rescan()
        try:
            for oid in oids:
                raw = s.objects.get_raw(oid.encode())[1]
                assert raw == by_git[oid] == dulwich.object_store[oid.encode()].as_raw_string()
                # The hot path resolves the chains itself: dulwich is not asked.
                assert fresh.get_raw(bytes.fromhex(oid)) == s.objects.get_raw(oid.encode())
        finally:
            fresh.close()
            dulwich.close()
        for path, value in written.items():
            assert main.get(path) == value
        assert [h.value for h in main.history("vms/state")][:3] == [
            b"running 119",
            b"running 118",
            b"running 117",
        ]


def test_compact_turns_whole_object_packs_into_one_smaller_pack_and_loses_nothing(tmp_path, run_git):
    with Store.open(tmp_path / "repo") as s:
        s.backend.objects.deltas = False  # as roll-ups were before they made deltas
        main = s.branch()
        written = shard_tree_history(main, 150)
        assert s.backend.wait_for_maintenance()
        before = packs_in(s.gitdir)
        assert not any(pack_has_deltas(os.path.join(s.backend.pack_dir, name)) for name in before)
        size_before = sum(os.path.getsize(os.path.join(s.backend.pack_dir, n + ".pack")) for n in before)
        by_git_before = read_by_git(s.gitdir, every_object(s.gitdir))
        s.backend.objects.deltas = True
        assert s.compact()
        (after,) = packs_in(s.gitdir)
        assert os.path.getsize(os.path.join(s.backend.pack_dir, after + ".pack")) < size_before / 2
        run_git(s.gitdir, "fsck", "--full")
        assert read_by_git(s.gitdir, list(by_git_before)) == by_git_before
        for path, value in written.items():
            assert main.get(path) == value
    with Store.open(tmp_path / "repo") as reopened:
        for oid, raw in by_git_before.items():
            assert reopened.objects.get_raw(oid.encode())[1] == raw


def test_a_memory_store_has_nothing_to_compact():
    with Store.memory() as s:
        assert s.compact() is False


def test_the_hot_path_leaves_chains_deeper_than_its_bound_to_dulwich(tmp_path, monkeypatch):
    with Store.open(tmp_path / "repo") as s:
        main = s.branch()
        shard_tree_history(main, 120)
        assert s.backend.wait_for_maintenance()
        assert s.compact()
        oids = every_object(s.gitdir)
        by_git = read_by_git(s.gitdir, oids)
    monkeypatch.setattr(store.packs, "MAX_CHAIN", 1)
    with Store.open(tmp_path / "repo") as s:
        packs = s.backend.objects._packs
        left = [oid for oid in oids if packs.get_raw(bytes.fromhex(oid)) is None]
        assert left  # some chains are longer than one link: the hot path declined them...
        for oid in oids:
            assert s.objects.get_raw(oid.encode())[1] == by_git[oid]  # ...and dulwich read them


@settings(max_examples=10, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, 30), st.binary(max_size=40)), min_size=20, max_size=40),
    cache=st.sampled_from([1, 3, 512]),
)
def test_chains_read_back_exactly_in_any_order_with_any_cache_size(tmp_path_factory, edits, cache):
    """A file edited line by line (each version a delta of another), read back newest first, oldest
    first and at random, with a delta cache of one entry up to the default."""
    lines = [b"line %d of a long file\n" % n for n in range(31)]
    versions: list[bytes] = []
    with Store.open(tmp_path_factory.mktemp("chains")) as s:
        main = s.branch()
        for line, text in edits:
            lines[line] = text + b"\n"
            versions.append(b"".join(lines))
            with main.transaction(message="edit") as tx:
                tx.set("file", versions[-1])
        assert s.compact()
        pack_dir = s.backend.pack_dir
    oids = [object_id(BLOB, v) for v in versions]
    view = PackSet(pack_dir)
    view._cache = store.packs.DeltaCache(objects=cache)
    view.rescan()
    try:
        order = list(range(len(versions)))
        for sequence in (order[::-1], order, random.Random(len(edits)).sample(order, len(order))):
            for n in sequence:
                assert view.get_raw(bytes.fromhex(oids[n].decode())) == (BLOB, versions[n])
    finally:
        view.close()


def test_writers_lose_nothing_while_packs_are_rolled_up_with_deltas_and_compacted(
    tmp_path, monkeypatch, run_git
):
    """Threads commit while roll-ups (every write) and full compactions run beside them."""
    monkeypatch.setattr(store.disk_objects, "MAINTENANCE_EVERY", 1)
    with Store.open(tmp_path / "repo") as s:
        main = s.branch()
        acknowledged: dict[str, bytes] = {}
        failures: list[BaseException] = []
        done = threading.Event()

        def write(worker: int) -> None:
            try:
                for n in range(60):
                    path, value = f"w{worker}/{n % 7}/k{n}", b"value %d %d" % (worker, n)
                    with main.transaction(message=f"w{worker} {n}") as tx:
                        tx.set(path, value)
                    acknowledged[path] = value
            except BaseException as err:
                failures.append(err)

        def compact() -> None:
            while not done.is_set():
                s.compact()

        compactor = threading.Thread(target=compact)
        compactor.start()
        writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(300)
        done.set()
        compactor.join(300)
        assert s.backend.wait_for_maintenance()
        assert failures == []
        for path, value in acknowledged.items():
            assert main.get(path) == value
        run_git(s.gitdir, "fsck", "--full")
    with Store.open(tmp_path / "repo") as reopened:
        for path, value in acknowledged.items():
            assert reopened.branch().get(path) == value


@pytest.mark.parametrize("seed", [1, 2])
def test_a_compaction_killed_at_any_moment_leaves_a_readable_repository(tmp_path, run_git, seed):
    repo = str(tmp_path / "repo")
    with Store.open(repo) as s:
        s.backend.objects.deltas = False  # whole-object packs: compaction has real work to do
        written = shard_tree_history(s.branch(), 200, seed=seed)
        assert s.backend.wait_for_maintenance()
        gitdir = s.gitdir
    expected = read_by_git(gitdir, every_object(gitdir))
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": ROOT}
    interrupted = 0  # kills in the middle of a roll-up (the others came before the first began)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, WORKER, "compact", repo], env=env)
        time.sleep(0.2 + rng.random() * 0.6)  # imports, then somewhere in git's run or the installation
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        scratch = os.path.join(gitdir, "gitstore", "roll-up")
        interrupted += os.path.exists(scratch) and os.listdir(scratch) != []
        run_git(gitdir, "fsck", "--full")
        assert read_by_git(gitdir, list(expected)) == expected
        with Store.open(repo) as s:
            for path, value in written.items():
                assert s.branch().get(path) == value
            assert not os.path.exists(scratch) or os.listdir(scratch) == []  # the dead one's is removed
    assert interrupted > 0
    with Store.open(repo) as s:
        assert s.compact()
        (_pack,) = packs_in(gitdir)
    assert read_by_git(gitdir, list(expected)) == expected
    assert not [n for n in os.listdir(os.path.join(gitdir, "objects", "pack")) if n.startswith("tmp_")]


def test_a_roll_up_interrupted_between_its_new_pack_and_the_removal_of_the_old_ones_is_finished_later(
    tmp_path, monkeypatch, run_git
):
    with Store.open(tmp_path / "repo") as s:
        s.backend.objects.deltas = False
        written = shard_tree_history(s.branch(), 120)
        assert s.backend.wait_for_maintenance()
        before = packs_in(s.gitdir)

        def crash(*args: object) -> None:
            raise OSError("killed before the old packs were removed")

        monkeypatch.setattr(s.backend.objects, "_remove_packs", crash)
        s.backend.objects.deltas = True
        with pytest.raises(OSError):
            s.compact()
        assert len(packs_in(s.gitdir)) == len(before) + 1  # the same objects twice
        run_git(s.gitdir, "fsck", "--full")
    with Store.open(tmp_path / "repo") as s:
        for path, value in written.items():
            assert s.branch().get(path) == value
        assert s.compact()
        assert len(packs_in(s.gitdir)) == 1
        for path, value in written.items():
            assert s.branch().get(path) == value
        run_git(s.gitdir, "fsck", "--full")


def test_writers_faster_than_git_never_pile_up_packs(tmp_path, monkeypatch, run_git):
    """While git's roll-up is busy (made slow here), the tiers below go on being concatenated."""
    import store.rollup

    slow = store.rollup.git_pack_objects

    def slow_git(*args: object, **kwargs: object) -> str:
        time.sleep(1.5)
        return slow(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.disk_objects, "git_pack_objects", slow_git)
    with Store.open(tmp_path / "repo", durable=False) as s:
        main = s.branch()
        most = 0
        for n in range(600):
            with main.transaction(message=f"op {n}") as tx:
                tx.set(f"k/{n % 40}/v", b"value %d" % n)
            most = max(most, len(packs_in(s.gitdir)))
        assert s.backend.wait_for_maintenance(120)
        assert most < 100  # what concatenation alone peaks at (35 to 55 here), not a pack per commit
        assert any(pack_has_deltas(os.path.join(s.backend.pack_dir, name)) for name in packs_in(s.gitdir))
        for n in range(560, 600):
            assert main.get(f"k/{n % 40}/v") == b"value %d" % n
        run_git(s.gitdir, "fsck", "--full")
