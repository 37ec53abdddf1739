"""Benchmark of the versioned store against baselines measured in the same run.

Workload: a repository of 10,000 VM-like records, ``vms/<hex>/<hex>/<uuid>/config`` plus two device files
each, and one-leaf transactions. The two one-hex-digit shard levels keep every tree small (16, 16 and ~40
entries), so a commit rewrites ~4 KB of trees; a flat ``vms/`` of 10,000 entries would rewrite ~600 KB.
Every figure is printed beside its baseline: the git CLI's plumbing (hash-object, update-index, write-tree, commit-tree, update-ref),
pygit2 when it is installed, and the disk's own fsync rate. This is a benchmark, not a test: the machine
is noisy, so compare ratios within one run. Cold figures beside the warm ones: one durable commit and one
key's history each in a fresh process (importing the store and opening the repository first, as a command
does), with their peak RSS (bench/fresh.py); and this process's own peak RSS.

The rates run for ``--seconds``; every counted loop (the writer threads, the reads, the history build) stops at
``--deadline`` seconds, says so on its line, and its figures come from the iterations it completed.

Run: ``.venv/bin/python bench/store_bench.py [--records 10000] [--seconds 3] [--deadline 300]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fresh import PYTHON, Runs, cold_warm, fresh, peak_rss_mb, timed_runs  # bench/fresh.py

from store import Conflict, Store

# What a command does in a fresh process: import the store, open the repository, then one call.
ONE_COMMIT = """
import sys
from store import Store
with Store.open(sys.argv[1]) as store, store.branch("main").transaction(message="cold") as tx:
    tx.set(sys.argv[2], sys.argv[3].encode())
"""
ONE_HISTORY = """
import sys
from store import Store
with Store.open(sys.argv[1]) as store:
    assert store.branch("history").history(sys.argv[2])
"""

CONFIG = b'{\n  "memory": %d,\n  "name": "vm-%d",\n  "vcpus": 2\n}\n'


def record_path(vm: str, leaf: str = "config") -> str:
    return f"vms/{vm[0]}/{vm[1]}/{vm}/{leaf}"


def fsync_rate(directory: str, seconds: float = 1.0) -> float:
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    count = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            os.write(fd, b"x" * 512)
            os.fsync(fd)
            count += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return count / (time.perf_counter() - start)


def seed(store: Store, records: int) -> list[str]:
    rng = random.Random(42)
    vms = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(records)]
    with store.branch().transaction(message=f"seed {records} records", author="bench") as tx:
        for n, vm in enumerate(vms):
            tx.set(record_path(vm), CONFIG % (512, n))
            tx.set(record_path(vm, "devices/disk0"), b'{"path": "/var/lib/images/%d.qcow2"}\n' % n)
            tx.set(
                record_path(vm, "devices/nic0"),
                b'{"mac": "00:16:3e:00:%02x:%02x"}\n' % (n >> 8 & 255, n & 255),
            )
    return vms


def timed_loop(seconds: float, step) -> float:  # type: ignore[no-untyped-def]
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(count)
        count += 1
    return count / (time.perf_counter() - start)


def bench_store_single_writer(store: Store, vms: list[str], seconds: float) -> float:
    branch = store.branch()
    rng = random.Random(1)

    def step(i: int) -> None:
        vm = rng.choice(vms)
        with branch.transaction(message=f"vm set {vm}", author="bench") as tx:
            tx.set(record_path(vm), CONFIG % (1024 + i, i))

    return timed_loop(seconds, step)


def git(repo: str, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
    return (
        subprocess.run(["git", "-C", repo, *args], input=stdin, capture_output=True, check=True, env=env)
        .stdout.decode()
        .strip()
    )


def bench_git_plumbing(gitdir: str, vms: list[str], seconds: float) -> float:
    index = os.path.join(gitdir, "bench-index")
    env = {
        **os.environ,
        "GIT_INDEX_FILE": index,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    git(gitdir, "read-tree", "main", env=env)
    head = git(gitdir, "rev-parse", "main")
    git(gitdir, "update-ref", "refs/heads/bench-git", head)
    rng = random.Random(2)
    state = {"head": head}

    def step(i: int) -> None:
        vm = rng.choice(vms)
        blob = git(gitdir, "hash-object", "-w", "--stdin", stdin=CONFIG % (2048 + i, i), env=env)
        git(gitdir, "update-index", "--cacheinfo", f"100644,{blob},{record_path(vm)}", env=env)
        tree = git(gitdir, "write-tree", env=env)
        commit = git(gitdir, "commit-tree", tree, "-p", state["head"], "-m", f"vm set {vm}", env=env)
        git(gitdir, "update-ref", "refs/heads/bench-git", commit, state["head"], env=env)
        state["head"] = commit

    try:
        return timed_loop(seconds, step)
    finally:
        os.unlink(index)


def bench_pygit2(gitdir: str, vms: list[str], seconds: float, fsync: bool) -> float | None:
    try:
        import pygit2
    except ImportError:
        return None
    pygit2.option(pygit2.enums.Option.ENABLE_FSYNC_GITDIR, fsync)
    repo = pygit2.Repository(gitdir)
    ref = f"refs/heads/bench-pygit2-{int(fsync)}"
    head = repo.references["refs/heads/main"].target
    repo.references.create(ref, head, force=True)
    signature = pygit2.Signature("bench", "b@x")
    rng = random.Random(3)

    def step(i: int) -> None:
        vm = rng.choice(vms)
        parent = repo[repo.references[ref].target]
        blob = repo.create_blob(CONFIG % (4096 + i, i))
        # Rebuild the trees on the path, innermost first, each from its old version.
        names = record_path(vm).split("/")
        trees = [parent.tree]
        for name in names[:-1]:
            trees.append(repo[trees[-1][name].id])
        new_id = blob
        mode = pygit2.GIT_FILEMODE_BLOB
        for depth in range(len(names) - 1, -1, -1):
            builder = repo.TreeBuilder(trees[depth])
            builder.insert(names[depth], new_id, mode)
            new_id = builder.write()
            mode = pygit2.GIT_FILEMODE_TREE
        repo.create_commit(ref, signature, signature, f"vm set {vm}", new_id, [parent.id])

    try:
        return timed_loop(seconds, step)
    finally:
        pygit2.option(pygit2.enums.Option.ENABLE_FSYNC_GITDIR, False)


def bench_threads(
    store: Store, vms: list[str], threads: int, per_thread: int, deadline: float
) -> tuple[float, int, int, Runs]:
    """Each of ``threads`` writers commits ``per_thread`` transactions on its own keys, or fewer if the
    ``deadline`` (monotonic) comes first: (tx/s completed, conflicts, errors, every writer's runs together)."""
    branch = store.branch()
    conflicts = 0
    errors = 0
    lock = threading.Lock()
    chunks = [vms[i::threads] for i in range(threads)]
    runs: list[Runs] = []

    def writer(n: int) -> None:
        rng = random.Random(100 + n)

        def one(i: int) -> None:
            nonlocal conflicts, errors
            vm = rng.choice(chunks[n])
            try:
                with branch.transaction(message=f"vm set {vm}", author=f"writer{n}") as tx:
                    tx.set(record_path(vm), CONFIG % (8192 + i, i))
            except Conflict:
                with lock:
                    conflicts += 1
            except Exception:
                with lock:
                    errors += 1

        done = timed_runs(one, per_thread, deadline)
        with lock:
            runs.append(done)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    together = Runs([s for done in runs for s in done.seconds], threads * per_thread)
    return together.done / elapsed, conflicts, errors, together


READ_CHUNK = 500  # keys read per timed run: a clock read per key would weigh on a microsecond read


def bench_reads(store: Store, vms: list[str], deadline: float, count: int = 20000) -> tuple[float, Runs]:
    """Seconds per warm ``Branch.get``, over up to ``count`` keys (in chunks) before ``deadline``."""
    branch = store.branch()
    rng = random.Random(4)
    keys = [record_path(rng.choice(vms)) for _ in range(count)]
    chunks = [keys[i : i + READ_CHUNK] for i in range(0, count, READ_CHUNK)]

    def read(n: int) -> None:
        for key in chunks[n]:
            branch.get(key)

    warmed = timed_runs(read, len(chunks), deadline)  # warm the caches, on the keys then timed
    runs = timed_runs(read, warmed.done, deadline)
    return sum(runs.seconds) / (runs.done * READ_CHUNK) if runs.done else float("nan"), runs


def bench_git_cat_file(gitdir: str, vms: list[str], deadline: float, count: int = 50) -> Runs:
    return timed_runs(lambda n: git(gitdir, "cat-file", "-p", f"main:{record_path(vms[n])}"), count, deadline)


def build_history(path: str, vms: list[str], commits: int, watched: str, deadline: float) -> int:
    """Up to ``commits`` one-leaf commits on branch "history", until ``deadline`` (monotonic); ``watched``
    changes in every 50th. Returns how many were built."""
    with Store.open(path, durable=False) as store:
        store.fork("history", "main")
        branch = store.branch("history")
        rng = random.Random(5)
        for i in range(commits):
            if time.monotonic() >= deadline:
                return i
            vm = watched if i % 50 == 0 else rng.choice(vms)
            with branch.transaction(message=f"history {i}", author="bench") as tx:
                tx.set(record_path(vm), CONFIG % (i, i))
    return commits


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--history-commits", type=int, default=10_000)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds allowed for each counted loop")
    parser.add_argument("--dir", default=None, help="where to build the repositories (default: a temp dir)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="store-bench-", dir=args.dir)
    try:
        repo = os.path.join(workdir, "repo")
        print(f"# store benchmark: {args.records} records, {args.seconds:.0f} s per figure, in {workdir}")
        disk_fsyncs = fsync_rate(workdir)
        print(f"disk fsync rate (context):               {disk_fsyncs:8.0f} fsync/s")

        store = Store.open(repo)
        started = time.perf_counter()
        vms = seed(store, args.records)
        print(
            f"seed {args.records} records (3 files each):     {time.perf_counter() - started:8.2f} s, one transaction"
        )

        ours = bench_store_single_writer(store, vms, args.seconds)
        plumbing = bench_git_plumbing(repo, vms, args.seconds)
        pygit2_fsync = bench_pygit2(repo, vms, args.seconds, fsync=True)
        pygit2_plain = bench_pygit2(repo, vms, args.seconds, fsync=False)
        print("\n## durable one-leaf commits, 1 writer (target >= 300/s, >= 20x git CLI, >= 3x pygit2+fsync)")
        print(f"store (objects + ref fsynced)            {ours:8.0f} commits/s")
        print(
            f"git CLI plumbing                         {plumbing:8.1f} commits/s   store = {ours / plumbing:6.1f}x"
        )
        if pygit2_fsync is None:
            print("pygit2                                   not installed")
        else:
            print(
                f"pygit2 with fsync                        {pygit2_fsync:8.0f} commits/s   store = {ours / pygit2_fsync:6.1f}x"
            )
            print(
                f"pygit2 without fsync (not durable)       {pygit2_plain:8.0f} commits/s   store = {ours / pygit2_plain:6.1f}x"
            )
        print(f"fsyncs the disk allows per store commit  {disk_fsyncs / ours:8.1f}")
        cold_commit = fresh(
            lambda n: [PYTHON, "-c", ONE_COMMIT, repo, record_path(vms[n % len(vms)]), f"cold {n}\n"]
        )
        print(cold_warm("one durable commit", cold_commit, 1 / ours, "1 writer, one of many"))

        rate, conflicts, errors, writes = bench_threads(
            store, vms, 16, max(20, int(60 * args.seconds)), time.monotonic() + args.deadline
        )
        print("\n## 16 writer threads on disjoint keys (target >= 1,000 tx/s, 0 conflicts)")
        print(
            f"store, group commit                      {rate:8.0f} tx/s   = {rate / ours:5.1f}x one writer;"
            f" conflicts {conflicts}, errors {errors}{writes.note()}"
        )

        read, reads = bench_reads(store, vms, time.monotonic() + args.deadline)
        cat_runs = bench_git_cat_file(repo, vms, time.monotonic() + args.deadline)
        cat_file = 1 / cat_runs.per_second
        print("\n## read one key at head, warm (target <= 0.1 ms)")
        print(f"store Branch.get                         {read * 1e3:8.4f} ms{reads.note()}")
        print(
            f"git cat-file -p (one process per read)   {cat_file * 1e3:8.2f} ms   store = {cat_file / read:6.0f}x faster"
            f"{cat_runs.note()}"
        )
        store.close()

        watched = vms[0]
        started = time.perf_counter()
        built = build_history(repo, vms, args.history_commits, watched, time.monotonic() + args.deadline)
        print(f"\n## one key's history over {built} commits (target <= 0.5 s)")
        cut = f"; deadline reached: {built} of {args.history_commits}" if built < args.history_commits else ""
        print(f"(built {built} commits, not durable, in {time.perf_counter() - started:.1f} s{cut})")
        with Store.open(repo) as opened:
            start = time.perf_counter()
            entries = opened.branch("history").history(record_path(watched))
            ours_cold = time.perf_counter() - start
            start = time.perf_counter()
            opened.branch("history").history(record_path(watched))
            ours_warm = time.perf_counter() - start
        in_fresh = fresh([PYTHON, "-c", ONE_HISTORY, repo, record_path(watched)])
        start = time.perf_counter()
        git_ids = git(repo, "log", "--format=%H", "history", "--", record_path(watched)).split()
        git_log = time.perf_counter() - start
        agree = "same commits as git" if git_ids == [e.id for e in entries] else "DIFFERENT commits from git"
        print(
            f"store Branch.history, 1st on a new Store {ours_cold:8.3f} s   ({len(entries)} commits, {agree})"
        )
        print(f"store Branch.history, warm               {ours_warm:8.3f} s")
        print(
            f"git log -- path                          {git_log:8.3f} s   store (new Store) = {git_log / ours_cold:5.1f}x"
        )
        print(cold_warm("store Branch.history", in_fresh, ours_warm, "2nd call"))
        if in_fresh.ok:
            print(f"git log -- path / the fresh process       {git_log / in_fresh.seconds:8.2f}x")
        samples = timed_runs(lambda _: git(repo, "rev-parse", "history"), 5, time.monotonic() + args.deadline)
        print(f"(git process start-up, for scale: {samples.median * 1e3:.1f} ms{samples.note()})")
        print(f"peak RSS of this benchmark process (the warm figures): {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
