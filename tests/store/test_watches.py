"""Watches deliver every change at or under a prefix, at least once, whoever made it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from store import Store

# A watch delivers from its watcher's thread: a browser's Python starts none.
pytestmark = pytest.mark.native


def commit(branch, changes, message="change"):
    with branch.transaction(message=message, author="tester") as tx:
        for path, value in changes.items():
            if value is None:
                tx.remove(path)
            else:
                tx.set(path, value)
    return tx.commit_id


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_watch_sees_changes_under_its_prefix_only(store):
    main = store.branch()
    commit(main, {"vms/a/config": b"0", "other": b"0"})
    seen: list[tuple] = []
    with main.watch("vms", lambda e: seen.append((e.path, e.old, e.new))):
        commit(main, {"vms/a/config": b"1", "other": b"1"})
        commit(main, {"vms/b/config": b"new"})
        commit(main, {"vms/a/config": None})
        assert wait_for(lambda: len(seen) == 3)
    assert seen == [
        ("vms/a/config", b"0", b"1"),
        ("vms/b/config", None, b"new"),
        ("vms/a/config", b"1", None),
    ]


def test_a_failing_callback_gets_the_change_again(store):
    main = store.branch()
    commit(main, {"a": b"0"})
    attempts: list[bytes] = []

    def flaky(event):
        attempts.append(event.new)
        if len(attempts) == 1:
            raise RuntimeError("transient")

    with main.watch("", flaky):
        commit(main, {"a": b"1"})
        assert wait_for(lambda: len(attempts) >= 2)
    assert attempts[:2] == [b"1", b"1"]


def test_a_watch_notices_a_ref_moved_by_another_process(disk_store, tmp_path):
    main = disk_store.branch()
    commit(main, {"a": b"0"})
    seen: list[str] = []
    with main.watch("", lambda e: seen.append(e.path)):
        script = (
            "from store import Store\n"
            f"s = Store.open({str(disk_store.path)!r})\n"
            "with s.branch().transaction(message='remote', author='other') as tx:\n"
            "    tx.set('from/other/process', b'1')\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True)
        assert wait_for(lambda: "from/other/process" in seen)


def test_a_watch_notices_a_git_cli_commit(tmp_path, run_git):
    with Store.open(tmp_path / "repo", bare=False) as s:
        main = s.branch()
        commit(main, {"a": b"0"})
        seen: list[str] = []
        with main.watch("", lambda e: seen.append(e.path)):
            work = tmp_path / "repo"
            run_git(work, "checkout", "-q", "-f", "main")
            (work / "cli").write_text("x")
            run_git(work, "add", "cli")
            run_git(work, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "cli")
            assert wait_for(lambda: "cli" in seen)


def test_watches_from_many_threads_lose_no_change(store):
    main = store.branch()
    commit(main, {"seed": b"0"})
    seen: set[str] = set()
    lock = threading.Lock()

    def record(event):
        with lock:
            seen.add(event.path)

    with main.watch("w", record):
        threads = [
            threading.Thread(target=lambda n=n: [commit(main, {f"w/{n}/{i}": b"x"}) for i in range(10)])
            for n in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wait_for(lambda: len(seen) == 40)
