"""Ref updates survive git's own maintenance (`git pack-refs`, `git gc`) running beside them.

`git pack-refs` moves loose refs into packed-refs and removes the directories it emptied; git itself retries
when a directory it just made vanishes before its lock file is created (raceproof_create_file). So must we.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time

import pytest

import store.locks
from store import Store
from store.objects import COMMIT, encode_commit, object_id

# Ref races are between threads and processes on a repository on disk.
pytestmark = pytest.mark.native


def _commit(store: Store, text: str) -> str:
    with store.branch("main").transaction(message=text) as tx:
        tx.set("x", text.encode())
    assert tx.commit_id is not None
    return tx.commit_id


def test_a_ref_directory_removed_before_the_lock_is_created_is_made_again(disk_store, monkeypatch):
    commit = _commit(disk_store, "one")
    backend = disk_store.backend
    tasks_dir = os.path.join(backend.gitdir, "refs", "heads", "tasks")
    real_open = os.open
    removed: list[str] = []

    def pack_refs_strikes(path, flags, *args, **kwargs):
        # What `git pack-refs` does at the worst moment: remove the (empty) directory of the ref about to
        # be locked, after it was made and before the lock file is created in it.
        if str(path).endswith(".lock") and len(removed) < 3 and os.path.isdir(os.path.dirname(path)):
            os.rmdir(os.path.dirname(path))
            removed.append(os.path.dirname(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(store.locks.os, "open", pack_refs_strikes)
    assert backend.compare_and_swap("refs/heads/tasks/a", None, commit)
    monkeypatch.undo()
    assert removed == [tasks_dir] * 3  # struck three times in a row, and still made it
    assert backend.read_ref("refs/heads/tasks/a") == commit


def test_a_directory_that_keeps_vanishing_gives_up_after_bounded_retries(disk_store, monkeypatch):
    commit = _commit(disk_store, "one")

    def always_vanished(path, flags, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", path)

    monkeypatch.setattr(store.locks.os, "open", always_vanished)
    with pytest.raises(FileNotFoundError):
        disk_store.backend.compare_and_swap("refs/heads/tasks/b", None, commit)


def test_a_deleted_ref_that_git_pack_refs_was_packing_does_not_come_back(disk_store, run_git):
    commit = _commit(disk_store, "one")
    backend = disk_store.backend
    backend.compare_and_swap("refs/heads/tasks/a", None, commit)
    # pack-refs has read the loose ref and holds packed-refs.lock; the ref is deleted now, and then
    # pack-refs writes its packed-refs, with the ref in it.
    packed = os.path.join(backend.gitdir, "packed-refs")
    lock = packed + ".lock"
    with open(lock, "w") as f:
        f.write(f"# pack-refs with: peeled fully-peeled sorted \n{commit} refs/heads/tasks/a\n")

    def pack_refs_finishes() -> None:
        time.sleep(0.2)
        os.replace(lock, packed)

    finisher = threading.Thread(target=pack_refs_finishes)
    finisher.start()
    assert backend.compare_and_swap("refs/heads/tasks/a", commit, None)
    finisher.join()
    assert backend.read_ref("refs/heads/tasks/a") is None
    assert "refs/heads/tasks/a" not in run_git(backend.gitdir, "for-each-ref")


@pytest.mark.slow
def test_ref_operations_beside_git_pack_refs_and_gc_in_a_loop_never_fail(tmp_path, run_git):
    with Store.open(tmp_path / "repo") as s:
        backend = s.backend
        # Every write names a new commit, as a task claim does. (Re-creating a ref with the very commit it
        # held before it was deleted can be undone by a pack-refs that packed the first one: git prunes a
        # loose ref by comparing its value only, an ABA race that git's own update-ref has too.)
        seed = _commit(s, "seed")
        tree = s.tree_at(seed).oid
        raws = [encode_commit(tree, [seed], "t <t@t>", "t <t@t>", f"c{i}") for i in range(1000)]
        backend.write_objects([(object_id(COMMIT, raw), COMMIT, raw) for raw in raws])
        commits = iter([object_id(COMMIT, raw).decode("ascii") for raw in raws])
        gitdir = backend.gitdir
        stop = threading.Event()
        maintenance_runs = [0]

        def maintain() -> None:
            # git's own maintenance, as cron or an operator would run it, as fast as it goes.
            while not stop.is_set():
                for command in (["pack-refs", "--all"], ["pack-refs", "--all"], ["gc", "--quiet"]):
                    subprocess.run(["git", "-C", gitdir, *command], check=True, capture_output=True)
                    maintenance_runs[0] += 1

        maintainer = threading.Thread(target=maintain)
        maintainer.start()
        rng = random.Random(15)
        model: dict[str, str] = {}
        failures: list[BaseException] = []
        operations = 0
        deadline = time.monotonic() + 25
        try:
            while operations < 1000 and time.monotonic() < deadline:
                name = f"refs/heads/tasks/{rng.randrange(8):02x}/{rng.randrange(6)}"
                old = model.get(name)
                new = None if old is not None and rng.random() < 0.5 else next(commits)
                try:
                    assert backend.compare_and_swap(name, old, new), f"{name} moved under us"
                    if new is None:
                        model.pop(name)
                    else:
                        model[name] = new
                except BaseException as err:
                    failures.append(err)
                operations += 1
        finally:
            stop.set()
            maintainer.join()
        assert failures == [], failures[:3]
        assert operations == 1000 and maintenance_runs[0] >= 3
        # What the store and git both see is what was written: no update lost, no deleted ref back.
        assert backend.list_refs("refs/heads/tasks/") == model
        listed = run_git(gitdir, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/tasks/")
        assert dict(line.split(" ") for line in listed.splitlines()) == model
