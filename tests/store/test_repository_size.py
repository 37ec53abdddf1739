"""A repository written through the store's normal path stays within 1.5x of `git repack -adf` of it.

No manual `gc --compact`: the store's own roll-ups (store/disk_objects.py, store/rollup.py) must leave every
pack git's delta search compressed, also the packs concatenated while git was busy with another roll-up, and
the whole-object packs of the lowest tiers once they are a sizeable share of the repository.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import pytest

import store.disk_objects
import store.rollup
from store import Conflict, Store

pytestmark = pytest.mark.native

VMS = 1000


def pack_bytes(gitdir: str) -> int:
    """The bytes of a repository's packs and their indexes."""
    pack_dir = os.path.join(gitdir, "objects", "pack")
    return sum(
        os.path.getsize(os.path.join(pack_dir, n))
        for n in os.listdir(pack_dir)
        if n.endswith((".pack", ".idx"))
    )


def repacked_bytes(gitdir: str, scratch: str, run_git) -> int:  # type: ignore[no-untyped-def]
    """The same measure of `git clone --bare` of the repository after `git repack -adf`."""
    bare = os.path.join(scratch, "repacked.git")
    run_git(scratch, "clone", "-q", "--bare", gitdir, bare)
    run_git(bare, "repack", "-q", "-adf")
    return pack_bytes(bare)


def write_vm_history(s: Store, commits: int, threads: int) -> dict[str, bytes]:
    """A toolstack-like history: ``VMS`` records in ``vms/<xx>/<uuid>/config``, then commits that each
    change one record, from ``threads`` threads at once; returns the last value of every record."""
    rng = random.Random(7)
    vms = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(VMS)]
    main = s.branch()
    last: dict[str, bytes] = {}
    with main.transaction(message="seed") as tx:
        for n, vm in enumerate(vms):
            last[f"vms/{vm[:2]}/{vm}/config"] = b'{"memory": 512, "n": %d}\n' % n
            tx.set(f"vms/{vm[:2]}/{vm}/config", last[f"vms/{vm[:2]}/{vm}/config"])
    mutex = threading.Lock()

    def work(worker: int) -> None:
        pick = random.Random(worker)
        for n in range(commits // threads):
            vm = pick.choice(vms)
            path, value = (
                f"vms/{vm[:2]}/{vm}/config",
                b'{"memory": %d, "op": "%d-%d"}\n' % (64 * n, worker, n),
            )
            while True:
                try:
                    with main.transaction(message=f"set {vm} ({worker}-{n})") as tx:
                        tx.set(path, value)
                    break
                except Conflict:
                    continue
            with mutex:
                last[path] = main.get(path)  # another thread's write may have landed after this one

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(600)
    return last


@pytest.mark.parametrize(("durable", "commits"), [(False, 3000), (True, 1600)])
def test_thousands_of_commits_from_concurrent_writers_take_at_most_1_5x_a_git_repack(
    tmp_path, run_git, durable, commits
):
    with Store.open(tmp_path / "repo", durable=durable) as s:
        write_vm_history(s, commits, threads=4)
        assert s.backend.wait_for_maintenance(300)
        gitdir = s.gitdir
    ours, repacked = pack_bytes(gitdir), repacked_bytes(gitdir, str(tmp_path), run_git)
    assert ours <= 1.5 * repacked, f"{ours} bytes as written, {repacked} after git repack -adf"
    run_git(gitdir, "fsck", "--full")


def test_packs_concatenated_while_git_was_busy_are_compressed_by_git_once_it_is_free(
    tmp_path, monkeypatch, run_git
):
    slow = store.rollup.git_pack_objects

    def slow_git(*args: object, **kwargs: object) -> str:
        time.sleep(1.0)  # writers outrun git: tiers fill up while it runs
        return slow(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.disk_objects, "git_pack_objects", slow_git)
    with Store.open(tmp_path / "repo", durable=False) as s:
        last = write_vm_history(s, 1200, threads=2)
        assert s.backend.wait_for_maintenance(300)
        ours, repacked = pack_bytes(s.gitdir), repacked_bytes(s.gitdir, str(tmp_path), run_git)
        assert ours <= 1.5 * repacked, f"{ours} bytes as written, {repacked} after git repack -adf"
        for path, value in last.items():
            assert s.branch().get(path) == value
        run_git(s.gitdir, "fsck", "--full")
