"""Many processes and threads lose no update; acknowledged commits survive SIGKILL; stale locks recover."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from store import JSON, Store

# Durability is about fsync, processes killed mid-write and packs on disk.
pytestmark = pytest.mark.native


WORKER = os.path.join(os.path.dirname(__file__), "_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _env():
    return {**os.environ, "PYTHONPATH": ROOT}


def test_four_processes_of_threads_incrementing_counters_give_the_exact_total(tmp_path, run_git):
    repo = str(tmp_path / "repo")
    Store.open(repo).close()
    processes, threads, increments = 4, 3, 15
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "counters", repo, str(w), str(threads), str(increments)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(processes)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err  # writers on disjoint keys never saw a Conflict
    with Store.open(repo) as s:
        main = s.branch()
        total = sum(main.get(f"count/{k}", codec=JSON) or 0 for k in range(3))
        assert total == processes * threads * increments
        own = sum(1 for _ in main.tree.paths("own"))
        assert own == processes * threads * increments
    run_git(repo, "fsck", "--full")


@pytest.mark.slow
def test_four_processes_of_eight_threads_incrementing_one_plain_value_lose_no_update(tmp_path, run_git):
    # "n" has the default merge rule, under which two x+1 from one snapshot used to both succeed (3,200
    # acknowledged increments once left 507). Now each is acknowledged or raises, and the total is exact.
    repo = str(tmp_path / "repo")
    with Store.open(repo) as s, s.branch().transaction(message="seed") as tx:
        tx.set("n", 0, codec=JSON)
    processes, threads, increments = 4, 8, 25
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "increments", repo, str(w), str(threads), str(increments)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(processes)
    ]
    acked = conflicts = 0
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        figures = json.loads(out)
        acked += figures["acked"]
        conflicts += figures["conflicts"]
    with Store.open(repo) as s:
        total = s.branch().get("n", codec=JSON)
    print(f"{processes}x{threads}x{increments}: acked {acked}, conflicts {conflicts}, total {total}")
    assert acked + conflicts == processes * threads * increments
    assert total == acked  # no lost update
    assert acked > 0
    run_git(repo, "fsck", "--full")


def test_acknowledged_commits_survive_sigkill_at_random_moments(tmp_path, run_git):
    repo = str(tmp_path / "repo")
    Store.open(repo).close()
    rng = random.Random(1234)
    acknowledged: list[str] = []
    for _round in range(50):
        proc = subprocess.Popen(
            [sys.executable, WORKER, "loop", repo], env=_env(), stdout=subprocess.PIPE, text=True
        )
        lines: list[str] = []
        first = threading.Event()

        def read(
            p: subprocess.Popen[str] = proc, out: list[str] = lines, going: threading.Event = first
        ) -> None:
            for line in p.stdout or ():
                out.append(line)
                going.set()

        reader = threading.Thread(target=read)
        reader.start()
        # Kill it while it commits: once it acknowledged its first commit (start-up takes ~0.2 s, far more on
        # a loaded machine, where a fixed delay killed it before any commit), at a random moment after that.
        assert first.wait(timeout=60), "the worker acknowledged no commit within 60 s"
        time.sleep(rng.random() * 0.15)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        acknowledged.extend(line.strip() for line in lines if len(line.strip()) == 40)
        with Store.open(repo) as s:
            head = s.branch().head
            assert head is not None
            for commit_id in acknowledged[-5:]:
                assert s.graph.is_ancestor(commit_id, head), f"acknowledged {commit_id} lost"
    assert len(acknowledged) >= 50  # at least one per round, each killed while committing
    with Store.open(repo) as s:
        head = s.branch().head
        reachable = set(s.graph.walk([head]))
        lost = [c for c in acknowledged if c not in reachable]
        assert lost == []
        with s.branch().transaction(message="after the storm") as tx:
            tx.set("ok", b"1")
    run_git(repo, "fsck", "--full")
    leftovers = [n for n in os.listdir(os.path.join(repo, "objects", "pack")) if n.startswith("tmp_")]
    assert leftovers == []


def test_a_stale_ref_lock_left_by_a_dead_writer_is_recovered(disk_store):
    main = disk_store.branch()
    with main.transaction(message="seed") as tx:
        tx.set("a", b"0")
    lock = os.path.join(disk_store.gitdir, "refs", "heads", "main.lock")
    with open(lock, "w") as f:
        f.write("garbage from a killed process\n")
    old = time.time() - 60
    os.utime(lock, (old, old))
    with main.transaction(message="after stale lock") as tx:
        tx.set("a", b"1")
    assert main.get("a") == b"1"
    assert not os.path.exists(lock)


def test_a_fresh_lock_is_waited_for_before_it_is_judged_stale(disk_store):
    main = disk_store.branch()
    with main.transaction(message="seed") as tx:
        tx.set("a", b"0")
    lock = os.path.join(disk_store.gitdir, "refs", "heads", "main.lock")
    with open(lock, "w") as f:
        f.write("held by a (pretend) git process\n")
    started = time.monotonic()
    with main.transaction(message="waits") as tx:
        tx.set("a", b"1")
    assert time.monotonic() - started >= 1.5
    assert main.get("a") == b"1"


def test_a_lease_held_by_a_killed_process_is_released(disk_store, tmp_path):
    main = disk_store.branch()
    with main.transaction(message="seed") as tx:
        tx.set("a", b"0")
    lease = disk_store.backend.leases.get(main.ref).path
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({lease!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    threading.Timer(0.3, lambda: holder.send_signal(signal.SIGKILL)).start()
    with main.transaction(message="after the holder died") as tx:
        tx.set("a", b"1")
    holder.wait()
    assert main.get("a") == b"1"


@pytest.mark.parametrize("objects_fsync", [True])
def test_objects_are_fsynced_before_the_ref(disk_store, mocker, objects_fsync):
    calls: list[str] = []
    real_fsync = os.fsync
    real_replace = os.replace

    def fsync(fd):
        calls.append("fsync:" + os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 2)[-1])
        return real_fsync(fd)

    def replace(src, dst):
        calls.append("rename:" + os.path.basename(str(dst)))
        return real_replace(src, dst)

    mocker.patch("os.fsync", side_effect=fsync)
    mocker.patch("os.replace", side_effect=replace)
    with disk_store.branch().transaction(message="durable") as tx:
        tx.set("a", b"1")
    ref_rename = calls.index("rename:main")
    pack_renames = [i for i, c in enumerate(calls) if c.startswith("rename:pack-")]
    assert pack_renames and max(pack_renames) < ref_rename
    # The pack, its index, the pack directory, the ref and its directory are all fsynced.
    assert any(c.startswith("fsync:tmp_pack_") for c in calls[: min(pack_renames)])
    assert "fsync:pack" in calls[:ref_rename]
    assert calls[ref_rename + 1] == "fsync:heads"


def test_objects_written_by_many_threads_at_once_are_group_committed_and_all_read_back(disk_store, run_git):
    from store.objects import BLOB, object_id

    backend = disk_store.backend
    pack_dir = os.path.join(disk_store.gitdir, "objects", "pack")
    before = {p for p in os.listdir(pack_dir) if p.endswith(".pack")}
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(5):
            value = b"writer %d object %d" % (n, i)
            backend.write_objects([(object_id(BLOB, value), BLOB, value)])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = {p for p in os.listdir(pack_dir) if p.endswith(".pack")} - before
    assert 1 <= len(written) <= 40  # a pack per group of concurrent batches: never more than one per batch
    for n in range(8):
        for i in range(5):
            value = b"writer %d object %d" % (n, i)
            assert backend.get_raw(object_id(BLOB, value)) == (BLOB, value)
    run_git(disk_store.gitdir, "fsck", "--full")


def test_a_failed_shared_pack_fails_every_batch_in_it_and_the_next_write_succeeds(disk_store, monkeypatch):
    from store.disk_objects import DiskObjects
    from store.objects import BLOB, object_id

    backend = disk_store.backend

    def broken(self, objects):
        raise OSError("disk full")

    monkeypatch.setattr(DiskObjects, "_write_pack", broken)
    with pytest.raises(OSError, match="disk full"):
        backend.write_objects([(object_id(BLOB, b"lost"), BLOB, b"lost")])
    monkeypatch.undo()
    backend.write_objects([(object_id(BLOB, b"kept"), BLOB, b"kept")])
    assert backend.get_raw(object_id(BLOB, b"kept")) == (BLOB, b"kept")


def test_a_small_pack_is_read_from_the_bytes_written_and_a_big_one_from_its_files(disk_store, monkeypatch):
    import mmap

    import store.disk_objects
    from store.objects import BLOB, object_id
    from store.packs import PackView

    backend = disk_store.backend
    monkeypatch.setattr(store.disk_objects, "KEPT_PACK_BYTES", 4096)
    small = b"a small object"
    big = os.urandom(8192)  # incompressible: its deflate stream is longer than the object itself
    for value in (small, big):
        backend.write_objects([(object_id(BLOB, value), BLOB, value)])
    newest, previous = backend.objects._packs._packs[:2]
    assert isinstance(newest._pack, mmap.mmap)  # the big pack: mapped from its files
    assert isinstance(previous._pack, bytes)  # the small one: the bytes written, no file opened again
    for view, value in ((previous, small), (newest, big)):
        offset = view.offset(bytes.fromhex(object_id(BLOB, value).decode()))
        assert offset is not None and view.read(offset) == (BLOB, value)
        # The same objects through the files, as another process sees them.
        mapped = PackView(os.path.join(backend.pack_dir, view.name))
        assert mapped.read(mapped.offset(bytes.fromhex(object_id(BLOB, value).decode()))) == (BLOB, value)
        mapped.close()


def test_reads_of_another_writers_objects_race_roll_ups_without_error(tmp_path, monkeypatch, caplog):
    """Two writers on one repository (as two processes are): one reads the other's objects, which only
    dulwich's reader finds at first, while its own roll-ups replace packs. dulwich refreshes its pack cache
    on such a miss; a refresh at the same moment as a roll-up's used to fail the roll-up."""
    import logging

    import store.disk_objects
    from store.disk import DiskBackend
    from store.objects import BLOB, object_id

    monkeypatch.setattr(store.disk_objects, "ROLL_UP_FANOUT", 2)
    monkeypatch.setattr(store.disk_objects, "MAINTENANCE_EVERY", 1)
    Store.open(str(tmp_path / "repo.git"), create=True).close()
    gitdir = str(tmp_path / "repo.git")
    reader, other = DiskBackend(gitdir), DiskBackend(gitdir)
    theirs: list[bytes] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def write_theirs() -> None:
        for n in range(300):
            value = b"theirs %d" % n
            other.write_objects([(object_id(BLOB, value), BLOB, value)])
            theirs.append(value)
        stop.set()

    def write_ours() -> None:
        n = 0
        while not stop.is_set():
            value = b"ours %d" % n
            reader.write_objects([(object_id(BLOB, value), BLOB, value)])  # and roll up, every time
            n += 1

    def read_theirs() -> None:
        rng = random.Random()
        while not stop.is_set():
            if theirs:
                value = rng.choice(theirs)
                try:
                    assert reader.get_raw(object_id(BLOB, value)) == (BLOB, value)
                except BaseException as err:
                    failures.append(err)

    with caplog.at_level(logging.ERROR, logger="store.disk_objects"):
        threads = [threading.Thread(target=f) for f in (write_theirs, write_ours, read_theirs, read_theirs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        reader.wait_for_maintenance()
    reader.close()
    other.close()
    assert failures == []
    assert [r.getMessage() for r in caplog.records if "maintenance failed" in r.getMessage()] == []
